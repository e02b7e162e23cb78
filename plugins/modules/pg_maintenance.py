#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""VACUUM, ANALYZE and REINDEX the tables of one database that need it."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_maintenance
short_description: VACUUM, ANALYZE or REINDEX the PostgreSQL tables that cross thresholds
version_added: 0.1.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Reads C(pg_stat_user_tables) of one database (O(login_db)), decides which tables need the operation and runs
    it on them, one statement per table, each in its own session-level autocommit transaction (VACUUM cannot run
    inside a transaction block).
  - "A table needs a VACUUM when it has at least O(min_dead_tuples) dead tuples B(and) its dead-tuple ratio
    C(n_dead_tup / (n_live_tup + n_dead_tup)) is at least O(dead_ratio), or when its last (auto)vacuum is older
    than O(vacuum_max_age)."
  - "A table needs an ANALYZE when at least O(min_mod_tuples) rows changed since its last analyze B(and) they
    are at least O(mod_ratio) of its live rows, or when its last (auto)analyze is older than O(analyze_max_age).
    O(operation=vacuum_analyze) runs C(VACUUM (ANALYZE)) on the tables that need either."
  - With O(tables), only the listed tables are candidates and the thresholds still decide, unless O(force=true).
    A listed table that does not exist is one error and nothing runs.
  - O(operation=reindex) has no threshold. It runs C(REINDEX TABLE CONCURRENTLY) (C(REINDEX TABLE) before
    PostgreSQL 12) on every table of O(tables), which is then required, and reports a change every time.
  - Idempotent for the threshold operations. VACUUM resets C(n_dead_tup) and ANALYZE resets C(n_mod_since_analyze),
    so a table just done no longer crosses and a second run changes nothing. The module re-reads the figures
    after acting (polling briefly until the statistics show the new run) and returns them.
  - Identifiers are quoted by C(psycopg.sql.Identifier); values are passed as parameters. A table named
    C(x"; DROP TABLE y; --) is vacuumed as that table.
  - Schemas C(pg_catalog), C(information_schema), C(pg_toast) and the temporary schemas are never touched.
options:
  operation:
    description:
      - What to run on the tables that need it. V(vacuum) runs C(VACUUM), V(vacuum_analyze) C(VACUUM (ANALYZE)),
        V(analyze) C(ANALYZE), V(reindex) C(REINDEX TABLE [CONCURRENTLY]) on the listed O(tables).
      - V(vacuum_analyze) is the seed runbooks' C(VACUUM ANALYZE).
    type: str
    choices: [vacuum, vacuum_analyze, analyze, reindex]
    default: vacuum_analyze
  tables:
    description:
      - Restrict the work to these tables, as C(schema.table) (a bare name is in schema C(public)).
      - Names are matched as stored, without case folding. A part that starts with a double quote is a quoted
        identifier (C("my.schema"."Orders"), with C("") for a quote); otherwise the schema is everything before the
        first dot and the table everything after it.
      - Every listed table must exist, or the module fails before running anything.
    type: list
    elements: str
    default: []
  force:
    description: Run the operation on every listed O(tables) even when it crosses no threshold.
    type: bool
    default: false
  full:
    description:
      - Run C(VACUUM FULL) instead of C(VACUUM). It rewrites each table and takes an B(ACCESS EXCLUSIVE) lock on it
        for the whole rewrite (no reads, no writes), and needs free disk space for a full copy of the table and its
        indexes. Requires O(allow_full=true) as well.
      - VACUUM FULL leaves C(n_dead_tup) and C(last_vacuum) as they were, so the module always runs it as
        C(VACUUM (FULL, ANALYZE)), whose ANALYZE refreshes the figures.
    type: bool
    default: false
  allow_full:
    description: The explicit confirmation O(full=true) needs. Without it O(full=true) is an error and nothing runs.
    type: bool
    default: false
  dead_ratio:
    description:
      - Dead tuples per tuple (0 to 1) at or above which a table needs a VACUUM, together with O(min_dead_tuples).
      - The default 0.1 is not from the seed runbooks (they vacuum everything); it is half of autovacuum's
        C(autovacuum_vacuum_scale_factor) of 0.2, so this catches what autovacuum has not reached yet.
    type: float
    default: 0.1
  min_dead_tuples:
    description:
      - Dead tuples at or above which a table needs a VACUUM, together with O(dead_ratio). Keeps small tables out.
      - The default 1000 is not from the seed runbooks.
    type: int
    default: 1000
  mod_ratio:
    description:
      - Rows changed since the last analyze per live row at or above which a table needs an ANALYZE, together
        with O(min_mod_tuples). The default 0.1 is not from the seed runbooks (autovacuum's own is 0.1).
    type: float
    default: 0.1
  min_mod_tuples:
    description: Rows changed since the last analyze at or above which a table needs an ANALYZE, together with O(mod_ratio).
    type: int
    default: 1000
  vacuum_max_age:
    description:
      - A table whose last VACUUM or autovacuum is older than this (or that was never vacuumed) needs a VACUUM,
        whatever its dead tuples. A duration such as C(7d), C(12h) or seconds. Empty disables the rule.
    type: str
    default: ''
  analyze_max_age:
    description: Like O(vacuum_max_age), for the last ANALYZE or autoanalyze. Empty disables the rule.
    type: str
    default: ''
  lock_timeout:
    description:
      - Session C(lock_timeout) as a duration (C(10s), C(1m), seconds). A statement that waits longer for its table
        lock fails, that table is reported, and the module goes on with the next table. V(0) waits forever.
      - The default C(10s) is not from the seed runbooks; it keeps a VACUUM FULL from queueing every reader of a
        busy table behind it.
    type: str
    default: 10s
  statement_timeout:
    description: Session C(statement_timeout) as a duration. V(0) (the default) sets no limit.
    type: str
    default: '0'
  jobs:
    description:
      - Sessions that run the statements in parallel, each taking the largest table left (like C(vacuumdb -j)).
      - More sessions finish sooner and load the server more (I/O, and C(maintenance_work_mem) each).
    type: int
    default: 1
extends_documentation_fragment:
  - runbook.ops.pg
attributes:
  check_mode:
    support: full
    description: Reads the figures for real, runs nothing, and returns the tables and the exact statements it would run.
  diff_mode:
    support: none
    description: The module returns the statements and the figures before and after instead of a diff.
notes:
  - The login needs to own the tables or be a superuser (PostgreSQL 15), or have C(pg_maintain) (PostgreSQL 17+).
    VACUUM and ANALYZE skip, with a warning in the server log, tables the login may not process.
  - One database per call; loop over databases in the playbook.
  - Estimated bloat is not a threshold yet; the dead-tuple ratio stands in for it.
seealso:
  - name: PostgreSQL VACUUM
    description: What VACUUM, VACUUM FULL and ANALYZE do and the locks they take.
    link: https://www.postgresql.org/docs/current/sql-vacuum.html
  - name: Routine vacuuming
    description: Why dead tuples need vacuuming and how autovacuum decides.
    link: https://www.postgresql.org/docs/current/routine-vacuuming.html
"""

EXAMPLES = r"""
- name: VACUUM ANALYZE the tables of app that need it (the seed runbooks' VACUUM ANALYZE)
  runbook.ops.pg_maintenance:
    login_host: 127.0.0.1
    login_user: runbook_admin
    login_password: "{{ runbook_pg_password }}"
    login_db: app
  register: maintenance

- name: Plan only (check mode) - which tables, which statements
  runbook.ops.pg_maintenance:
    login_db: app
    operation: vacuum
    dead_ratio: 0.2
    min_dead_tuples: 10000
  check_mode: true
  register: plan

- name: ANALYZE tables not analyzed for a week
  runbook.ops.pg_maintenance:
    login_db: app
    operation: analyze
    analyze_max_age: 7d

- name: VACUUM ANALYZE one table whatever its figures (seed "VACUUM ANALYZE documents")
  runbook.ops.pg_maintenance:
    login_db: app
    tables: [public.documents]
    force: true

- name: VACUUM FULL a bloated table (ACCESS EXCLUSIVE lock while it rewrites)
  runbook.ops.pg_maintenance:
    login_db: app
    tables: [public.events]
    full: true
    allow_full: true
    lock_timeout: 5s

- name: Rebuild the indexes of a table without blocking writes
  runbook.ops.pg_maintenance:
    login_db: app
    operation: reindex
    tables: [public.orders]
"""

RETURN = r"""
database:
  description: The database worked in.
  returned: always
  type: str
  sample: app
server_version:
  description: The server's version number (C(server_version_num)).
  returned: success
  type: int
  sample: 150018
operation:
  description: The operation.
  returned: always
  type: str
  sample: vacuum_analyze
statements:
  description: The statements run, or in check mode the statements that would run, in order.
  returned: success
  type: list
  elements: str
  sample: ['VACUUM (ANALYZE) "public"."orders"']
tables:
  description: One entry per table the operation ran on (or would run on, in check mode).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The table as C(schema.table), quoted where needed.
      type: str
      sample: public.orders
    schema:
      description: The schema.
      type: str
    table:
      description: The table name, as stored.
      type: str
    reasons:
      description: The thresholds it crosses (C(listed) for a forced or reindexed table).
      type: list
      elements: str
      sample: ["25000 dead tuples (50.0%; thresholds 1000 and 10.0%)"]
    statement:
      description: The statement.
      type: str
      sample: VACUUM (ANALYZE) "public"."orders"
    before:
      description:
        - The figures before, from C(pg_stat_user_tables) (C(n_live_tup), C(n_dead_tup), C(dead_ratio),
          C(n_mod_since_analyze), C(last_vacuum), C(last_autovacuum), C(last_analyze), C(last_autoanalyze),
          C(vacuum_age_s), C(analyze_age_s)), and C(size_bytes) estimated from C(pg_class.relpages).
      type: dict
    after:
      description: The same figures after the statement. Not in check mode.
      type: dict
      returned: when the statement ran
    still_crosses:
      description: The thresholds the table still crosses after the statement (empty when it is done).
      type: list
      elements: str
      returned: when the statement ran
    duration_s:
      description: Seconds the statement took.
      type: float
      returned: when the statement ran
    error:
      description: The error of a statement that failed (the module then fails after trying every table).
      type: str
      returned: when the statement failed
left_alone:
  description: Listed tables that cross no threshold and were left alone.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "public.users", "schema": "public", "table": "users", "reasons": []}]
failed_tables:
  description: The tables whose statement failed (the module then fails, after trying every table).
  returned: success, and when a statement failed
  type: list
  elements: str
  sample: []
examined:
  description: How many tables were candidates.
  returned: success
  type: int
  sample: 42
"""

import queue
import threading
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_maintenance_plan import (
    OPERATIONS,
    Thresholds,
    check_options,
    crossings,
    dead_ratio,
    missing_tables,
    parse_table_name,
    plan,
    vacuum_options,
)

try:
    from psycopg import Error as PsycopgError
    from psycopg import sql
except ImportError:  # reported by connect() through ensure_psycopg()
    PsycopgError = Exception
    sql = None

FIGURES_SQL = """
SELECT s.schemaname AS schema, s.relname AS table,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuum_age_s,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age_s,
       c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
 WHERE c.relkind IN ('r', 'm', 'p')
   AND s.schemaname !~ '^pg_temp_' AND s.schemaname !~ '^pg_toast'
"""
TIMESTAMPS = ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")
# Seconds to wait for the statistics to show a run (immediate from PostgreSQL 15, ~0.5 s before).
STATS_WAIT_S = 3.0


def read_figures(conn: Any) -> list[dict[str, Any]]:
    """Every user table's figures; a fresh statistics snapshot each time."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(FIGURES_SQL).fetchall()
    figures = []
    for row in rows:
        fig = dict(row)
        for key in TIMESTAMPS:
            fig[key] = fig[key].isoformat() if fig[key] is not None else None
        fig["dead_ratio"] = round(dead_ratio(fig["n_live_tup"], fig["n_dead_tup"]), 4)
        figures.append(fig)
    return figures


def build_statement(operation: str, schema: str, table: str, full: bool, server_version: int) -> Any:
    target = sql.Identifier(schema, table)
    if operation == "analyze":
        return sql.SQL("ANALYZE {}").format(target)
    if operation == "reindex":
        if server_version >= 120000:
            return sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(target)
        return sql.SQL("REINDEX TABLE {}").format(target)
    opts = vacuum_options(operation, full)
    if opts:
        # keywords from a fixed list, never from input
        return sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(sql.SQL(o) for o in opts), target)
    return sql.SQL("VACUUM {}").format(target)


