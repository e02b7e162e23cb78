# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Verdicts of runbook.ops.pg_health from the figures it collected.

Pure functions, no database: the module gathers figures, this file turns them
into ok / warning / critical and one reason per finding, so the decisions are
unit-tested without a server (tests/unit/plugins/module_utils/test_pg_health_verdict.py).
"""
from __future__ import annotations

from typing import Any, Optional

from ansible_collections.runbook.ops.plugins.module_utils.verdicts import level, worst

# age(datfrozenxid) is measured against 2^31: at that age PostgreSQL stops
# accepting writes to protect itself from transaction-ID wraparound.
XID_WRAP_LIMIT = 2 ** 31
# The cache hit ratio says little until the server has read this many blocks.
CACHE_MIN_BLOCKS = 1000

# Option name -> (warning, critical, higher_is_worse). Durations in seconds.
THRESHOLD_PAIRS: dict[str, tuple[str, str, bool]] = {
    "connections": ("connections_warning_pct", "connections_critical_pct", True),
    "active_query": ("active_query_warning", "active_query_critical", True),
    "idle_in_transaction": ("idle_in_transaction_warning", "idle_in_transaction_critical", True),
    "blocked_sessions": ("blocked_sessions_warning", "blocked_sessions_critical", True),
    "cache_hit": ("cache_hit_warning_pct", "cache_hit_critical_pct", False),
    "replication_lag": ("replication_lag_warning", "replication_lag_critical", True),
    "wraparound": ("wraparound_warning_pct", "wraparound_critical_pct", True),
}


def check_thresholds(thresholds: dict[str, float]) -> list[str]:
    """Errors for pairs in the wrong order (a swapped pair would turn every check green)."""
    errors = []
    for warn_key, crit_key, higher_is_worse in THRESHOLD_PAIRS.values():
        warn, crit = thresholds[warn_key], thresholds[crit_key]
        if warn < 0 or crit < 0:
            errors.append(f"{warn_key} and {crit_key} cannot be negative")
        elif higher_is_worse and warn > crit:
            errors.append(f"{warn_key} ({warn:g}) must not be above {crit_key} ({crit:g})")
        elif not higher_is_worse and warn < crit:
            errors.append(f"{warn_key} ({warn:g}) must not be below {crit_key} ({crit:g}): a lower ratio is worse")
    return errors


def human_duration(seconds: Optional[float]) -> str:
    """12.3s, 4m05s, 2h03m, 3d04h."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def _finding(verdict: str, msg: str) -> dict[str, str]:
    return {"verdict": verdict, "msg": msg}


def _threshold_text(verdict: str, warning: float, critical: float, fmt: str) -> str:
    return f"({verdict} at {fmt.format(critical if verdict == 'critical' else warning)})"


def connection_findings(conn: dict[str, Any], t: dict[str, float]) -> list[dict[str, str]]:
    pct = conn.get("used_pct")
    v = level(pct, t["connections_warning_pct"], t["connections_critical_pct"])
    if v == "ok":
        return []
    text = _threshold_text(v, t["connections_warning_pct"], t["connections_critical_pct"], "{:g}%")
    return [_finding(v, f"connections {conn['total']}/{conn['available']} ({pct:.1f}% of max_connections "
                        f"{conn['max_connections']} minus {conn['superuser_reserved']} reserved) {text}")]


def active_query_findings(longest: Optional[dict[str, Any]], t: dict[str, float]) -> list[dict[str, str]]:
    if not longest:
        return []
    v = level(longest["age_s"], t["active_query_warning"], t["active_query_critical"])
    if v == "ok":
        return []
    text = _threshold_text(v, t["active_query_warning"], t["active_query_critical"], "{:g}s")
    return [_finding(v, f"query active for {human_duration(longest['age_s'])} (pid {longest['pid']}, "
                        f"user {longest['user']}) {text}")]


