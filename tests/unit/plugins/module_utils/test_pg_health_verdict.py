# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verdicts of runbook.ops.pg_health from figures (no database)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_health_verdict import (
    check_thresholds,
    evaluate,
    human_duration,
    level,
    worst,
)

# The module's defaults, durations in seconds.
DEFAULTS: dict[str, float] = {
    "connections_warning_pct": 80, "connections_critical_pct": 90,
    "active_query_warning": 30, "active_query_critical": 300,
    "idle_in_transaction_warning": 300, "idle_in_transaction_critical": 600,
    "blocked_sessions_warning": 1, "blocked_sessions_critical": 5,
    "cache_hit_warning_pct": 90, "cache_hit_critical_pct": 80,
    "replication_lag_warning": 60, "replication_lag_critical": 300,
    "wraparound_warning_pct": 50, "wraparound_critical_pct": 75,
}

HEALTHY: dict[str, Any] = {
    "is_available": True,
    "connections": {"total": 10, "available": 97, "max_connections": 100, "superuser_reserved": 3, "used_pct": 10.3},
    "longest_active_query": None,
    "idle_in_transaction": {"count": 0, "max_age_s": None, "max_age_pid": None},
    "blocking": {"blocked_count": 0, "blocked": [], "blocking_pids": [], "blocking": []},
    "cache": {"hits": 99_000, "reads": 1_000, "blocks": 100_000, "hit_ratio_pct": 99.0},
    "replication": [],
    "wraparound": {"max_age": 1000, "database": "app", "pct": 0.0},
}


