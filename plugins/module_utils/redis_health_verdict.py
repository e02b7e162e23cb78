# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Figures and verdicts of runbook.ops.redis_health from one INFO reply.

Pure functions, no server: the module sends PING and INFO, figures() turns the
parsed INFO (redis-py's dict) into the module's figures and evaluate() turns
those into ok / warning / critical with one reason per finding, so that every
decision is unit-tested (tests/unit/plugins/module_utils/test_redis_health_verdict.py).
"""
from __future__ import annotations

import statistics
from typing import Any, Optional

from ansible_collections.runbook.ops.plugins.module_utils.pg_health_verdict import human_duration
from ansible_collections.runbook.ops.plugins.module_utils.verdicts import level, worst

# Policies under which Redis deletes keys when maxmemory is reached: a queue
# held there loses jobs without an error to anyone (noeviction refuses the
# write instead, and the producer sees it).
EVICTING_POLICIES = frozenset({
    "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
})

# Option name pairs (warning, critical), higher is worse. Durations in seconds.
THRESHOLD_PAIRS: dict[str, tuple[str, str]] = {
    "memory": ("memory_warning_pct", "memory_critical_pct"),
    "clients": ("clients_warning_pct", "clients_critical_pct"),
    "latency": ("latency_warning_ms", "latency_critical_ms"),
    "last_save": ("last_save_warning", "last_save_critical"),
    "replication_lag": ("replication_lag_warning", "replication_lag_critical"),
}


def check_thresholds(thresholds: dict[str, float]) -> list[str]:
    """Errors for negative or swapped pairs (a swapped pair would hide every warning)."""
    errors = []
    for warn_key, crit_key in THRESHOLD_PAIRS.values():
        warn, crit = thresholds[warn_key], thresholds[crit_key]
        if warn < 0 or crit < 0:
            errors.append(f"{warn_key} and {crit_key} cannot be negative")
        elif warn > crit:
            errors.append(f"{warn_key} ({warn:g}) must not be above {crit_key} ({crit:g})")
    return errors


def _int(value: Any, default: Optional[int] = None) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _pct(part: Optional[int], whole: Optional[int]) -> Optional[float]:
    return round(100.0 * part / whole, 2) if part is not None and whole else None


def memory_figures(info: dict[str, Any]) -> dict[str, Any]:
    used, maxmemory = _int(info.get("used_memory")), _int(info.get("maxmemory"), 0)
    system = _int(info.get("total_system_memory"))
    # maxmemory 0 is unlimited: what limits Redis then is the machine
    limit, basis = (maxmemory, "maxmemory") if maxmemory else (system, "total_system_memory") if system else (None, None)
    return {"used": used, "used_human": info.get("used_memory_human"), "peak": _int(info.get("used_memory_peak")),
            "maxmemory": maxmemory, "total_system_memory": system, "limit": limit, "limit_basis": basis,
            "used_pct": _pct(used, limit), "maxmemory_policy": info.get("maxmemory_policy"),
            "evicting_policy": info.get("maxmemory_policy") in EVICTING_POLICIES}


def client_figures(info: dict[str, Any]) -> dict[str, Any]:
    connected, maxclients = _int(info.get("connected_clients"), 0), _int(info.get("maxclients"))
    return {"connected": connected, "blocked": _int(info.get("blocked_clients"), 0), "maxclients": maxclients,
            "used_pct": _pct(connected, maxclients), "rejected_connections": _int(info.get("rejected_connections"), 0)}


def persistence_figures(info: dict[str, Any], now: float, save_config: Optional[str]) -> dict[str, Any]:
    last = _int(info.get("rdb_last_save_time"))
    return {
        "loading": bool(_int(info.get("loading"), 0)),
        "rdb_save_config": save_config,
        "rdb_last_save_time": last,
        "rdb_last_save_age_s": round(max(0.0, now - last), 1) if last else None,
        "rdb_changes_since_last_save": _int(info.get("rdb_changes_since_last_save"), 0),
        "rdb_bgsave_in_progress": bool(_int(info.get("rdb_bgsave_in_progress"), 0)),
        "rdb_last_bgsave_status": info.get("rdb_last_bgsave_status"),
        "rdb_saves": _int(info.get("rdb_saves")),
        "aof_enabled": bool(_int(info.get("aof_enabled"), 0)),
        "aof_rewrite_in_progress": bool(_int(info.get("aof_rewrite_in_progress"), 0)),
        "aof_last_bgrewrite_status": info.get("aof_last_bgrewrite_status"),
        "aof_last_write_status": info.get("aof_last_write_status"),
    }


def replication_figures(info: dict[str, Any]) -> dict[str, Any]:
    role = info.get("role")
    out: dict[str, Any] = {"role": role, "connected_replicas": _int(info.get("connected_slaves"), 0), "replicas": []}
    master_offset = _int(info.get("master_repl_offset"), 0)
    for index in range(out["connected_replicas"] or 0):
        rep = info.get(f"slave{index}")
        if not isinstance(rep, dict):
            continue
        offset = _int(rep.get("offset"), 0)
        out["replicas"].append({"ip": rep.get("ip"), "port": _int(rep.get("port")), "state": rep.get("state"),
                                "offset": offset, "lag_s": _int(rep.get("lag")),
                                "lag_bytes": max(0, (master_offset or 0) - (offset or 0))})
    if role == "slave":
        out.update(master_host=info.get("master_host"), master_port=_int(info.get("master_port")),
                   master_link_status=info.get("master_link_status"),
                   master_last_io_seconds_ago=_int(info.get("master_last_io_seconds_ago")),
                   master_sync_in_progress=bool(_int(info.get("master_sync_in_progress"), 0)))
    return out


def keyspace_figures(info: dict[str, Any]) -> list[dict[str, Any]]:
    """[{db, keys, expires, avg_ttl}] from the dbN entries of INFO keyspace, by db number."""
    dbs = []
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit() and isinstance(value, dict):
            dbs.append({"db": int(key[2:]), "keys": _int(value.get("keys"), 0), "expires": _int(value.get("expires"), 0),
                        "avg_ttl": _int(value.get("avg_ttl"), 0)})
    return sorted(dbs, key=lambda d: d["db"])


def latency_figures(pings_ms: list[float]) -> dict[str, Any]:
    if not pings_ms:
        return {"samples": 0, "median_ms": None, "min_ms": None, "max_ms": None}
    return {"samples": len(pings_ms), "median_ms": round(statistics.median(pings_ms), 3),
            "min_ms": round(min(pings_ms), 3), "max_ms": round(max(pings_ms), 3)}


def figures(info: dict[str, Any], *, now: float, pings_ms: list[float], save_config: Optional[str] = None) -> dict[str, Any]:
    """The module's figures from redis-py's parsed INFO; now is the server's clock (server_time_usec) when known."""
    keyspace = keyspace_figures(info)
    return {
        "redis_version": str(info.get("redis_version", "")) or None,
        "redis_mode": info.get("redis_mode"),
        "uptime_s": _int(info.get("uptime_in_seconds")),
        "latency": latency_figures(pings_ms),
        "memory": memory_figures(info),
        "clients": client_figures(info),
        "key_counts": {"evicted": _int(info.get("evicted_keys"), 0), "expired": _int(info.get("expired_keys"), 0),
                       "total": sum(d["keys"] for d in keyspace)},
        "persistence": persistence_figures(info, now, save_config),
        "replication": replication_figures(info),
        "keyspace": keyspace,
    }


def _finding(verdict: str, msg: str) -> dict[str, str]:
    return {"verdict": verdict, "msg": msg}


def _at(verdict: str, t: dict[str, Any], pair: str, fmt: str) -> str:
    warn_key, crit_key = THRESHOLD_PAIRS[pair]
    return f"({verdict} at {fmt.format(t[crit_key] if verdict == 'critical' else t[warn_key])})"


def _mib(value: Optional[int]) -> str:
    return "-" if value is None else f"{value / 1048576:.1f} MiB"


def latency_findings(lat: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    v = level(lat.get("median_ms"), t["latency_warning_ms"], t["latency_critical_ms"])
    if v == "ok":
        return []
    return [_finding(v, f"PING median {lat['median_ms']:.1f} ms over {lat['samples']} round trips "
                        f"{_at(v, t, 'latency', '{:g} ms')}")]


def memory_findings(mem: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    v = level(mem.get("used_pct"), t["memory_warning_pct"], t["memory_critical_pct"])
    if v != "ok":
        basis = "maxmemory" if mem["limit_basis"] == "maxmemory" else "system memory (maxmemory 0: unlimited)"
        found.append(_finding(v, f"memory {_mib(mem['used'])} is {mem['used_pct']:.1f}% of {basis} "
                                 f"{_mib(mem['limit'])} {_at(v, t, 'memory', '{:g}%')}"))
    policy_verdict = t["evicting_policy_verdict"]
    if mem.get("evicting_policy") and policy_verdict != "ok":
        found.append(_finding(policy_verdict, f"maxmemory-policy {mem['maxmemory_policy']} evicts keys: job queues "
                                              "in this Redis can lose jobs silently (use noeviction)"))
    return found


def eviction_findings(keys: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    if not keys.get("evicted") or t["evicted_keys_verdict"] == "ok":
        return []
    return [_finding(t["evicted_keys_verdict"], f"{keys['evicted']} keys evicted since the server started")]


def client_findings(clients: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    v = level(clients.get("used_pct"), t["clients_warning_pct"], t["clients_critical_pct"])
    if v != "ok":
        found.append(_finding(v, f"clients {clients['connected']}/{clients['maxclients']} "
                                 f"({clients['used_pct']:.1f}% of maxclients) {_at(v, t, 'clients', '{:g}%')}"))
    if clients.get("rejected_connections"):
        found.append(_finding("warning", f"{clients['rejected_connections']} connections rejected (maxclients "
                                         "reached) since the server started"))
    return found


def persistence_findings(p: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    if p.get("loading"):
        found.append(_finding("warning", "the server is loading its dataset from disk"))
    if p.get("rdb_last_bgsave_status") not in (None, "ok"):
        found.append(_finding("critical", f"last background save (BGSAVE) failed: rdb_last_bgsave_status "
                                          f"{p['rdb_last_bgsave_status']} (with stop-writes-on-bgsave-error, "
                                          "Redis refuses writes)"))
    if p.get("aof_enabled"):
        if p.get("aof_last_write_status") not in (None, "ok"):
            found.append(_finding("critical", f"AOF write failing: aof_last_write_status {p['aof_last_write_status']}"))
        if p.get("aof_last_bgrewrite_status") not in (None, "ok"):
            found.append(_finding("warning", f"last AOF rewrite failed: aof_last_bgrewrite_status "
                                             f"{p['aof_last_bgrewrite_status']}"))
    # The age of the last RDB save matters only when it is the persistence: with
    # AOF on, or RDB saving off (save ""), or nothing written since, it is no risk.
    rdb_is_the_persistence = not p.get("aof_enabled") and p.get("rdb_save_config") != ""
    if rdb_is_the_persistence and p.get("rdb_changes_since_last_save"):
        v = level(p.get("rdb_last_save_age_s"), t["last_save_warning"], t["last_save_critical"])
        if v != "ok":
            found.append(_finding(v, f"last RDB save {human_duration(p['rdb_last_save_age_s'])} ago with "
                                     f"{p['rdb_changes_since_last_save']} changes since and no AOF "
                                     f"{_at(v, t, 'last_save', '{:g}s')}"))
    return found


def replication_findings(rep: dict[str, Any], t: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    if rep.get("role") == "slave":
        if rep.get("master_link_status") != "up":
            found.append(_finding("critical", f"replica of {rep.get('master_host')}:{rep.get('master_port')} with "
                                              f"master link {rep.get('master_link_status')}"))
        elif rep.get("master_sync_in_progress"):
            found.append(_finding("warning", "replica is resynchronising with its master"))
    for r in rep.get("replicas", []):
        name = f"{r['ip']}:{r['port']}"
        if r.get("state") != "online":
            found.append(_finding("warning", f"replica {name} is {r.get('state')}, not online"))
            continue
        v = level(r.get("lag_s"), t["replication_lag_warning"], t["replication_lag_critical"])
        if v != "ok":
            found.append(_finding(v, f"replica {name} last acknowledged {r['lag_s']}s ago ({r['lag_bytes']} bytes "
                                     f"behind) {_at(v, t, 'replication_lag', '{:g}s')}"))
    return found


def evaluate(figs: dict[str, Any], thresholds: dict[str, Any]) -> tuple[str, list[str], list[dict[str, str]]]:
    """(verdict, reasons, findings); reasons list critical findings first."""
    if not figs.get("is_available"):
        findings = [_finding("critical", figs.get("error") or "Redis is not available")]
    else:
        findings = (latency_findings(figs["latency"], thresholds)
                    + memory_findings(figs["memory"], thresholds)
                    + eviction_findings(figs["key_counts"], thresholds)
                    + client_findings(figs["clients"], thresholds)
                    + persistence_findings(figs["persistence"], thresholds)
                    + replication_findings(figs["replication"], thresholds))
    ordered = [f for f in findings if f["verdict"] == "critical"] + [f for f in findings if f["verdict"] == "warning"]
    return worst(f["verdict"] for f in ordered), [f["msg"] for f in ordered], ordered