def idle_in_transaction_findings(idle: dict[str, Any], t: dict[str, float]) -> list[dict[str, str]]:
    if not idle.get("count"):
        return []
    v = level(idle.get("max_age_s"), t["idle_in_transaction_warning"], t["idle_in_transaction_critical"])
    if v == "ok":
        return []
    text = _threshold_text(v, t["idle_in_transaction_warning"], t["idle_in_transaction_critical"], "{:g}s")
    return [_finding(v, f"{idle['count']} session(s) idle in transaction, oldest for "
                        f"{human_duration(idle['max_age_s'])} (pid {idle['max_age_pid']}) {text}")]


def blocking_findings(blocking: dict[str, Any], t: dict[str, float]) -> list[dict[str, str]]:
    count = blocking.get("blocked_count", 0)
    if not count:
        return []
    v = level(count, t["blocked_sessions_warning"], t["blocked_sessions_critical"])
    if v == "ok":
        return []
    text = _threshold_text(v, t["blocked_sessions_warning"], t["blocked_sessions_critical"], "{:g}")
    pids = ", ".join(str(p) for p in blocking.get("blocking_pids", []))
    return [_finding(v, f"{count} session(s) blocked by pid {pids} {text}")]


def cache_findings(cache: dict[str, Any], t: dict[str, float]) -> list[dict[str, str]]:
    ratio = cache.get("hit_ratio_pct")
    if ratio is None or cache.get("blocks", 0) < CACHE_MIN_BLOCKS:
        return []
    v = level(ratio, t["cache_hit_warning_pct"], t["cache_hit_critical_pct"], higher_is_worse=False)
    if v == "ok":
        return []
    text = _threshold_text(v, t["cache_hit_warning_pct"], t["cache_hit_critical_pct"], "{:g}% or less")
    return [_finding(v, f"cache hit ratio {ratio:.1f}% {text}")]


def replication_findings(replicas: list[dict[str, Any]], t: dict[str, float]) -> list[dict[str, str]]:
    found = []
    for rep in replicas:
        lag = rep.get("replay_lag_s")
        v = level(lag, t["replication_lag_warning"], t["replication_lag_critical"])
        if v != "ok":
            text = _threshold_text(v, t["replication_lag_warning"], t["replication_lag_critical"], "{:g}s")
            name = rep.get("application_name") or rep.get("client_addr") or f"pid {rep.get('pid')}"
            found.append(_finding(v, f"replica {name} replay lag {human_duration(lag)} {text}"))
    return found


def wraparound_findings(wrap: dict[str, Any], t: dict[str, float]) -> list[dict[str, str]]:
    pct = wrap.get("pct")
    v = level(pct, t["wraparound_warning_pct"], t["wraparound_critical_pct"])
    if v == "ok":
        return []
    text = _threshold_text(v, t["wraparound_warning_pct"], t["wraparound_critical_pct"], "{:g}%")
    return [_finding(v, f"transaction-ID age {wrap['max_age']} in database {wrap['database']} "
                        f"({pct:.1f}% of 2^31) {text}")]


def evaluate(figures: dict[str, Any], thresholds: dict[str, float]) -> tuple[str, list[str], list[dict[str, str]]]:
    """(verdict, reasons, findings) from the figures; reasons list critical findings first."""
    if not figures.get("is_available"):
        findings = [_finding("critical", figures.get("error") or "PostgreSQL is not available")]
    else:
        findings = (
            connection_findings(figures["connections"], thresholds)
            + active_query_findings(figures.get("longest_active_query"), thresholds)
            + idle_in_transaction_findings(figures["idle_in_transaction"], thresholds)
            + blocking_findings(figures["blocking"], thresholds)
            + cache_findings(figures["cache"], thresholds)
            + replication_findings(figures.get("replication", []), thresholds)
            + wraparound_findings(figures["wraparound"], thresholds)
        )
    ordered = [f for f in findings if f["verdict"] == "critical"] + [f for f in findings if f["verdict"] == "warning"]
    return worst(f["verdict"] for f in ordered), [f["msg"] for f in ordered], ordered
