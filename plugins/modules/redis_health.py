#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.redis_health: how is this Redis server doing? Reports, never fails."""
from __future__ import annotations

DOCUMENTATION = r"""
module: redis_health
short_description: Report the health of a Redis server with a verdict (ok, warning, critical) and reasons
version_added: 0.3.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the diagnosis steps of the seed runbooks' C(Redis Connection Failures) procedure (C(redis-cli ping),
    C(info memory), counting the clients) and adds what an operator looks at next.
  - "Collects: availability, PING latency, version, role and replication (master link status, lag of every
    replica); used memory against C(maxmemory) (against the system memory when C(maxmemory) is 0, unlimited) and
    C(maxmemory-policy); evicted and expired keys; connected and blocked clients against C(maxclients); persistence
    (age of the last RDB save, last BGSAVE status, a BGSAVE in progress, AOF enabled and its status); keys per
    database."
  - Compares the figures with the thresholds below and returns RV(verdict) (V(ok), V(warning) or V(critical))
    with one reason per finding, critical ones first.
  - B(An evicting maxmemory-policy) (C(allkeys-*), C(volatile-*)) is a reason of its own (O(evicting_policy_verdict),
    V(warning) by default) - a Redis that holds job queues under such a policy can drop jobs silently. The seed
    runbook's prevention advice C(maxmemory-policy allkeys-lru) is only right for a Redis that holds nothing but
    cache; set O(evicting_policy_verdict=ok) for those.
  - B(A health check reports, it never fails.) An unreachable server or a wrong password is a result
    (RV(is_available=false), RV(verdict=critical), the error in RV(reasons), the password never in it), not a
    failed task. The module fails only on invalid options or a missing redis-py.
  - "Round trips: the PING of the connection, O(latency_samples) timed PINGs, then one pipeline with C(INFO) and
    C(CONFIG GET save). C(maxmemory-policy) and C(maxclients) come from C(INFO) (Redis 6.2 and later); older
    servers are asked with C(CONFIG GET) in the same pipeline. A server that refuses C(CONFIG) (ACL, renamed
    command) is still checked; only the RDB save schedule is then unknown."
  - >-
    Threshold defaults from the seed runbooks: memory 80 % / 90 % and clients 80 % / 90 % (the seeds' monitoring
    thresholds), PING latency warning 10 ms (the seeds' connection time target), last RDB save critical 24 h (the
    seeds' RPO of 24 hours).
  - "Not from the seeds (sane values, set them to your service levels): PING latency critical 100 ms, last RDB save
    warning 2 h, replica lag 10 s / 60 s."
extends_documentation_fragment:
  - runbook.ops.redis
options:
  memory_warning_pct:
    description: Used memory (C(used_memory)) in percent of C(maxmemory), or of the system memory when C(maxmemory)
      is 0, from which the verdict is V(warning).
    type: float
    default: 80
  memory_critical_pct:
    description: The same for V(critical).
    type: float
    default: 90
  clients_warning_pct:
    description: Connected clients in percent of C(maxclients) from which the verdict is V(warning).
    type: float
    default: 80
  clients_critical_pct:
    description: The same for V(critical).
    type: float
    default: 90
  latency_warning_ms:
    description: Median PING round trip in milliseconds from which the verdict is V(warning).
    type: float
    default: 10
  latency_critical_ms:
    description: The same for V(critical).
    type: float
    default: 100
  latency_samples:
    description: How many PINGs are timed; the median counts, so one slow round trip on a busy host is no finding.
    type: int
    default: 3
  last_save_warning:
    description:
      - Age of the last successful RDB save from which the verdict is V(warning). Seconds or a duration (C(2h)).
      - Judged only when RDB is the persistence (AOF off, C(save) not empty) and keys changed since that save.
    type: raw
    default: 2h
  last_save_critical:
    description: The same for V(critical).
    type: raw
    default: 24h
  replication_lag_warning:
    description: Seconds since a replica last acknowledged (C(lag) of C(INFO replication)) from which the verdict is
      V(warning). Seconds or a duration.
    type: raw
    default: 10s
  replication_lag_critical:
    description: The same for V(critical).
    type: raw
    default: 60s
  evicting_policy_verdict:
    description: The verdict of an evicting C(maxmemory-policy) (C(allkeys-*), C(volatile-*)). V(ok) for a Redis that
      holds only cache.
    type: str
    choices: [ok, warning, critical]
    default: warning
  evicted_keys_verdict:
    description: The verdict when keys were evicted since the server started (C(evicted_keys) above 0).
    type: str
    choices: [ok, warning, critical]
    default: warning
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; it runs the same way in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Blocked clients are reported, not judged; queue workers wait in blocking commands (C(BRPOP), C(BZPOPMIN)) as
    their normal state.
  - The age of the last save is measured with the server's own clock (C(server_time_usec)) where it has one.
seealso:
  - module: community.general.redis_info
  - module: runbook.ops.redis_bgsave
  - name: INFO
    description: Redis documentation of the INFO fields.
    link: https://redis.io/docs/latest/commands/info/
"""