def figures(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(HEALTHY)
    out.update(changes)
    return out


@pytest.mark.parametrize("value, expected", [
    (None, "ok"), (0, "ok"), (79.9, "ok"), (80, "warning"), (89.99, "warning"), (90, "critical"), (250, "critical"),
])
def test_level_higher_is_worse_reaches_at_threshold(value, expected):
    assert level(value, 80, 90) == expected


@pytest.mark.parametrize("value, expected", [(99.5, "ok"), (90.01, "ok"), (90, "warning"), (80.5, "warning"),
                                             (80, "critical"), (0, "critical")])
def test_level_lower_is_worse(value, expected):
    assert level(value, 90, 80, higher_is_worse=False) == expected


@pytest.mark.parametrize("verdicts, expected", [([], "ok"), (["ok"], "ok"), (["ok", "warning"], "warning"),
                                                (["critical", "warning", "ok"], "critical")])
def test_worst(verdicts, expected):
    assert worst(verdicts) == expected


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0.0s"), (45.25, "45.2s"), (60, "1m00s"),
                                           (305, "5m05s"), (7380, "2h03m"), (273600, "3d04h")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_defaults_are_in_order():
    assert check_thresholds(DEFAULTS) == []


@pytest.mark.parametrize("changes, fragment", [
    ({"connections_warning_pct": 95}, "connections_warning_pct (95) must not be above connections_critical_pct"),
    ({"active_query_warning": 600}, "active_query_warning (600) must not be above"),
    ({"cache_hit_critical_pct": 95}, "cache_hit_warning_pct (90) must not be below cache_hit_critical_pct (95)"),
    ({"wraparound_warning_pct": -1}, "cannot be negative"),
])
def test_swapped_thresholds_are_errors(changes, fragment):
    errors = check_thresholds({**DEFAULTS, **changes})
    assert len(errors) == 1 and fragment in errors[0], errors


def test_healthy_server_is_ok_without_reasons():
    assert evaluate(figures(), DEFAULTS) == ("ok", [], [])


def test_unavailable_server_is_critical_with_the_error():
    verdict, reasons = evaluate({"is_available": False, "error": "cannot connect to PostgreSQL at x:5432"},
                                DEFAULTS)[:2]
    assert verdict == "critical"
    assert reasons == ["cannot connect to PostgreSQL at x:5432"]


@pytest.mark.parametrize("used_pct, total, expected", [(79.9, 77, "ok"), (80.0, 78, "warning"), (90.0, 87, "critical"),
                                                       (114.3, 8, "critical")])
def test_connections(used_pct, total, expected):
    conn = {"total": total, "available": 7, "max_connections": 10, "superuser_reserved": 3, "used_pct": used_pct}
    verdict, reasons = evaluate(figures(connections=conn), DEFAULTS)[:2]
    assert verdict == expected
    if expected != "ok":
        assert reasons[0].startswith(f"connections {total}/7 ({used_pct:.1f}% of max_connections 10 minus 3 reserved)")
        assert reasons[0].endswith(f"({expected} at {80 if expected == 'warning' else 90}%)")


@pytest.mark.parametrize("age, expected", [(29.9, "ok"), (30, "warning"), (299, "warning"), (300, "critical")])
def test_longest_active_query(age, expected):
    longest = {"pid": 42, "user": "app", "database": "app", "age_s": age, "query": "SELECT 1"}
    verdict, reasons = evaluate(figures(longest_active_query=longest), DEFAULTS)[:2]
    assert verdict == expected
    assert bool(reasons) == (expected != "ok")
    if reasons:
        assert "(pid 42, user app)" in reasons[0]


@pytest.mark.parametrize("count, age, expected", [(0, None, "ok"), (3, 10, "ok"), (1, 300, "warning"),
                                                  (2, 601, "critical")])
def test_idle_in_transaction(count, age, expected):
    idle = {"count": count, "max_age_s": age, "max_age_pid": 7}
    verdict, reasons = evaluate(figures(idle_in_transaction=idle), DEFAULTS)[:2]
    assert verdict == expected
    if expected != "ok":
        assert reasons[0].startswith(f"{count} session(s) idle in transaction")


@pytest.mark.parametrize("count, expected", [(0, "ok"), (1, "warning"), (4, "warning"), (5, "critical")])
def test_blocked_sessions(count, expected):
    blocking = {"blocked_count": count, "blocked": [], "blocking_pids": [11, 12] if count else [], "blocking": []}
    verdict, reasons = evaluate(figures(blocking=blocking), DEFAULTS)[:2]
    assert verdict == expected
    if count:
        assert reasons[0].startswith(f"{count} session(s) blocked by pid 11, 12")


@pytest.mark.parametrize("ratio, blocks, expected", [
    (99.0, 100_000, "ok"), (90.0, 100_000, "warning"), (79.0, 100_000, "critical"),
    (10.0, 999, "ok"),  # too few blocks read to judge
    (None, 0, "ok"),
])
def test_cache_hit_ratio(ratio, blocks, expected):
    cache = {"hits": 0, "reads": 0, "blocks": blocks, "hit_ratio_pct": ratio}
    assert evaluate(figures(cache=cache), DEFAULTS)[0] == expected


def test_replication_lag_per_replica():
    replicas = [
        {"application_name": "r1", "replay_lag_s": 0.1},
        {"application_name": "r2", "replay_lag_s": 90},
        {"application_name": "", "client_addr": "10.0.0.3", "replay_lag_s": 400},
        {"application_name": "r4", "replay_lag_s": None},
    ]
    verdict, reasons = evaluate(figures(replication=replicas), DEFAULTS)[:2]
    assert verdict == "critical"
    assert reasons == ["replica 10.0.0.3 replay lag 6m40s (critical at 300s)",
                       "replica r2 replay lag 1m30s (warning at 60s)"]


@pytest.mark.parametrize("pct, expected", [(0.0, "ok"), (49.9, "ok"), (50, "warning"), (75, "critical")])
def test_wraparound(pct, expected):
    wrap = {"max_age": int(pct / 100 * 2 ** 31), "database": "app", "pct": pct}
    assert evaluate(figures(wraparound=wrap), DEFAULTS)[0] == expected


def test_critical_reasons_come_first():
    verdict, reasons, findings = evaluate(figures(
        longest_active_query={"pid": 1, "user": "a", "age_s": 40},
        wraparound={"max_age": 1, "database": "app", "pct": 80.0},
    ), DEFAULTS)
    assert verdict == "critical"
    assert [f["verdict"] for f in findings] == ["critical", "warning"]
    assert reasons[0].startswith("transaction-ID age") and reasons[1].startswith("query active")
