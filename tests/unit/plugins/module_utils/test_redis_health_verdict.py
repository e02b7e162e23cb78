# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Figures and verdicts of runbook.ops.redis_health from INFO replies shaped like redis-py's."""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.redis_health_verdict import (
    EVICTING_POLICIES,
    check_thresholds,
    evaluate,
    figures,
)

NOW = 1_800_000_000.0
MiB = 1048576

THRESHOLDS: dict[str, Any] = {
    "memory_warning_pct": 80.0, "memory_critical_pct": 90.0, "clients_warning_pct": 80.0, "clients_critical_pct": 90.0,
    "latency_warning_ms": 10.0, "latency_critical_ms": 100.0, "last_save_warning": 7200.0,
    "last_save_critical": 86400.0, "replication_lag_warning": 10.0, "replication_lag_critical": 60.0,
    "evicting_policy_verdict": "warning", "evicted_keys_verdict": "warning",
}


def info(**over: Any) -> dict[str, Any]:
    """A healthy Redis 7 master as redis-py parses INFO."""
    base: dict[str, Any] = {
        "redis_version": "7.0.15", "redis_mode": "standalone", "uptime_in_seconds": 100, "role": "master",
        "connected_slaves": 0, "master_repl_offset": 0, "used_memory": 100 * MiB, "used_memory_human": "100M",
        "used_memory_peak": 120 * MiB, "maxmemory": 1000 * MiB, "total_system_memory": 8000 * MiB,
        "maxmemory_policy": "noeviction", "connected_clients": 10, "blocked_clients": 4, "maxclients": 100,
        "rejected_connections": 0, "evicted_keys": 0, "expired_keys": 7, "loading": 0,
        "rdb_last_save_time": int(NOW) - 60, "rdb_changes_since_last_save": 5, "rdb_bgsave_in_progress": 0,
        "rdb_last_bgsave_status": "ok", "rdb_saves": 2, "aof_enabled": 0, "aof_rewrite_in_progress": 0,
        "aof_last_bgrewrite_status": "ok", "aof_last_write_status": "ok",
        "db0": {"keys": 40, "expires": 2, "avg_ttl": 1000}, "db3": {"keys": 2, "expires": 0, "avg_ttl": 0},
    }
    base.update(over)
    return base


def judge(pings: tuple[float, ...] = (0.2, 0.3, 0.2), save: str | None = "3600 1", thresholds: dict | None = None,
          **over: Any) -> tuple[str, list[str]]:
    figs = {"is_available": True, **figures(info(**over), now=NOW, pings_ms=list(pings), save_config=save)}
    verdict, reasons, _findings = evaluate(figs, {**THRESHOLDS, **(thresholds or {})})
    return verdict, reasons


def test_healthy_is_ok_and_figures_are_parsed():
    figs = figures(info(), now=NOW, pings_ms=[0.2, 0.5, 0.3], save_config="3600 1")
    assert judge() == ("ok", [])
    assert figs["memory"]["used_pct"] == 10.0 and figs["memory"]["limit_basis"] == "maxmemory"
    assert figs["clients"] == {"connected": 10, "blocked": 4, "maxclients": 100, "used_pct": 10.0,
                               "rejected_connections": 0}
    assert figs["keyspace"] == [{"db": 0, "keys": 40, "expires": 2, "avg_ttl": 1000},
                                {"db": 3, "keys": 2, "expires": 0, "avg_ttl": 0}]
    assert figs["key_counts"] == {"evicted": 0, "expired": 7, "total": 42}
    assert figs["latency"] == {"samples": 3, "median_ms": 0.3, "min_ms": 0.2, "max_ms": 0.5}
    assert figs["persistence"]["rdb_last_save_age_s"] == 60.0


@pytest.mark.parametrize("used_mib, maxmemory_mib, expected", [
    (799, 1000, "ok"), (800, 1000, "warning"), (899, 1000, "warning"), (900, 1000, "critical"), (1000, 1000, "critical"),
    # maxmemory 0 (unlimited): against the system memory, 8000 MiB
    (6399, 0, "ok"), (6400, 0, "warning"), (7200, 0, "critical"),
])
def test_memory_levels(used_mib, maxmemory_mib, expected):
    verdict, reasons = judge(used_memory=used_mib * MiB, maxmemory=maxmemory_mib * MiB)
    assert verdict == expected, reasons
    if expected != "ok":
        basis = "maxmemory" if maxmemory_mib else "system memory (maxmemory 0: unlimited)"
        assert reasons[0].startswith(f"memory {used_mib:.1f} MiB is ") and f"of {basis} " in reasons[0]


def test_unlimited_memory_without_system_figure_is_not_judged():
    figs = figures(info(maxmemory=0, total_system_memory=None), now=NOW, pings_ms=[0.1])
    assert figs["memory"]["used_pct"] is None and figs["memory"]["limit"] is None
    assert judge(maxmemory=0, total_system_memory=None) == ("ok", [])


@pytest.mark.parametrize("policy", sorted(EVICTING_POLICIES))
@pytest.mark.parametrize("setting", ["warning", "critical", "ok"])
def test_evicting_policy_is_flagged_as_configured(policy, setting):
    verdict, reasons = judge(maxmemory_policy=policy, thresholds={"evicting_policy_verdict": setting})
    assert verdict == setting
    if setting != "ok":
        assert reasons == [f"maxmemory-policy {policy} evicts keys: job queues in this Redis can lose jobs silently "
                           "(use noeviction)"]


def test_noeviction_is_not_flagged():
    assert judge(maxmemory_policy="noeviction") == ("ok", [])


@pytest.mark.parametrize("evicted, setting, expected", [(0, "warning", "ok"), (3, "warning", "warning"),
                                                        (3, "critical", "critical"), (3, "ok", "ok")])