EXAMPLES = r"""
- name: Check the server with the shared inventory login
  module_defaults:
    group/runbook.ops.redis:
      login_host: "{{ runbook_redis_host }}"
      login_port: "{{ runbook_redis_port }}"
      login_password: "{{ runbook_redis_password }}"
  block:
    - name: Collect the health figures
      runbook.ops.redis_health:
      register: health

- name: Stop when Redis is critical
  ansible.builtin.assert:
    that: health.verdict != 'critical'
    fail_msg: "{{ health.reasons | join('; ') }}"

- name: A Redis that holds only cache may evict
  runbook.ops.redis_health:
    login_host: cache.example.com
    login_password: "{{ vault_redis_password }}"
    evicting_policy_verdict: ok
    evicted_keys_verdict: ok
  register: health
"""

RETURN = r"""
is_available:
  description: Whether the server accepted the login and answered PING.
  returned: always
  type: bool
  sample: true
verdict:
  description: V(ok), V(warning) or V(critical); always V(critical) when RV(is_available) is false.
  returned: always
  type: str
  sample: warning
reasons:
  description: One sentence per finding, critical ones first; empty when the verdict is V(ok).
  returned: always
  type: list
  elements: str
  sample: ["maxmemory-policy allkeys-lru evicts keys: job queues in this Redis can lose jobs silently (use noeviction)"]
findings:
  description: The same findings with their own verdict.
  returned: always
  type: list
  elements: dict
  sample: [{"verdict": "warning", "msg": "memory 850.0 MiB is 83.0% of maxmemory 1024.0 MiB (warning at 80%)"}]
msg:
  description: The verdict and reasons in one line.
  returned: always
  type: str
  sample: "ok"
redis_version:
  description: C(redis_version).
  returned: when available
  type: str
  sample: "7.0.15"
redis_mode:
  description: C(standalone), C(sentinel) or C(cluster).
  returned: when available
  type: str
  sample: standalone
uptime_s:
  description: Seconds since the server started.
  returned: when available
  type: int
  sample: 86400
latency:
  description: The timed PING round trips, in milliseconds.
  returned: when available
  type: dict
  sample: {"samples": 3, "median_ms": 0.21, "min_ms": 0.18, "max_ms": 0.4}
memory:
  description: Memory figures; C(limit) is C(maxmemory), or the system memory when C(maxmemory) is 0.
  returned: when available
  type: dict
  sample: {"used": 1138728, "used_human": "1.09M", "peak": 1200000, "maxmemory": 0, "total_system_memory": 25325268992,
           "limit": 25325268992, "limit_basis": "total_system_memory", "used_pct": 0.0,
           "maxmemory_policy": "noeviction", "evicting_policy": false}
clients:
  description: Client figures.
  returned: when available
  type: dict
  sample: {"connected": 3, "blocked": 1, "maxclients": 10000, "used_pct": 0.03, "rejected_connections": 0}
key_counts:
  description: Evicted and expired keys since the server started, and the keys of all databases.
  returned: when available
  type: dict
  sample: {"evicted": 0, "expired": 12, "total": 42}
persistence:
  description: RDB and AOF state. C(rdb_save_config) is C(CONFIG GET save) (null when refused).
  returned: when available
  type: dict
  sample: {"loading": false, "rdb_save_config": "3600 1 300 100 60 10000", "rdb_last_save_time": 1796124546,
           "rdb_last_save_age_s": 310.0, "rdb_changes_since_last_save": 12, "rdb_bgsave_in_progress": false,
           "rdb_last_bgsave_status": "ok", "rdb_saves": 3, "aof_enabled": true, "aof_rewrite_in_progress": false,
           "aof_last_bgrewrite_status": "ok", "aof_last_write_status": "ok"}
replication:
  description: Role (C(master) or C(slave)), the replicas of a master with their lag, the master link of a replica.
  returned: when available
  type: dict
  sample: {"role": "master", "connected_replicas": 1,
           "replicas": [{"ip": "10.0.0.3", "port": 6379, "state": "online", "offset": 1200, "lag_s": 0, "lag_bytes": 0}]}
keyspace:
  description: Keys, keys with a TTL and the average TTL (ms) of every database that has keys.
  returned: when available
  type: list
  elements: dict
  sample: [{"db": 0, "keys": 42, "expires": 2, "avg_ttl": 28901}]
errors:
  description: Figures that could not be read, with the error.
  returned: always
  type: dict
  sample: {}
thresholds:
  description: The thresholds applied, durations in seconds.
  returned: always
  type: dict
  sample: {"memory_warning_pct": 80.0, "last_save_warning": 7200.0}
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.redis_health_verdict import check_thresholds, evaluate, figures
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import (
    RedisError,
    connect,
    first_line,
    redact,
    redis_argument_spec,
    where,
)

DURATION_OPTIONS = ("last_save_warning", "last_save_critical", "replication_lag_warning", "replication_lag_critical")
NUMBER_OPTIONS = ("memory_warning_pct", "memory_critical_pct", "clients_warning_pct", "clients_critical_pct",
                  "latency_warning_ms", "latency_critical_ms")
CHOICE_OPTIONS = ("evicting_policy_verdict", "evicted_keys_verdict")


def argument_spec() -> dict[str, Any]:
    return redis_argument_spec(
        memory_warning_pct={"type": "float", "default": 80},
        memory_critical_pct={"type": "float", "default": 90},
        clients_warning_pct={"type": "float", "default": 80},
        clients_critical_pct={"type": "float", "default": 90},
        latency_warning_ms={"type": "float", "default": 10},
        latency_critical_ms={"type": "float", "default": 100},
        latency_samples={"type": "int", "default": 3},
        last_save_warning={"type": "raw", "default": "2h"},
        last_save_critical={"type": "raw", "default": "24h"},
        replication_lag_warning={"type": "raw", "default": "10s"},
        replication_lag_critical={"type": "raw", "default": "60s"},
        evicting_policy_verdict={"type": "str", "default": "warning", "choices": ["ok", "warning", "critical"]},
        evicted_keys_verdict={"type": "str", "default": "warning", "choices": ["ok", "warning", "critical"]},
    )


def read_thresholds(module: AnsibleModule) -> dict[str, Any]:
    thresholds: dict[str, Any] = {}
    for name in DURATION_OPTIONS:
        try:
            thresholds[name] = to_seconds(module.params[name])
        except ValueError as err:
            module.fail_json(msg=f"{name}: {err}")
    for name in NUMBER_OPTIONS:
        thresholds[name] = float(module.params[name])
    errors = check_thresholds(thresholds)
    if errors:
        module.fail_json(msg="; ".join(errors), thresholds=thresholds)
    thresholds.update({name: module.params[name] for name in CHOICE_OPTIONS})
    return thresholds


def _config_value(reply: Any, name: str) -> str | None:
    """CONFIG GET's reply as redis-py parses it ({name: value}); None when refused (an exception object)."""
    return reply.get(name) if isinstance(reply, dict) else None


