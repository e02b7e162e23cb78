# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/vacuum.yml (runbook.ops.pg_maintenance) against the sandbox PostgreSQL.

Every test works in a database of its own, maint_test_vacuum or maint_test_bloat, recreated per
test: other developers' tests share the sandbox server, so nothing here touches another database
or session. Autovacuum is off on the test tables so that it cannot race the playbook.
"""
from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Target
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

PLAYBOOK = "vacuum.yml"
DB = "maint_test_vacuum"
BLOAT_DB = "maint_test_bloat"
HOSTILE = 'x"; DROP TABLE y; --'
EXTRA = {"vacuum_databases": [DB]}
BLOAT_EXTRA = {"vacuum_databases": [BLOAT_DB]}
MIB = 1024 * 1024
# the one task that prints the module's lines (the plan in --check, what ran otherwise) and fails on a problem
REPORT = "Report | the plan and what ran"

pytestmark = pytest.mark.sandbox


def _connect(target: Target, dbname: str) -> psycopg.Connection:
    env = target.env
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True,
                           application_name="runbook.ops-tests")


def _dirty(conn: psycopg.Connection, table: str, rows: int = 50000, how: str = "delete") -> None:
    """A table with autovacuum off and rows/2 (delete) or rows (update) dead tuples."""
    ident = sql.Identifier("public", table)
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = false)").format(ident))
    conn.execute(sql.SQL("INSERT INTO {} SELECT g, 'v' FROM generate_series(1, %s) g").format(ident), (rows,))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(ident))  # start from clean figures
    if how == "delete":
        conn.execute(sql.SQL("DELETE FROM {} WHERE id % 2 = 0").format(ident))
    else:
        conn.execute(sql.SQL("UPDATE {} SET v = 'w'").format(ident))


def dead_tuples(target: Target, dbname: str = DB) -> dict[str, int]:
    with _connect(target, dbname) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute("SELECT relname, n_dead_tup FROM pg_stat_user_tables ORDER BY relname").fetchall()
    return {name: int(dead) for name, dead in rows}


def _recreate(target: Target, dbname: str) -> None:
    with _connect(target, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _drop(target: Target, dbname: str) -> None:
    with _connect(target, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


@pytest.fixture
def vacuum_db(sandbox: Target) -> Iterator[Target]:
    """maint_test_vacuum with dirty_a (25000 dead of 50000), dirty_b (50000 dead, updated) and clean (100 rows)."""
    _recreate(sandbox, DB)
    with _connect(sandbox, DB) as conn:
        _dirty(conn, "dirty_a")
        _dirty(conn, "dirty_b", how="update")
        conn.execute("CREATE TABLE clean (id int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO clean SELECT generate_series(1, 100)")
        conn.execute("VACUUM ANALYZE clean")
    # the session's statistics are flushed when it ends; wait until they show
    _wait_for(sandbox, lambda d: d.get("dirty_a", 0) >= 25000 and d.get("dirty_b", 0) >= 50000)
    yield sandbox
    _drop(sandbox, DB)


def _wait_for(target: Target, ready: Any, timeout: float = 10.0, dbname: str = DB) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        state = dead_tuples(target, dbname)
        if ready(state) or time.monotonic() > deadline:
            assert ready(state), f"statistics never showed the expected dead tuples: {state}"
            return state
        time.sleep(0.2)


def _report(result: PlaybookResult) -> list[str]:
    """The report's lines: the module's, prefixed with the database, then the count."""
    found = [r for r in result.host_results("sandbox-db", REPORT) if r["event"] == "runner_on_ok"]
    assert found, f"no {REPORT!r} in the run (rc={result.rc}):\n{result.stdout[-3000:]}"
    return list(found[-1]["msg"])


def _statements(lines: list[str]) -> list[str]:
    """The lines of the statements (why -> what), without left-alone, bloat, timing and count lines."""
    return [line for line in lines if " -> " in line and not line.startswith("vacuum: ")]


def _failure(result: PlaybookResult) -> str:
    failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, failed
    return failed[0]["msg"]


def test_four_runs_vacuum_exactly_the_dirty_tables(vacuum_db: Target) -> None:
    runs = run_four_times(PLAYBOOK, vacuum_db.inventory, read_state=lambda: dead_tuples(vacuum_db),
                          extravars={**EXTRA, "vacuum_jobs": 2})
    plan = _report(runs.check)
    assert [line.split(": ")[1] for line in plan[:-1]] == ["public.dirty_a", "public.dirty_b"], plan
    assert plan[0].startswith(f"{DB}: public.dirty_a: 25000 dead tuples ("), plan
    assert plan[0].endswith(' -> VACUUM (ANALYZE) "public"."dirty_a"'), plan  # would run: no duration
    assert plan[-1].startswith("vacuum: 2 table(s) would be processed"), plan
    assert runs.before["dirty_a"] >= 25000 and runs.before["dirty_b"] >= 50000
    assert runs.after == {"clean": 0, "dirty_a": 0, "dirty_b": 0}
    done = _report(runs.real)
    assert len(done) == 4, done
    assert re.search(r' -> VACUUM \(ANALYZE\) "public"."dirty_a" in [\d.]+ s; dead tuples 25000 -> 0, changed rows ', done[0])
    # the sessions that ran statements: the second connects in its own thread, and on a busy machine the first may
    # have vacuumed both small tables before it is in
    assert re.match(rf"{DB}: timings: connect [\d.]+ s, read [\d.]+ s, statements [\d.]+ s in [12] session\(s\), "
                    r"re-read [\d.]+ s$", done[2]), done
    assert done[3] == "vacuum: 2 table(s) processed in 1 database(s) with vacuum_analyze", done
    assert _report(runs.real_again) == [f"{DB}: nothing to do (3 tables examined)",
                                        "vacuum: 0 table(s) processed in 1 database(s) with vacuum_analyze"]


def test_plan_tag_plans_for_real_and_runs_nothing(vacuum_db: Target) -> None:
    """--tags vacuum_plan outside --check: the module runs in check mode, so the plan is shown and nothing runs."""
    before = dead_tuples(vacuum_db)
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=EXTRA, tags="vacuum_plan")
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed("sandbox-db") == 0
    plan = _report(result)
    assert [line.split(": ")[1] for line in plan[:-1]] == ["public.dirty_a", "public.dirty_b"], plan
    assert plan[-1].startswith("vacuum: 2 table(s) would be processed"), plan
    assert dead_tuples(vacuum_db) == before


def test_hostile_table_name_is_vacuumed_as_that_table(vacuum_db: Target) -> None:
    with _connect(vacuum_db, DB) as conn:
        conn.execute("CREATE TABLE y (id int)")
        conn.execute("INSERT INTO y VALUES (1)")
        _dirty(conn, HOSTILE, rows=20000)
    _wait_for(vacuum_db, lambda d: d.get(HOSTILE, 0) >= 10000)
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_tables": [f"public.{HOSTILE}"]})
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed("sandbox-db") == 1
    state = dead_tuples(vacuum_db)
    assert state[HOSTILE] == 0
    assert state["dirty_a"] >= 25000, "a table that was not listed was vacuumed"
    with _connect(vacuum_db, DB) as conn:
        assert conn.execute("SELECT count(*) FROM y").fetchone() == (1,)
    report = _report(result)
    assert report[0].startswith(f'{DB}: public."x""; DROP TABLE y; --": 10000 dead tuples '), report
    assert ' -> VACUUM (ANALYZE) "public"."x""; DROP TABLE y; --" in ' in report[0], report


def test_vacuum_full_without_allow_full_is_refused(vacuum_db: Target) -> None:
    before = dead_tuples(vacuum_db)
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_full": True})
    assert result.rc != 0
    assert result.failed_hosts() == {"sandbox-db"}
    failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
    assert len(failed) == 1 and "vacuum_allow_full=true" in failed[0]["msg"], failed
    assert "ACCESS EXCLUSIVE" in failed[0]["msg"]
    _assert_nothing_ran(result)
    assert dead_tuples(vacuum_db) == before


def _assert_nothing_ran(result: PlaybookResult) -> None:
    # the guards are the module task's condition: skipped for every database, so no connection was made
    events = {ev["event"] for ev in result.events if ev.get("event", "").startswith("runner_")
              and "Plan and act |" in (ev.get("event_data", {}).get("task") or "")}
    assert events == {"runner_on_start", "runner_item_on_skipped", "runner_on_skipped"}, events


def test_every_bad_option_and_the_missing_login_are_named_at_once(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"postgres": {"hosts": {"sandbox-db": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "runbook_pg_host": "127.0.0.1", "runbook_pg_port": 1, "runbook_pg_database": DB}}}}))
    extra = {**EXTRA, "vacuum_dead_ratio": 2, "vacuum_lock_timeout": "soon", "vacuum_jobs": 0,
             "vacuum_operation": "analyze", "vacuum_full": True, "vacuum_allow_full": True}
    result = run_playbook(PLAYBOOK, str(inventory), extravars=extra)
    assert result.rc != 0
    failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["msg"] == ("vacuum_full applies to vacuum and vacuum_analyze only, not to analyze; "
                                "vacuum_dead_ratio=2 is not from 0 to 1; vacuum_jobs must be 1 or more; "
                                "vacuum_lock_timeout is not a duration (10s, 5m, 2h, 7d or seconds); "
                                "sandbox-db needs runbook_pg_user in the inventory. Nothing was run."), failed[0]["msg"]
    _assert_nothing_ran(result)


def test_vacuum_full_with_allow_full(vacuum_db: Target) -> None:
    extra = {**EXTRA, "vacuum_full": True, "vacuum_allow_full": True, "vacuum_tables": ["public.dirty_a"]}
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra)
    assert result.rc == 0, result.stdout[-3000:]
    assert ' -> VACUUM (FULL, ANALYZE) "public"."dirty_a" in ' in _report(result)[0]
    assert dead_tuples(vacuum_db)["dirty_a"] == 0
    again = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra)
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]


def test_missing_listed_table_is_one_clear_error(vacuum_db: Target) -> None:
    before = dead_tuples(vacuum_db)
    extra = {**EXTRA, "vacuum_tables": ["public.dirty_a", "public.no_such_table"]}
    for check in (True, False):
        result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra, check=check)
        assert result.rc != 0
        assert _failure(result) == f"no such table in database {DB}: public.no_such_table; nothing was run"
        assert [r["event"] for r in result.host_results("sandbox-db", REPORT)] == ["runner_on_failed"]
    assert dead_tuples(vacuum_db) == before


def test_lock_timeout_fails_that_table_and_does_the_others(vacuum_db: Target) -> None:
    with _connect(vacuum_db, DB) as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE public.dirty_a IN ACCESS EXCLUSIVE MODE")  # our own table, in our own database
        result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_lock_timeout": "1s"})
        locker.rollback()
    assert result.rc != 0
    msg = _failure(result)
    assert msg.startswith(f"1 of 2 statements failed in database {DB}: public.dirty_a: "), msg
    assert "lock timeout" in msg
    # what did run is in the failure too
    assert re.search(r'public.dirty_b: .* -> VACUUM \(ANALYZE\) "public"."dirty_b" in [\d.]+ s; dead tuples 50000 -> 0', msg)
    assert ' -> VACUUM (ANALYZE) "public"."dirty_a" FAILED: ' in msg
    state = dead_tuples(vacuum_db)
    assert state["dirty_a"] >= 25000 and state["dirty_b"] == 0


def test_a_table_still_crossing_after_the_run_fails_it_and_says_why(vacuum_db: Target) -> None:
    """A snapshot older than the dead tuples keeps VACUUM from removing them: the verification names the table."""
    with _connect(vacuum_db, DB) as holder, _connect(vacuum_db, DB) as writer:
        holder.autocommit = False
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT 1")  # its snapshot holds back the xmin horizon of our own database
        _dirty(writer, "held", rows=20000, how="update")
        _wait_for(vacuum_db, lambda d: d.get("held", 0) >= 20000)
        result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_tables": ["public.held"]})
        holder.rollback()
    assert result.rc != 0
    msg = _failure(result)
    assert msg.startswith(f"Still crossing after vacuum_analyze: {DB}: public.held: 20000 dead tuples"), msg
    assert "xmin horizon" in msg
    assert ' -> VACUUM (ANALYZE) "public"."held" in ' in msg  # it ran: the figures after are what failed
    assert [r["event"] for r in result.host_results("sandbox-db", REPORT)] == ["runner_on_failed"]


@pytest.fixture
def bloat_db(sandbox: Target) -> Iterator[Target]:
    """maint_test_bloat, where estimated bloat is real.

    public.bloated: 1,000,000 rows, 90% deleted, then VACUUM ANALYZE. Its heap, its primary key and the
    index named HOSTILE (built on the full table) keep their pages: about 90% bloated, 20 MiB each. Its
    bloated_v_idx, built afterwards on what is left, is packed. public.tidy: 600,000 rows whose packed
    primary key (13 MiB) is above the 10 MiB floor, so only the ratio leaves it alone. public.y is what
    the hostile index name must not drop. Nothing has dead tuples or changed rows left.
    """
    _recreate(sandbox, BLOAT_DB)
    with _connect(sandbox, BLOAT_DB) as conn:
        conn.execute("CREATE TABLE bloated (id int PRIMARY KEY, v int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO bloated SELECT g, g FROM generate_series(1, 1000000) g")
        conn.execute(sql.SQL("CREATE INDEX {} ON bloated (v)").format(sql.Identifier(HOSTILE)))
        conn.execute("DELETE FROM bloated WHERE id % 10 <> 0")
        conn.execute("CREATE TABLE tidy (id int PRIMARY KEY) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO tidy SELECT generate_series(1, 600000)")
        conn.execute("CREATE TABLE y (id int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO y VALUES (1)")
    # the DELETE's counts reach the statistics when its session ends; VACUUM ANALYZE then clears them
    _wait_for(sandbox, lambda d: d.get("bloated", 0) >= 900000, dbname=BLOAT_DB)
    with _connect(sandbox, BLOAT_DB) as conn:
        for table in ("bloated", "tidy", "y"):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
        conn.execute("CREATE INDEX bloated_v_idx ON bloated (v)")
    _wait_for(sandbox, lambda d: d.get("bloated", 1) == 0, dbname=BLOAT_DB)
    yield sandbox
    _drop(sandbox, BLOAT_DB)


def relations(target: Target, relkind: str) -> dict[str, tuple[int, int]]:
    """(oid, size in bytes) of each table (relkind r) or index (i) of public: REINDEX CONCURRENTLY changes the oid."""
    with _connect(target, BLOAT_DB) as conn:
        rows = conn.execute("SELECT c.relname, c.oid::bigint, pg_relation_size(c.oid) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'public' AND c.relkind = %s ORDER BY 1", (relkind,)).fetchall()
    return {name: (int(oid), int(size)) for name, oid, size in rows}


def _bloat_percent(line: str, index: str) -> float:
    found = re.search(re.escape(f"index {index}: estimated bloat ") + r"(\d+\.\d)% \(", line)
    assert found, line
    return float(found.group(1))


def test_reindex_rebuilds_exactly_the_bloated_indexes(bloat_db: Target) -> None:
    runs = run_four_times(PLAYBOOK, bloat_db.inventory, read_state=lambda: relations(bloat_db, "i"),
                          extravars={**BLOAT_EXTRA, "vacuum_operation": "reindex"})
    plan = _statements(_report(runs.check))
    assert [line.split(": ")[1] for line in plan] == ["public.bloated", "public.bloated"], plan
    assert _bloat_percent(plan[0], "public.bloated_pkey") >= 85.0, plan
    assert "MiB; thresholds 50.0% and 10.0 MiB) -> " in plan[0], plan
    assert plan[0].endswith(' -> REINDEX INDEX CONCURRENTLY "public"."bloated_pkey"'), plan
    assert _bloat_percent(plan[1], 'public."x""; DROP TABLE y; --"') >= 85.0, plan
    assert plan[1].endswith(' -> REINDEX INDEX CONCURRENTLY "public"."x""; DROP TABLE y; --"'), plan
    report = _report(runs.check)
    assert report[-1].startswith("vacuum: 2 table(s) would be processed"), report
    # the heap's own bloat is not what a reindex gives back: reported, left as it is
    assert any(line.startswith(f"{BLOAT_DB}: public.bloated table: estimated bloat ")
               and line.endswith(", left as it is by reindex") for line in report), report

    rebuilt = {name for name, was in runs.before.items() if runs.after.get(name) != was}
    assert rebuilt == {"bloated_pkey", HOSTILE}, "an index that is not bloated was rebuilt, or a bloated one was not"
    for name in rebuilt:
        assert runs.after[name][1] * 5 < runs.before[name][1], (name, runs.before[name], runs.after[name])
    assert runs.before["tidy_pkey"][1] > 10 * MIB  # above the byte floor: the ratio kept it out
    again = _report(runs.real_again)
    assert f"{BLOAT_DB}: nothing to do (3 tables examined)" in again and not _statements(again), again
    with _connect(bloat_db, BLOAT_DB) as conn:
        assert conn.execute("SELECT count(*) FROM y").fetchone() == (1,)


def test_vacuum_full_takes_the_bloated_table(bloat_db: Target) -> None:
    extra = {**BLOAT_EXTRA, "vacuum_operation": "vacuum", "vacuum_full": True, "vacuum_allow_full": True}
    runs = run_four_times(PLAYBOOK, bloat_db.inventory, read_state=lambda: relations(bloat_db, "r"), extravars=extra)
    plan = _statements(_report(runs.check))
    assert len(plan) == 1 and plan[0].startswith(f"{BLOAT_DB}: public.bloated: table estimated bloat "), plan
    assert plan[0].endswith(' -> VACUUM (FULL, ANALYZE) "public"."bloated"'), plan
    assert runs.after["bloated"][1] * 5 < runs.before["bloated"][1]
    assert runs.after["tidy"] == runs.before["tidy"] and runs.after["y"] == runs.before["y"]


MODULE_PLAY = """
- name: Drive runbook.ops.pg_maintenance directly, in check mode
  hosts: postgres
  gather_facts: false
  module_defaults:
    group/runbook.ops.pg:
      login_host: "{{ runbook_pg_host }}"
      login_port: "{{ runbook_pg_port | int }}"
      login_user: "{{ runbook_pg_user }}"
      login_password: "{{ runbook_pg_password }}"
      login_db: %(db)s
      ssl_mode: "{{ runbook_pg_sslmode }}"
  tasks:
    - name: Bloat | defaults
      runbook.ops.pg_maintenance:
        operation: reindex
      check_mode: true
    - name: Bloat | a byte floor above the waste
      runbook.ops.pg_maintenance:
        operation: reindex
        min_bloat_bytes: 104857600
      check_mode: true
    - name: Bloat | a ratio above the estimate
      runbook.ops.pg_maintenance:
        operation: reindex
        bloat_ratio: 0.99
      check_mode: true
    - name: Bloat | a listed table whose index is packed
      runbook.ops.pg_maintenance:
        operation: reindex
        tables: [public.tidy]
      check_mode: true
    - name: Bloat | the same table forced
      runbook.ops.pg_maintenance:
        operation: reindex
        tables: [public.tidy]
        force: true
      check_mode: true
    - name: Bloat | a plain vacuum
      runbook.ops.pg_maintenance:
        operation: vacuum
      check_mode: true