def test_evicted_keys(evicted, setting, expected):
    verdict, reasons = judge(evicted_keys=evicted, thresholds={"evicted_keys_verdict": setting})
    assert verdict == expected
    assert (reasons == [f"{evicted} keys evicted since the server started"]) == (expected != "ok")


@pytest.mark.parametrize("connected, expected", [(79, "ok"), (80, "warning"), (90, "critical"), (100, "critical")])
def test_clients_levels(connected, expected):
    verdict, reasons = judge(connected_clients=connected)
    assert verdict == expected
    if expected != "ok":
        assert reasons[0].startswith(f"clients {connected}/100 ")


def test_blocked_clients_are_not_a_finding():
    # queue workers wait in BRPOP/BZPOPMIN: that is their normal state
    assert judge(blocked_clients=95) == ("ok", [])


def test_rejected_connections_warn():
    assert judge(rejected_connections=2) == ("warning", ["2 connections rejected (maxclients reached) since the "
                                                         "server started"])


@pytest.mark.parametrize("pings, expected", [
    ((0.1, 0.2, 0.3), "ok"), ((9.9, 10.0, 200.0), "warning"), ((0.1, 150.0, 0.2), "ok"),  # the median counts
    ((100.0, 120.0, 1.0), "critical"),
])
def test_latency_median(pings, expected):
    assert judge(pings=pings)[0] == expected


@pytest.mark.parametrize("age, changes, aof, save, expected", [
    (7199, 5, 0, "3600 1", "ok"),
    (7200, 5, 0, "3600 1", "warning"),
    (86400, 5, 0, "3600 1", "critical"),
    (86400, 0, 0, "3600 1", "ok"),        # nothing written since: the old save holds everything
    (86400, 5, 1, "3600 1", "ok"),        # AOF is the persistence
    (86400, 5, 0, "", "ok"),              # RDB saving off (save ""): not a persistence to judge
    (86400, 5, 0, None, "critical"),      # CONFIG refused: judged all the same
])
def test_last_save_age(age, changes, aof, save, expected):
    verdict, reasons = judge(save=save, rdb_last_save_time=int(NOW) - age, rdb_changes_since_last_save=changes,
                             aof_enabled=aof)
    assert verdict == expected, reasons
    if expected != "ok":
        assert reasons[0].startswith("last RDB save ") and f"with {changes} changes since" in reasons[0]


@pytest.mark.parametrize("over, expected, text", [
    ({"rdb_last_bgsave_status": "err"}, "critical", "last background save (BGSAVE) failed"),
    ({"aof_enabled": 1, "aof_last_write_status": "err"}, "critical", "AOF write failing"),
    ({"aof_enabled": 1, "aof_last_bgrewrite_status": "err"}, "warning", "last AOF rewrite failed"),
    ({"aof_enabled": 0, "aof_last_write_status": "err"}, "ok", ""),  # AOF off: its status means nothing
    ({"loading": 1}, "warning", "loading its dataset"),
])
def test_persistence_status(over, expected, text):
    verdict, reasons = judge(**over)
    assert verdict == expected
    assert all(text in r for r in reasons[:1])


def _replica(state: str = "online", lag: int = 0, offset: int = 1000) -> dict[str, Any]:
    return {"ip": "10.0.0.3", "port": 6379, "state": state, "offset": offset, "lag": lag}


@pytest.mark.parametrize("replica, expected, text", [
    (_replica(lag=1), "ok", ""),
    (_replica(lag=10), "warning", "replica 10.0.0.3:6379 last acknowledged 10s ago (200 bytes behind) (warning at 10s)"),
    (_replica(lag=60), "critical", "(critical at 60s)"),
    (_replica(state="wait_bgsave"), "warning", "replica 10.0.0.3:6379 is wait_bgsave, not online"),
])
def test_replicas_of_a_master(replica, expected, text):
    verdict, reasons = judge(connected_slaves=1, master_repl_offset=1200, slave0={**replica, "offset": 1000})
    assert verdict == expected
    assert all(text in r for r in reasons[:1])


@pytest.mark.parametrize("link, syncing, expected", [("up", 0, "ok"), ("up", 1, "warning"), ("down", 0, "critical")])
def test_replica_master_link(link, syncing, expected):
    verdict, reasons = judge(role="slave", master_host="10.0.0.2", master_port=6379, master_link_status=link,
                             master_sync_in_progress=syncing)
    assert verdict == expected
    if link == "down":
        assert reasons == ["replica of 10.0.0.2:6379 with master link down"]


def test_unavailable_is_critical_with_the_error():
    assert evaluate({"is_available": False, "error": "cannot connect to Redis at 127.0.0.1:1/0: refused"},
                    THRESHOLDS)[:2] == ("critical", ["cannot connect to Redis at 127.0.0.1:1/0: refused"])


def test_critical_reasons_come_first():
    verdict, reasons = judge(maxmemory_policy="allkeys-lru", used_memory=950 * MiB)
    assert verdict == "critical"
    assert reasons[0].startswith("memory ") and reasons[1].startswith("maxmemory-policy allkeys-lru")


@pytest.mark.parametrize("over, error", [
    ({"memory_warning_pct": 95.0}, "memory_warning_pct (95) must not be above memory_critical_pct (90)"),
    ({"last_save_warning": -1.0}, "last_save_warning and last_save_critical cannot be negative"),
    ({"replication_lag_warning": 61.0}, "replication_lag_warning (61) must not be above replication_lag_critical (60)"),
])
def test_threshold_order(over, error):
    assert check_thresholds({**THRESHOLDS, **over}) == [error]
    assert check_thresholds(THRESHOLDS) == []
