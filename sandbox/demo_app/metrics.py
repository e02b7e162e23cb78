# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prometheus text exposition (format 0.0.4), rendered without a client library."""
from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from demo_app.probes import DatabaseProbe, RedisProbe

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Sample:
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    samples: Sequence[Sample]


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for sample in metric.samples:
            labels = ",".join(
                f'{key}="{_escape_label(val)}"' for key, val in sorted(sample.labels.items())
            )
            series = f"{metric.name}{{{labels}}}" if labels else metric.name
            lines.append(f"{series} {_format_value(sample.value)}")
    return "\n".join(lines) + "\n"


class RequestCounter:
    """Thread-safe request counts keyed by (path, status code)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def inc(self, path: str, code: int) -> None:
        with self._lock:
            self._counts[(path, code)] = self._counts.get((path, code), 0) + 1

    def snapshot(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)


def _gauge(name: str, help_text: str, value: float | None, **labels: str) -> Metric:
    # An unknown value is left out rather than faked as 0, so alerts can use absent().
    samples = [] if value is None else [Sample(float(value), labels)]
    return Metric(name, "gauge", help_text, samples)


def build(
    requests: Mapping[tuple[str, int], int],
    db: DatabaseProbe,
    rd: RedisProbe,
    version: str,
    queue: str,
) -> list[Metric]:
    last_ts = None if db.last_ingest is None else db.last_ingest.timestamp()
    return [
        Metric(
            "demo_http_requests_total", "counter", "HTTP requests served, by path and status code.",
            [Sample(float(n), {"path": p, "code": str(c)}) for (p, c), n in sorted(requests.items())],
        ),
        _gauge("demo_up", "1 while the HTTP service is running.", 1),
        Metric("demo_build_info", "gauge", "Running version of the demo app.",
               [Sample(1.0, {"version": version})]),
        _gauge("demo_database_up", "1 if PostgreSQL answered the last probe.", int(db.ok)),
        _gauge("demo_redis_up", "1 if Redis answered the last probe.", int(rd.ok)),
        _gauge("demo_tenders_total", "Rows in the tenders table.", db.tenders_total),
        _gauge("demo_last_ingest_timestamp_seconds",
               "Unix time of the newest successful ingest run.", last_ts),
        _gauge("demo_queue_waiting", "Jobs waiting in the queue.", rd.waiting, queue=queue),
        _gauge("demo_queue_active", "Jobs taken by a worker and not finished.", rd.active, queue=queue),
        _gauge("demo_queue_failed", "Jobs in the failed list.", rd.failed, queue=queue),
        Metric("demo_queue_processed_total", "counter",
               "Jobs completed successfully (counter kept in Redis).",
               [] if rd.processed is None else [Sample(float(rd.processed), {"queue": queue})]),
    ]
