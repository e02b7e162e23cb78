# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Queue thresholds and verdicts (queue_read), and the pure parts of queue_jobs' planning (queue_actions)."""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import queue_actions as A
from ansible_collections.runbook.ops.plugins.module_utils.queue_read import DEFAULT_THRESHOLDS, evaluate, merge_thresholds


def figures(counts: dict[str, int], age: float | None = None, global_: dict[str, int] | None = None,
            errors: list[str] | None = None) -> dict[str, Any]:
    return {"queues": {"q": {"counts": counts, "oldest_waiting_seconds": age}}, "global": global_ or {},
            "errors": errors or []}


@pytest.mark.parametrize(("given", "expected"), [
    ({}, DEFAULT_THRESHOLDS),
    ({"waiting": {"warning": 10}}, {**DEFAULT_THRESHOLDS, "waiting": {"warning": 10.0, "critical": 5000}}),
    ({"failed": {}}, {k: v for k, v in DEFAULT_THRESHOLDS.items() if k != "failed"}),
    ({"failed": None}, {k: v for k, v in DEFAULT_THRESHOLDS.items() if k != "failed"}),
    ({"active": {"critical": "50"}}, {**DEFAULT_THRESHOLDS, "active": {"critical": 50.0}}),
])
def test_merge_thresholds(given: dict, expected: dict) -> None:
    assert merge_thresholds(given) == expected


@pytest.mark.parametrize("given", [{"waiting": {"warn": 1}}, {"waiting": 5}, {"waiting": {"warning": "many"}}])
def test_bad_thresholds(given: dict) -> None:
    with pytest.raises(ValueError, match="thresholds.waiting"):
        merge_thresholds(given)


@pytest.mark.parametrize(("counts", "age", "verdict", "reason"), [
    ({"waiting": 0, "failed": 0}, None, "ok", None),
    ({"waiting": 999, "failed": 0}, None, "ok", None),
    ({"waiting": 1000, "failed": 0}, None, "warning", "q: 1000 waiting (>= 1000)"),  # at the threshold reaches it
    ({"waiting": 5000, "failed": 0}, None, "critical", "q: 5000 waiting (>= 5000)"),
    ({"waiting": 0, "failed": 1}, None, "warning", "q: 1 failed (>= 1)"),
    ({"waiting": 1, "active": 10**6}, None, "ok", None),  # no threshold on active by default
    ({"waiting": 1}, 299.0, "ok", None),
    ({"waiting": 1}, 300.0, "warning", "q: oldest waiting job 300s old (>= 300s)"),
    ({"waiting": 1}, 901.0, "critical", "q: oldest waiting job 901s old (>= 900s)"),
])
def test_queue_verdicts(counts: dict, age: float | None, verdict: str, reason: str | None) -> None:
    data = figures(counts, age)
    overall, reasons = evaluate(data, merge_thresholds({}))
    assert overall == data["queues"]["q"]["verdict"] == verdict
    assert reasons == ([reason] if reason else [])


def test_critical_reasons_first_and_globals_counted() -> None:
    data = figures({"waiting": 1000, "failed": 200}, global_={"dead": 3, "retry": 9})
    overall, reasons = evaluate(data, merge_thresholds({}))
    assert overall == "critical"
    assert reasons == ["q: 200 failed (>= 100)", "q: 1000 waiting (>= 1000)", "3 dead (>= 1)"]


def test_unreadable_figures_make_a_warning() -> None:
    overall, reasons = evaluate(figures({"waiting": 0}, errors=["q waiting: WRONGTYPE"]), merge_thresholds({}))
    assert overall == "warning" and reasons == ["could not count q waiting: WRONGTYPE"]


@pytest.mark.parametrize(("library", "action", "supported"), [
    ("bullmq", "pause", True), ("bull", "resume", True), ("rq", "retry_failed", True), ("rq", "pause", False),
    ("celery", "retry_failed", False), ("celery", "pause", False), ("sidekiq", "remove_failed", True),
    ("sidekiq", "pause", False),
])
def test_support(library: str, action: str, supported: bool) -> None:
    assert (A.unsupported(library, action) is None) is supported


@pytest.mark.parametrize(("job", "expected"), [
    ({"jid": "a", "queue": "q", "retry_count": 2, "created_at": 1.5, "error_message": "x"},
     {"jid": "a", "queue": "q", "retry_count": 1, "created_at": 1.5, "error_message": "x", "enqueued_at": 1800000000.5}),
    ({"jid": "b", "queue": "q", "created_at": 1799999999000, "at": 5},  # Sidekiq 8: milliseconds
     {"jid": "b", "queue": "q", "created_at": 1799999999000, "enqueued_at": 1800000000500}),
])
def test_sidekiq_requeued(job: dict, expected: dict) -> None:
    assert json.loads(A.sidekiq_requeued(job, 1800000000.5)) == expected


def test_rq_now_is_rq_utcformat() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", A.rq_now())