"""


def test_module_reports_the_estimates_and_takes_the_bloat_options(bloat_db: Target, tmp_path: Path) -> None:
    playbook = tmp_path / "pg_maintenance_bloat.yml"
    playbook.write_text(MODULE_PLAY % {"db": BLOAT_DB})
    before = (relations(bloat_db, "r"), relations(bloat_db, "i"))
    result = run_playbook(str(playbook), bloat_db.inventory)
    assert result.rc == 0, result.stdout[-3000:]
    assert (relations(bloat_db, "r"), relations(bloat_db, "i")) == before, "check mode changed something"

    def answer(task: str) -> dict[str, Any]:
        found = [r for r in result.host_results("sandbox-db", f"Bloat | {task}") if r["event"] == "runner_on_ok"]
        assert len(found) == 1, task
        return found[0]

    default = answer("defaults")
    assert default["changed"] is True
    assert default["statements"] == ['REINDEX INDEX CONCURRENTLY "public"."bloated_pkey"',
                                     'REINDEX INDEX CONCURRENTLY "public"."x""; DROP TABLE y; --"']
    entry = default["tables"][0]
    assert (entry["name"], entry["index"]) == ("public.bloated", "bloated_pkey")
    assert entry["bloat_before"]["bloat_ratio"] >= 0.85 and entry["bloat_before"]["bloat_bytes"] >= 15 * MIB, entry
    indexes = {index["name"]: index for index in entry["before"]["indexes"]}
    assert set(indexes) == {"bloated_pkey", "bloated_v_idx", HOSTILE}
    assert indexes["bloated_v_idx"]["bloat_ratio"] < 0.05 and indexes["bloated_v_idx"]["bloat_note"] is None
    assert entry["before"]["bloat_ratio"] >= 0.85  # the heap's own estimate
    assert sorted((b["table"], b["index"] or "") for b in default["bloated"]) == [
        ("bloated", ""), ("bloated", "bloated_pkey"), ("bloated", HOSTILE)]

    for task in ("a byte floor above the waste", "a ratio above the estimate"):
        quiet = answer(task)
        assert quiet["changed"] is False and quiet["tables"] == [] and quiet["bloated"] == [], task

    listed = answer("a listed table whose index is packed")
    assert listed["changed"] is False and listed["tables"] == []
    assert [t["name"] for t in listed["left_alone"]] == ["public.tidy"]

    forced = answer("the same table forced")
    assert forced["statements"] == ['REINDEX TABLE CONCURRENTLY "public"."tidy"']
    assert forced["tables"][0]["reasons"] == ["listed (force)"]
    tidy_pkey = forced["tables"][0]["before"]["indexes"][0]
    assert tidy_pkey["name"] == "tidy_pkey" and tidy_pkey["size_bytes"] > 10 * MIB and tidy_pkey["bloat_ratio"] < 0.05

    vacuum = answer("a plain vacuum")
    assert vacuum["changed"] is False and vacuum["tables"] == []  # bloat is never a reason for a plain VACUUM
    assert ("bloated", None) in [(b["table"], b["index"]) for b in vacuum["bloated"]]  # it is reported
