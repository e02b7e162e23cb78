# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reading queue depths from Redis: discovery, one pipelined round trip for every count, one for ages.

And the verdict: per-state thresholds, the worst level wins, one reason per finding.
"""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import RedisError
from ansible_collections.runbook.ops.plugins.module_utils.verdicts import level, worst

# Defaults for the thresholds. The seeds' "Queue Backlog" gives no numbers (only `llen ...:waiting`),
# so these are sane starting points, not seed values.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "waiting": {"warning": 1000, "critical": 5000},
    "failed": {"warning": 1, "critical": 100},
    "dead": {"warning": 1, "critical": 100},
    "oldest_waiting": {"warning": 300, "critical": 900},
}
SCAN_COUNT = 1000


class RoundTrips:
    """Counts the round trips a read takes (the module returns the figure)."""

    def __init__(self) -> None:
        self.count = 0

    def run(self, client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        if not commands:
            return []
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        self.count += 1
        return list(pipe.execute(raise_on_error=False))

    def scan(self, client: Any, match: str) -> list[str]:
        found: list[str] = []
        cursor = 0
        while True:
            self.count += 1
            cursor, keys = client.scan(cursor=cursor, match=match, count=SCAN_COUNT)
            found.extend(keys)
            if int(cursor) == 0:
                return found


def discover(client: Any, trips: RoundTrips, library: str, prefix: str, requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(queue names to read, Sidekiq process identities). Exact names need no discovery."""
    need_names = any(L.is_pattern(name) for name in requested)
    if library == "celery" and need_names:
        raise ValueError("celery: kombu keeps no list of queues in Redis; give the queue names, not patterns")
    commands: list[tuple[Any, ...]] = []
    command = L.discovery_command(library, prefix)
    discovered: list[str] = []
    if need_names and command and command[0] == "SCAN":
        discovered = [n for n in (L.queue_name_from(library, prefix, k) for k in trips.scan(client, command[1])) if n]
    elif need_names and command:
        commands.append(command)
    if library == "sidekiq":
        commands.append(("SMEMBERS", L.sidekiq_key(prefix, "processes")))
    replies = trips.run(client, commands)
    processes: list[str] = []
    if library == "sidekiq":
        processes = sorted(replies.pop() or [])
    if replies:
        if isinstance(replies[0], Exception):
            raise replies[0]
        discovered = [n for n in (L.queue_name_from(library, prefix, m) for m in replies[0] or []) if n]
    return L.select_queues(requested, sorted(set(discovered))), processes