def _ran(before: dict[str, Any], after: dict[str, Any] | None, operation: str, full: bool) -> bool:
    """Whether the statistics show the run: the timestamp the operation sets has moved."""
    if after is None:
        return False
    keys = []
    if operation == "vacuum" and not full:
        keys = ["last_vacuum"]
    elif operation in ("analyze", "vacuum_analyze") or full:
        keys = ["last_analyze"]
    return all(after.get(k) != before.get(k) for k in keys)


def _duration_ms(module: AnsibleModule, name: str) -> str:
    try:
        return str(int(round(to_seconds(module.params[name]) * 1000)))
    except ValueError as err:
        module.fail_json(msg=f"{name}: {err}")
        raise


def _max_age(module: AnsibleModule, name: str) -> float | None:
    value = module.params[name]
    if value in (None, ""):
        return None
    try:
        return to_seconds(value)
    except ValueError as err:
        module.fail_json(msg=f"{name}: {err}")
        raise


def main() -> None:
    argument_spec = pg_argument_spec()
    argument_spec.update(
        operation={"type": "str", "default": "vacuum_analyze", "choices": list(OPERATIONS)},
        tables={"type": "list", "elements": "str", "default": []},
        force={"type": "bool", "default": False},
        full={"type": "bool", "default": False},
        allow_full={"type": "bool", "default": False},
        dead_ratio={"type": "float", "default": 0.1},
        min_dead_tuples={"type": "int", "default": 1000},
        mod_ratio={"type": "float", "default": 0.1},
        min_mod_tuples={"type": "int", "default": 1000},
        vacuum_max_age={"type": "str", "default": ""},
        analyze_max_age={"type": "str", "default": ""},
        lock_timeout={"type": "str", "default": "10s"},
        statement_timeout={"type": "str", "default": "0"},
        jobs={"type": "int", "default": 1},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    operation: str = p["operation"]
    database: str = p["login_db"]
    result: dict[str, Any] = {"changed": False, "database": database, "operation": operation}

    problem = check_options(operation, p["tables"], p["full"], p["allow_full"])
    if problem:
        module.fail_json(msg=problem, **result)
    if p["jobs"] < 1:
        module.fail_json(msg="jobs must be 1 or more", **result)
    for name in ("dead_ratio", "mod_ratio"):
        if p[name] < 0:
            module.fail_json(msg=f"{name} cannot be negative", **result)
    try:
        listed = [parse_table_name(t) for t in p["tables"]]
    except ValueError as err:
        module.fail_json(msg=f"tables: {err}", **result)
    thresholds = Thresholds(dead_ratio=p["dead_ratio"], min_dead_tuples=p["min_dead_tuples"], mod_ratio=p["mod_ratio"],
                            min_mod_tuples=p["min_mod_tuples"], vacuum_max_age_s=_max_age(module, "vacuum_max_age"),
                            analyze_max_age_s=_max_age(module, "analyze_max_age"))
    lock_ms = _duration_ms(module, "lock_timeout")
    statement_ms = _duration_ms(module, "statement_timeout")

    conn, err = connect(module, autocommit=True)
    if err:
        module.fail_json(msg=err, **result)
    try:
        run(module, conn, result, operation, listed, thresholds, lock_ms, statement_ms)
    except PsycopgError as exc:
        module.fail_json(msg=redact(f"PostgreSQL error in database {database}: {str(exc).strip()}", p), **result)
    finally:
        conn.close()


def set_timeouts(conn: Any, lock_ms: str, statement_ms: str) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (lock_ms, statement_ms))


