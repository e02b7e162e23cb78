#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_health: how is this PostgreSQL server doing? Reports, never fails."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_health
short_description: Report the health of a PostgreSQL server with a verdict (ok, warning, critical) and reasons
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the diagnosis steps of the seed runbooks' C(Database Issues) and C(Database Connection Issues)
    procedures (C(pg_isready), counting the rows of C(pg_stat_activity), the long-running and idle-in-transaction
    queries) and adds the figures a DBA looks at next.
  - "Collects: availability and server version; client connections in total, by state, by database and by
    user, against C(max_connections) minus C(superuser_reserved_connections); the longest active query; the
    oldest open transaction; sessions idle in transaction (count and oldest); blocked sessions and the sessions
    blocking them (C(pg_blocking_pids)); database sizes; the cache hit ratio; whether the server is in recovery
    and the lag of every replica in C(pg_stat_replication); the transaction-ID wraparound age."
  - Compares the figures with the thresholds below and returns RV(verdict) (V(ok), V(warning) or V(critical))
    with one reason per finding, critical ones first.
  - B(A health check reports, it never fails.) An unreachable server, a refused login or a wrong password is a
    result (RV(is_available=false), RV(verdict=critical), the error in RV(reasons), the password never in it),
    not a failed task. The playbook decides what a verdict means for the run (see the C(runbook.ops.db_health)
    role). The module fails only on invalid options or a missing C(psycopg).
  - >-
    Threshold defaults taken from the seed runbooks: connections 80 % / 90 % (the seeds' monitoring thresholds),
    active query 30 s (queries whose C(query_start) is older than C(interval '30 seconds')) / 5 min (the seeds' kill threshold),
    idle in transaction critical 10 min (C(idle in transaction ... > interval '10 minutes')).
  - "Threshold defaults B(not) from the seeds (sane values, change them to your service levels): idle in
    transaction warning 5 min, blocked sessions 1 / 5, cache hit ratio 90 % / 80 %, replication lag 1 min / 5 min,
    wraparound 50 % / 75 % of 2^31."
  - Durations are seconds or a number with a unit, as operators write them (C(30s), C(5m), C(1h30m)).
    A figure at or beyond a threshold reaches it.
extends_documentation_fragment:
  - runbook.ops.pg
options:
  connections_warning_pct:
    description: Client connections, in percent of C(max_connections - superuser_reserved_connections), from which
      the verdict is V(warning).
    type: float
    default: 80
  connections_critical_pct:
    description: The same for V(critical).
    type: float
    default: 90
  active_query_warning:
    description: Age of the longest active query (since C(query_start)) from which the verdict is V(warning).
    type: raw
    default: 30s
  active_query_critical:
    description: The same for V(critical).
    type: raw
    default: 5m
  idle_in_transaction_warning:
    description: Time the oldest session has been idle in transaction (since C(state_change)) from which the verdict
      is V(warning).
    type: raw
    default: 5m
  idle_in_transaction_critical:
    description: The same for V(critical).
    type: raw
    default: 10m
  blocked_sessions_warning:
    description: Number of sessions waiting for a lock held by another session from which the verdict is V(warning).
    type: int
    default: 1
  blocked_sessions_critical:
    description: The same for V(critical).
    type: int
    default: 5
  cache_hit_warning_pct:
    description:
      - Buffer cache hit ratio over all databases, in percent, B(at or below) which the verdict is V(warning).
      - Judged only once the server has read at least 1000 blocks, so a freshly started server is not flagged.
    type: float
    default: 90
  cache_hit_critical_pct:
    description: The same for V(critical). Must not be above O(cache_hit_warning_pct).
    type: float
    default: 80
  replication_lag_warning:
    description: Replay lag (C(pg_stat_replication.replay_lag)) of any replica from which the verdict is V(warning).
    type: raw
    default: 1m
  replication_lag_critical:
    description: The same for V(critical).
    type: raw
    default: 5m
  wraparound_warning_pct:
    description: The largest C(age) of C(datfrozenxid) of any database, in percent of 2^31, from which the verdict is
      V(warning).
    type: float
    default: 50
  wraparound_critical_pct:
    description: The same for V(critical).
    type: float
    default: 75
  query_max_length:
    description: Query texts in the result are cut to this many characters.
    type: int
    default: 200
  statement_timeout:
    description: Each statement of the check is cancelled after this long, so a sick server cannot hang the run.
    type: raw
    default: 10s
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; it runs the same way in check mode.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Log in as a superuser or a role with C(pg_monitor) (or C(pg_read_all_stats)); other roles do not see the
    state and query of other users' sessions, and the figures are incomplete.
  - Only client backends count as connections; the module's own session counts, but it is never the longest
    query, the oldest transaction or a blocked session.
  - An error while reading one group of figures (a missing privilege) is a V(warning) reason; the other figures
    are still reported.
seealso:
  - module: community.postgresql.postgresql_ping
  - module: runbook.ops.pg_query_stats
  - name: The Statistics Collector (pg_stat_activity, pg_stat_replication)
    description: PostgreSQL documentation.
    link: https://www.postgresql.org/docs/current/monitoring-stats.html
"""

EXAMPLES = r"""
- name: Check the server with the shared inventory login
  module_defaults:
    group/runbook.ops.pg:
      login_host: "{{ runbook_pg_host }}"
      login_port: "{{ runbook_pg_port }}"
      login_user: "{{ runbook_pg_user }}"
      login_password: "{{ runbook_pg_password }}"
      login_db: "{{ runbook_pg_database }}"
      ssl_mode: "{{ runbook_pg_sslmode }}"
  block:
    - name: Collect the health figures
      runbook.ops.pg_health:
      register: health
      no_log: true

- name: Stop when the server is critical
  ansible.builtin.assert:
    that: health.verdict != 'critical'
    fail_msg: "{{ health.reasons | join('; ') }}"

- name: Stricter thresholds for a latency-sensitive service
  runbook.ops.pg_health:
    login_host: db1.example.com
    login_user: monitor
    login_password: "{{ vault_pg_monitor_password }}"
    active_query_warning: 10s
    active_query_critical: 1m
    connections_warning_pct: 70
  register: health
  no_log: true
"""

RETURN = r"""
is_available:
  description: Whether the server accepted the login and answered.
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
  sample: ["connections 41/47 (87.2% of max_connections 50 minus 3 reserved) (warning at 80%)"]
findings:
  description: The same findings with their own verdict.
  returned: always
  type: list
  elements: dict
  sample: [{"verdict": "warning", "msg": "query active for 45.0s (pid 4711, user app) (warning at 30s)"}]
msg:
  description: The verdict and reasons in one line.
  returned: always
  type: str
  sample: "warning: query active for 45.0s (pid 4711, user app) (warning at 30s)"
server_version:
  description: The server's version (C(server_version)).
  returned: when available
  type: str
  sample: "15.18 (Debian 15.18-0+deb12u1)"
server_version_num:
  description: The server's version as a number (C(server_version_num)).
  returned: when available
  type: int
  sample: 150018
in_recovery:
  description: Whether the server is a standby (C(pg_is_in_recovery)).
  returned: when available
  type: bool
  sample: false
connections:
  description: Client connections.
  returned: when available
  type: dict
  contains:
    total:
      description: Client backends, this module's own session included.
      type: int
      sample: 12
    max_connections:
      description: C(max_connections).
      type: int
      sample: 100
    superuser_reserved:
      description: C(superuser_reserved_connections).
      type: int
      sample: 3
    available:
      description: C(max_connections - superuser_reserved_connections), what ordinary roles can use.
      type: int
      sample: 97
    used_pct:
      description: RV(connections.total) in percent of RV(connections.available); superusers can go above 100.
      type: float
      sample: 12.4
    by_state:
      description: Count per state (C(active), C(idle), C(idle in transaction)...; C(unknown) when not visible).
      type: dict
      sample: {"active": 2, "idle": 10}
    by_database:
      description: Count per database.
      type: dict
      sample: {"app": 11, "postgres": 1}
    by_user:
      description: Count per user.
      type: dict
      sample: {"app": 11, "runbook_admin": 1}
longest_active_query:
  description: The active query running the longest, other than this module's; null when there is none.
  returned: when available
  type: dict
  sample: {"pid": 4711, "user": "app", "database": "app", "age_s": 45.2, "query_start": "2026-01-01 10:00:00+00",
           "query": "SELECT * FROM tenders WHERE ..."}
oldest_transaction:
  description: The open transaction started the longest ago, other than this module's; null when there is none.
  returned: when available
  type: dict
  sample: {"pid": 4712, "user": "app", "database": "app", "state": "idle in transaction", "age_s": 610.0,
           "query": "UPDATE tenders SET ..."}
idle_in_transaction:
  description: Sessions idle in transaction (aborted ones included).
  returned: when available
  type: dict
  sample: {"count": 1, "max_age_s": 605.3, "max_age_pid": 4712}
blocking:
  description: Sessions waiting for a lock, and the sessions holding it.
  returned: when available
  type: dict
  contains:
    blocked_count:
      description: Number of blocked sessions.
      type: int
      sample: 1
    blocked:
      description: The blocked sessions, with C(blocked_by) (pids), C(wait_s) and C(query).
      type: list
      elements: dict
      sample: [{"pid": 4713, "user": "app", "database": "app", "blocked_by": [4712], "wait_s": 12.0,
                "query": "UPDATE tenders SET ..."}]
    blocking_pids:
      description: The pids holding the locks, sorted.
      type: list
      elements: int
      sample: [4712]
    blocking:
      description: The blocking sessions with their user, state, age of their transaction and query.
      type: list
      elements: dict
      sample: [{"pid": 4712, "user": "app", "state": "idle in transaction", "xact_age_s": 610.0, "query": "UPDATE ..."}]
database_sizes:
  description: Size of every database that accepts connections, largest first (C(bytes) null without CONNECT).
  returned: when available
  type: list
  elements: dict
  sample: [{"name": "app", "bytes": 8987843, "pretty": "8777 kB"}]
cache:
  description: Buffer cache hits and reads summed over all databases since the statistics were last reset.
  returned: when available
  type: dict
  sample: {"hits": 99000, "reads": 1000, "blocks": 100000, "hit_ratio_pct": 99.0}
replication:
  description: One entry per row of C(pg_stat_replication) (empty on a server without replicas).
  returned: when available
  type: list
  elements: dict
  sample: [{"pid": 99, "application_name": "replica1", "client_addr": "10.0.0.2", "state": "streaming",
            "sync_state": "async", "write_lag_s": 0.01, "flush_lag_s": 0.02, "replay_lag_s": 0.02,
            "replay_lag_bytes": 0}]
recovery:
  description: On a standby, the time since the last replayed transaction; null figures on a primary.
  returned: when available
  type: dict
  sample: {"replay_delay_s": null}
wraparound:
  description: The largest C(age(datfrozenxid)), its database and its share of 2^31.
  returned: when available
  type: dict
  sample: {"max_age": 2154, "database": "app", "pct": 0.0}
errors:
  description: Groups of figures that could not be read, with the error.
  returned: always
  type: dict
  sample: {}
thresholds:
  description: The thresholds applied, durations in seconds.
  returned: always
  type: dict
  sample: {"connections_warning_pct": 80.0, "active_query_warning": 30.0}
"""

from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_health_verdict import (
    XID_WRAP_LIMIT,
    check_thresholds,
    evaluate,
)

DURATION_OPTIONS = ("active_query_warning", "active_query_critical", "idle_in_transaction_warning",
                    "idle_in_transaction_critical", "replication_lag_warning", "replication_lag_critical")
NUMBER_OPTIONS = ("connections_warning_pct", "connections_critical_pct", "blocked_sessions_warning",
                  "blocked_sessions_critical", "cache_hit_warning_pct", "cache_hit_critical_pct",
                  "wraparound_warning_pct", "wraparound_critical_pct")

# Client backends other than this session: the activity every figure below is about.
OTHERS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"

SQL_VERSION = """
SELECT current_setting('server_version') AS version,
       current_setting('server_version_num')::int AS num,
       pg_is_in_recovery() AS in_recovery"""

SQL_SETTINGS = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS superuser_reserved"""

SQL_ACTIVITY = """
SELECT coalesce(state, 'unknown') AS state, coalesce(datname, '') AS database, coalesce(usename, '') AS "user",
       count(*)::int AS n
FROM pg_stat_activity WHERE backend_type = 'client backend'
GROUP BY 1, 2, 3"""

SQL_LONGEST_ACTIVE = f"""
SELECT pid, usename AS "user", datname AS database,
       extract(epoch FROM clock_timestamp() - query_start)::float8 AS age_s,
       query_start::text AS query_start, left(query, %(len)s) AS query
FROM pg_stat_activity
WHERE state = 'active' AND query_start IS NOT NULL AND {OTHERS}
ORDER BY query_start LIMIT 1"""

SQL_OLDEST_XACT = f"""
SELECT pid, usename AS "user", datname AS database, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS age_s,
       xact_start::text AS xact_start, left(query, %(len)s) AS query
FROM pg_stat_activity
WHERE xact_start IS NOT NULL AND {OTHERS}
ORDER BY xact_start LIMIT 1"""

SQL_IDLE_IN_XACT = f"""
SELECT count(*)::int AS count,
       max(extract(epoch FROM clock_timestamp() - state_change))::float8 AS max_age_s,
       (array_agg(pid ORDER BY state_change))[1] AS max_age_pid
FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND {OTHERS}"""

SQL_BLOCKED = f"""
SELECT pid, usename AS "user", datname AS database, pg_blocking_pids(pid) AS blocked_by,
       extract(epoch FROM clock_timestamp() - coalesce(query_start, state_change))::float8 AS wait_s,
       wait_event_type, left(query, %(len)s) AS query
FROM pg_stat_activity
WHERE cardinality(pg_blocking_pids(pid)) > 0 AND {OTHERS}
ORDER BY wait_s DESC"""

SQL_SESSIONS = """
SELECT pid, usename AS "user", datname AS database, state,
       extract(epoch FROM clock_timestamp() - xact_start)::float8 AS xact_age_s, left(query, %(len)s) AS query
FROM pg_stat_activity WHERE pid = ANY(%(pids)s) ORDER BY pid"""

SQL_SIZES = """
SELECT datname AS name,
       CASE WHEN has_database_privilege(datname, 'CONNECT') THEN pg_database_size(datname) END AS bytes,
       CASE WHEN has_database_privilege(datname, 'CONNECT') THEN pg_size_pretty(pg_database_size(datname)) END
         AS pretty
FROM pg_database WHERE datallowconn
ORDER BY bytes DESC NULLS LAST, name"""

SQL_CACHE = """
SELECT coalesce(sum(blks_hit), 0)::bigint AS hits, coalesce(sum(blks_read), 0)::bigint AS reads
FROM pg_stat_database"""

SQL_REPLICATION = """
SELECT pid, usename AS "user", application_name, client_addr::text AS client_addr, state, sync_state,
       extract(epoch FROM write_lag)::float8 AS write_lag_s,
       extract(epoch FROM flush_lag)::float8 AS flush_lag_s,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_s,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS replay_lag_bytes
FROM pg_stat_replication ORDER BY application_name, pid"""

SQL_RECOVERY = """
SELECT CASE WHEN pg_is_in_recovery()
            THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END
         AS replay_delay_s"""

SQL_WRAPAROUND = """
SELECT datname AS database, age(datfrozenxid)::bigint AS max_age
FROM pg_database ORDER BY age(datfrozenxid) DESC LIMIT 1"""


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        connections_warning_pct={"type": "float", "default": 80},
        connections_critical_pct={"type": "float", "default": 90},
        active_query_warning={"type": "raw", "default": "30s"},
        active_query_critical={"type": "raw", "default": "5m"},
        idle_in_transaction_warning={"type": "raw", "default": "5m"},
        idle_in_transaction_critical={"type": "raw", "default": "10m"},
        blocked_sessions_warning={"type": "int", "default": 1},
        blocked_sessions_critical={"type": "int", "default": 5},
        cache_hit_warning_pct={"type": "float", "default": 90},
        cache_hit_critical_pct={"type": "float", "default": 80},
        replication_lag_warning={"type": "raw", "default": "1m"},
        replication_lag_critical={"type": "raw", "default": "5m"},
        wraparound_warning_pct={"type": "float", "default": 50},
        wraparound_critical_pct={"type": "float", "default": 75},
        query_max_length={"type": "int", "default": 200},
        statement_timeout={"type": "raw", "default": "10s"},
    )
    return spec


def read_thresholds(module: AnsibleModule) -> dict[str, float]:
    """Thresholds from the options, durations in seconds; fails the module on a bad value or order."""
    thresholds: dict[str, float] = {}
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
    return thresholds


def _all(conn: Any, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(sql, params or {})
        return list(cur.fetchall())


def _one(conn: Any, sql: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
    rows = _all(conn, sql, params)
    return rows[0] if rows else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def read_connections(conn: Any) -> dict[str, Any]:
    settings = _one(conn, SQL_SETTINGS) or {}
    total = 0
    by_state: dict[str, int] = {}
    by_database: dict[str, int] = {}
    by_user: dict[str, int] = {}
    for row in _all(conn, SQL_ACTIVITY):
        total += row["n"]
        for counts, key in ((by_state, row["state"]), (by_database, row["database"]), (by_user, row["user"])):
            counts[key] = counts.get(key, 0) + row["n"]
    available = max(settings["max_connections"] - settings["superuser_reserved"], 1)
    return {
        "total": total,
        "max_connections": settings["max_connections"],
        "superuser_reserved": settings["superuser_reserved"],
        "available": available,
        "used_pct": round(100.0 * total / available, 1),
        "by_state": by_state,
        "by_database": by_database,
        "by_user": by_user,
    }


def read_longest_active(conn: Any, qlen: int) -> dict[str, Any] | None:
    row = _one(conn, SQL_LONGEST_ACTIVE, {"len": qlen})
    if row:
        row["age_s"] = _round(row["age_s"])
    return row


def read_oldest_transaction(conn: Any, qlen: int) -> dict[str, Any] | None:
    row = _one(conn, SQL_OLDEST_XACT, {"len": qlen})
    if row:
        row["age_s"] = _round(row["age_s"])
    return row


def read_idle_in_transaction(conn: Any) -> dict[str, Any]:
    row = _one(conn, SQL_IDLE_IN_XACT) or {"count": 0, "max_age_s": None, "max_age_pid": None}
    row["max_age_s"] = _round(row["max_age_s"])
    return row


def read_blocking(conn: Any, qlen: int) -> dict[str, Any]:
    blocked = _all(conn, SQL_BLOCKED, {"len": qlen})
    pids = sorted({pid for row in blocked for pid in row["blocked_by"]})
    for row in blocked:
        row["wait_s"] = _round(row["wait_s"])
    holders = _all(conn, SQL_SESSIONS, {"len": qlen, "pids": pids}) if pids else []
    for row in holders:
        row["xact_age_s"] = _round(row["xact_age_s"])
    return {"blocked_count": len(blocked), "blocked": blocked, "blocking_pids": pids, "blocking": holders}


def read_cache(conn: Any) -> dict[str, Any]:
    row = _one(conn, SQL_CACHE) or {"hits": 0, "reads": 0}
    blocks = row["hits"] + row["reads"]
    ratio = round(100.0 * row["hits"] / blocks, 2) if blocks else None
    return {"hits": row["hits"], "reads": row["reads"], "blocks": blocks, "hit_ratio_pct": ratio}


def read_replication(conn: Any) -> list[dict[str, Any]]:
    rows = _all(conn, SQL_REPLICATION)
    for row in rows:
        for key in ("write_lag_s", "flush_lag_s", "replay_lag_s"):
            row[key] = _round(row[key], 3)
    return rows


def read_recovery(conn: Any) -> dict[str, Any]:
    row = _one(conn, SQL_RECOVERY) or {"replay_delay_s": None}
    row["replay_delay_s"] = _round(row["replay_delay_s"])
    return row


def read_wraparound(conn: Any) -> dict[str, Any]:
    row = _one(conn, SQL_WRAPAROUND) or {"database": None, "max_age": 0}
    row["pct"] = round(100.0 * row["max_age"] / XID_WRAP_LIMIT, 2)
    return row


# Figure groups: (result key, reader, default when it cannot be read).
SECTIONS: list[tuple[str, Callable[..., Any], Any, bool]] = [
    ("connections", read_connections, None, False),
    ("longest_active_query", read_longest_active, None, True),
    ("oldest_transaction", read_oldest_transaction, None, True),
    ("idle_in_transaction", read_idle_in_transaction, {"count": 0, "max_age_s": None, "max_age_pid": None}, False),
    ("blocking", read_blocking, {"blocked_count": 0, "blocked": [], "blocking_pids": [], "blocking": []}, True),
    ("database_sizes", lambda conn: _all(conn, SQL_SIZES), [], False),
    ("cache", read_cache, {"hits": 0, "reads": 0, "blocks": 0, "hit_ratio_pct": None}, False),
    ("replication", read_replication, [], False),
    ("recovery", read_recovery, {"replay_delay_s": None}, False),
    ("wraparound", read_wraparound, {"database": None, "max_age": 0, "pct": None}, False),
]


def collect(module: AnsibleModule) -> dict[str, Any]:
    """Every figure, or is_available false with the connection error. Never raises for a server problem."""
    conn, err = connect(module)
    if err:
        return {"is_available": False, "error": err, "errors": {}}
    params = module.params
    qlen = params["query_max_length"]
    figures: dict[str, Any] = {"is_available": True, "errors": {}}
    try:
        timeout_ms = int(to_seconds(params["statement_timeout"]) * 1000)
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [str(timeout_ms)])
        version = _one(conn, SQL_VERSION) or {}
        figures.update(server_version=version.get("version"), server_version_num=version.get("num"),
                       in_recovery=version.get("in_recovery"))
        for key, reader, default, wants_len in SECTIONS:
            try:
                figures[key] = reader(conn, qlen) if wants_len else reader(conn)
            except PsycopgError as exc:
                if conn.broken:
                    raise
                figures[key] = default
                figures["errors"][key] = redact(_first_line(exc), params)
    except PsycopgError as exc:
        return {"is_available": False, "errors": figures["errors"],
                "error": redact(f"PostgreSQL stopped answering during the check: {_first_line(exc)}", params)}
    finally:
        conn.close()
    if figures.get("connections") is None:
        figures["connections"] = {"total": 0, "max_connections": 0, "superuser_reserved": 0, "available": 0,
                                  "used_pct": None, "by_state": {}, "by_database": {}, "by_user": {}}
    return figures


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params["query_max_length"] < 1:
        module.fail_json(msg="query_max_length must be at least 1")
    try:
        to_seconds(module.params["statement_timeout"])
    except ValueError as err:
        module.fail_json(msg=f"statement_timeout: {err}")
    thresholds = read_thresholds(module)
    figures = collect(module)
    verdict, reasons, findings = evaluate(figures, thresholds)
    for key, error in figures["errors"].items():
        findings.append({"verdict": "warning", "msg": f"could not read {key.replace('_', ' ')}: {error}"})
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
    result.update({k: v for k, v in figures.items() if k != "error"})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