def collect(client: Any, library: str, prefix: str, requested: Sequence[str], states: Optional[Sequence[str]] = None,
            oldest: bool = True, now: Optional[float] = None) -> dict[str, Any]:
    """Counts for every queue (and the library-wide sets) in one pipelined round trip; ages in one more."""
    now = time.time() if now is None else now
    trips = RoundTrips()
    queues, processes = discover(client, trips, library, prefix, requested)
    plan: list[tuple[str, L.Probe, int, int]] = []  # (queue or '*', probe, first reply index, count)
    commands: list[tuple[Any, ...]] = []
    age_slots: dict[str, tuple[int, int]] = {}
    for queue in queues:
        for probe in L.queue_probes(library, prefix, queue, now):
            if states and probe.state != "is_paused" and probe.state not in states:
                continue
            plan.append((queue, probe, len(commands), len(probe.commands)))
            commands.extend(probe.commands)
        if oldest:
            extra = L.oldest_probe(library, prefix, queue)
            age_slots[queue] = (len(commands), len(extra))
            commands.extend(extra)
    for probe in L.global_probes(library, prefix, processes):
        if states and probe.state not in states:
            continue
        plan.append(("*", probe, len(commands), len(probe.commands)))
        commands.extend(probe.commands)
    replies = trips.run(client, commands)

    result: dict[str, Any] = {"queues": {}, "global": {}, "errors": []}
    for queue in queues:
        result["queues"][queue] = {"counts": {}, "paused": None, "oldest_waiting_job": None, "oldest_waiting_seconds": None}
    for queue, probe, start, length in plan:
        try:
            value = L.fold(probe, replies[start:start + length])
        except (RedisError, ValueError, TypeError) as err:  # WRONGTYPE: the key is not what this library keeps there
            result["errors"].append(f"{queue} {probe.state}: {err}")
            continue
        if queue == "*":
            result["global"][probe.state] = value
        elif probe.state == "is_paused":
            result["queues"][queue]["paused"] = value
        else:
            result["queues"][queue]["counts"][probe.state] = value

    followups: list[tuple[str, list[tuple[str, str]], list[Any]]] = []
    for queue, (start, length) in age_slots.items():
        first = [r for r in replies[start:start + length] if not isinstance(r, Exception)]
        follow = L.oldest_followup(library, prefix, queue, first)
        if follow is None:
            job, age = L.oldest_age(library, first, [], now)
            result["queues"][queue].update(oldest_waiting_job=job, oldest_waiting_seconds=age)
        else:
            followups.append((queue, follow[1], first))
    if followups:
        second = trips.run(client, [("HGET", k, f) for _q, pairs, _f in followups for k, f in pairs])
        index = 0
        for queue, pairs, first in followups:
            values = [None if isinstance(v, Exception) else v for v in second[index:index + len(pairs)]]
            index += len(pairs)
            job, age = L.oldest_age(library, first, values, now)
            result["queues"][queue].update(oldest_waiting_job=job, oldest_waiting_seconds=age)
    result["round_trips"] = trips.count
    return result


def merge_thresholds(given: Optional[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The defaults, overridden state by state; a state set to null (or {}) has no threshold."""
    merged = {state: dict(levels) for state, levels in DEFAULT_THRESHOLDS.items()}
    for state, levels in (given or {}).items():
        if not levels:
            merged.pop(state, None)
            continue
        if not isinstance(levels, dict) or set(levels) - {"warning", "critical"}:
            raise ValueError(f"thresholds.{state}: give a mapping with warning and/or critical")
        entry = dict(merged.get(state, {}))
        for name, value in levels.items():
            try:
                entry[name] = float(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"thresholds.{state}.{name}: not a number: {value!r}") from err
        merged[state] = entry
    return merged


def _reach(value: Optional[float], levels: dict[str, float]) -> str:
    inf = float("inf")
    return level(value, levels.get("warning", inf), levels.get("critical", inf))


def evaluate(figures: dict[str, Any], thresholds: dict[str, dict[str, float]]) -> tuple[str, list[str]]:
    """Per queue: a verdict and reasons; overall: the worst, critical reasons first."""
    findings: list[tuple[str, str]] = []
    for queue, entry in figures["queues"].items():
        reasons: list[tuple[str, str]] = []
        for state, count in entry["counts"].items():
            if state in thresholds:
                verdict = _reach(count, thresholds[state])
                if verdict != "ok":
                    limit = thresholds[state][verdict]
                    reasons.append((verdict, f"{queue}: {count} {state} (>= {limit:g})"))
        age = entry.get("oldest_waiting_seconds")
        if age is not None and "oldest_waiting" in thresholds:
            verdict = _reach(age, thresholds["oldest_waiting"])
            if verdict != "ok":
                limit = thresholds["oldest_waiting"][verdict]
                reasons.append((verdict, f"{queue}: oldest waiting job {age:.0f}s old (>= {limit:g}s)"))
        entry["verdict"] = worst(v for v, _m in reasons)
        entry["reasons"] = [m for _v, m in reasons]
        findings.extend(reasons)
    for state, count in figures.get("global", {}).items():
        if state in thresholds:
            verdict = _reach(count, thresholds[state])
            if verdict != "ok":
                findings.append((verdict, f"{count} {state} (>= {thresholds[state][verdict]:g})"))
    for error in figures.get("errors", []):
        findings.append(("warning", f"could not count {error}"))
    findings.sort(key=lambda f: f[0] != "critical")
    return worst(v for v, _m in findings), [m for _v, m in findings]