def _error_text(exc: BaseException, params: dict[str, Any]) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__, params)


def execute_all(module: AnsibleModule, conn: Any, todo: list[dict[str, Any]], operation: str, full: bool,
                server_version: int, lock_ms: str, statement_ms: str) -> None:
    """Run each entry's statement, recording duration_s and error in the entry.

    With jobs > 1, that many sessions work in parallel (the first is conn, the others are opened here),
    each taking the largest table left, as vacuumdb -j does.
    """
    work: queue.Queue[dict[str, Any]] = queue.Queue()
    for entry in sorted(todo, key=lambda e: -(e["before"].get("size_bytes") or 0)):
        work.put(entry)

    def worker(session: Any) -> None:
        while True:
            try:
                entry = work.get_nowait()
            except queue.Empty:
                return
            stmt = build_statement(operation, entry["schema"], entry["table"], full, server_version)
            start = time.monotonic()
            try:
                session.execute(stmt)
            except PsycopgError as exc:
                entry["error"] = _error_text(exc, module.params)
            entry["duration_s"] = round(time.monotonic() - start, 3)

    jobs = max(1, min(module.params["jobs"], len(todo)))
    extra: list[Any] = []
    for _n in range(jobs - 1):
        session, err = connect(module, autocommit=True)
        if err:
            module.warn(f"jobs: could not open another session, going on with {1 + len(extra)}: {err}")
            break
        set_timeouts(session, lock_ms, statement_ms)
        extra.append(session)
    try:
        threads = [threading.Thread(target=worker, args=(session,), daemon=True) for session in extra]
        for thread in threads:
            thread.start()
        worker(conn)
        for thread in threads:
            thread.join()
    finally:
        for session in extra:
            session.close()