def collect(module: AnsibleModule) -> dict[str, Any]:
    """Every figure, or is_available false with the connection error. Never raises for a server problem."""
    client, err = connect(module)
    if err:
        return {"is_available": False, "error": err, "errors": {}}
    errors: dict[str, str] = {}
    try:
        pings = []
        for _sample in range(module.params["latency_samples"]):
            start = time.perf_counter()
            client.ping()
            pings.append((time.perf_counter() - start) * 1000)
        pipe = client.pipeline(transaction=False)
        pipe.info()
        pipe.config_get("save")
        info, save = pipe.execute(raise_on_error=False)
        if isinstance(info, Exception):
            raise info
        save_config = _config_value(save, "save")
        if save_config is None:
            errors["rdb_save_config"] = redact(f"CONFIG GET save refused: {first_line(save)}", module.params)
        missing = [name for name in ("maxmemory-policy", "maxclients") if name.replace("-", "_") not in info]
        if missing:  # servers before 6.2 do not list them in INFO
            pipe = client.pipeline(transaction=False)
            for name in missing:
                pipe.config_get(name)
            for name, reply in zip(missing, pipe.execute(raise_on_error=False)):
                value = _config_value(reply, name)
                if value is None:
                    errors[name] = redact(f"CONFIG GET {name} refused: {first_line(reply)}", module.params)
                else:
                    info[name.replace("-", "_")] = value
    except RedisError as exc:
        return {"is_available": False, "errors": errors,
                "error": redact(f"Redis at {where(module.params)} stopped answering during the check: "
                                f"{first_line(exc)}", module.params)}
    finally:
        client.close()
    usec = info.get("server_time_usec")
    now = int(usec) / 1e6 if usec else time.time()
    return {"is_available": True, "errors": errors, **figures(info, now=now, pings_ms=pings, save_config=save_config)}


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params["latency_samples"] < 1:
        module.fail_json(msg="latency_samples must be at least 1")
    thresholds = read_thresholds(module)
    figs = collect(module)
    verdict, reasons, findings = evaluate(figs, thresholds)
    for key in ("maxmemory-policy", "maxclients"):
        if key in figs["errors"]:
            findings.append({"verdict": "warning", "msg": f"could not read {key}: {figs['errors'][key]}"})
            reasons.append(findings[-1]["msg"])
            verdict = "critical" if verdict == "critical" else "warning"
    result: dict[str, Any] = {
        "changed": False,
        "verdict": verdict,
        "reasons": reasons,
        "findings": findings,
        "thresholds": thresholds,
        "msg": verdict if not reasons else f"{verdict}: {'; '.join(reasons)}",
    }
    result.update({k: v for k, v in figs.items() if k != "error"})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