def run(module: AnsibleModule, conn: Any, result: dict[str, Any], operation: str, listed: list[tuple[str, str]],
        thresholds: Thresholds, lock_ms: str, statement_ms: str) -> None:
    p = module.params
    full = bool(p["full"])
    set_timeouts(conn, lock_ms, statement_ms)
    server_version = conn.info.server_version
    result["server_version"] = server_version

    figures = read_figures(conn)
    by_name = {(f["schema"], f["table"]): f for f in figures}
    missing = missing_tables(listed, list(by_name))
    if missing:
        module.fail_json(msg=f"no such table in database {result['database']}: {', '.join(missing)}; nothing was run",
                         missing=missing, **result)
    todo, skipped = plan(figures, operation, thresholds, listed=listed, force=p["force"])
    for entry in todo:
        entry["before"] = by_name[(entry["schema"], entry["table"])]
        entry["statement"] = build_statement(operation, entry["schema"], entry["table"], full, server_version).as_string(conn)
    result.update(tables=todo, left_alone=skipped, examined=len(listed) or len(figures),
                  statements=[e["statement"] for e in todo], failed_tables=[])
    if module.check_mode or not todo:
        result["changed"] = bool(todo)
        module.exit_json(**result)

    execute_all(module, conn, todo, operation, full, server_version, lock_ms, statement_ms)
    failed = [e for e in todo if "error" in e]
    done = [e for e in todo if "error" not in e]
    result["failed_tables"] = [e["name"] for e in failed]
    result["changed"] = bool(done)

    # The figures after: PostgreSQL 15 shows a VACUUM or ANALYZE at once, older servers after the stats
    # collector's next message (about 0.5 s), so poll briefly until every table done shows its run.
    deadline = time.monotonic() + STATS_WAIT_S
    while True:
        after = {(f["schema"], f["table"]): f for f in read_figures(conn)}
        if time.monotonic() >= deadline or all(
                _ran(e["before"], after.get((e["schema"], e["table"])), operation, full) for e in done):
            break
        time.sleep(0.1)
    for entry in todo:
        entry["after"] = after.get((entry["schema"], entry["table"]))
        entry["still_crosses"] = (crossings(entry["after"], operation, thresholds)
                                  if entry["after"] and operation != "reindex" else [])
    if failed:
        module.fail_json(msg=f"{len(failed)} of {len(todo)} statements failed in database {result['database']}: "
                         + "; ".join(f"{e['name']}: {e['error']}" for e in failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
