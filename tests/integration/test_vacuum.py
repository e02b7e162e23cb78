# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/vacuum.yml (runbook.ops.pg_maintenance) against the sandbox PostgreSQL.

Every test works in its own database, vacuum_test, recreated per test: other developers' tests
share the sandbox server, so nothing here touches another database or session. Autovacuum is off
on the test tables so that it cannot race the playbook.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Target
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

PLAYBOOK = "vacuum.yml"
DB = "vacuum_test"
HOSTILE = 'x"; DROP TABLE y; --'
EXTRA = {"vacuum_databases": [DB]}

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


def dead_tuples(target: Target) -> dict[str, int]:
    with _connect(target, DB) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute("SELECT relname, n_dead_tup FROM pg_stat_user_tables ORDER BY relname").fetchall()
    return {name: int(dead) for name, dead in rows}


@pytest.fixture
def vacuum_db(sandbox: Target) -> Iterator[Target]:
    """vacuum_test with dirty_a (25000 dead of 50000), dirty_b (50000 dead, updated) and clean (100 rows)."""
    with _connect(sandbox, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    with _connect(sandbox, DB) as conn:
        _dirty(conn, "dirty_a")
        _dirty(conn, "dirty_b", how="update")
        conn.execute("CREATE TABLE clean (id int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO clean SELECT generate_series(1, 100)")
        conn.execute("VACUUM ANALYZE clean")
    # the session's statistics are flushed when it ends; wait until they show
    _wait_for(sandbox, lambda d: d.get("dirty_a", 0) >= 25000 and d.get("dirty_b", 0) >= 50000)
    yield sandbox
    with _connect(sandbox, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))


def _wait_for(target: Target, ready: Any, timeout: float = 10.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        state = dead_tuples(target)
        if ready(state) or time.monotonic() > deadline:
            assert ready(state), f"statistics never showed the expected dead tuples: {state}"
            return state
        time.sleep(0.2)


def _debug_lines(result: PlaybookResult, task: str) -> list[str]:
    found = [r for r in result.host_results("sandbox-db", task) if r["event"] == "runner_on_ok"]
    assert found, f"no {task!r} in the run (rc={result.rc}):\n{result.stdout[-3000:]}"
    return list(found[-1]["msg"])


def test_four_runs_vacuum_exactly_the_dirty_tables(vacuum_db: Target) -> None:
    runs = run_four_times(PLAYBOOK, vacuum_db.inventory, read_state=lambda: dead_tuples(vacuum_db),
                          extravars={**EXTRA, "vacuum_jobs": 2})
    plan = _debug_lines(runs.check, "Plan | one line per table")
    assert [line.split(": ")[1] for line in plan] == ["public.dirty_a", "public.dirty_b"], plan
    assert 'VACUUM (ANALYZE) "public"."dirty_a"' in plan[0]
    report = _debug_lines(runs.check, "Report | what ran")
    assert report[-1].startswith("vacuum: 2 table(s) would be processed"), report
    assert runs.before["dirty_a"] >= 25000 and runs.before["dirty_b"] >= 50000
    assert runs.after == {"clean": 0, "dirty_a": 0, "dirty_b": 0}
    done = _debug_lines(runs.real, "Report | what ran")
    assert len(done) == 3 and "dead tuples 25000 -> 0" in done[0], done
    assert _debug_lines(runs.real_again, "Plan | one line per table") == [f"{DB}: nothing to do (3 tables examined)"]


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
    report = _debug_lines(result, "Report | what ran")
    assert report[0].startswith(f'{DB}: public."x""; DROP TABLE y; --": VACUUM (ANALYZE) "public"."x""; DROP TABLE y; --"')


def test_vacuum_full_without_allow_full_is_refused(vacuum_db: Target) -> None:
    before = dead_tuples(vacuum_db)
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_full": True})
    assert result.rc != 0
    assert result.failed_hosts() == {"sandbox-db"}
    failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
    assert len(failed) == 1 and "vacuum_allow_full=true" in failed[0]["msg"], failed
    assert "ACCESS EXCLUSIVE" in failed[0]["msg"]
    assert not result.host_results("sandbox-db", "Plan |"), "a connection was made before the guard"
    assert dead_tuples(vacuum_db) == before


def test_vacuum_full_with_allow_full(vacuum_db: Target) -> None:
    extra = {**EXTRA, "vacuum_full": True, "vacuum_allow_full": True, "vacuum_tables": ["public.dirty_a"]}
    result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra)
    assert result.rc == 0, result.stdout[-3000:]
    assert 'VACUUM (FULL, ANALYZE) "public"."dirty_a"' in _debug_lines(result, "Report | what ran")[0]
    assert dead_tuples(vacuum_db)["dirty_a"] == 0
    again = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra)
    assert again.rc == 0 and again.changed() == 0, again.stdout[-3000:]


def test_missing_listed_table_is_one_clear_error(vacuum_db: Target) -> None:
    before = dead_tuples(vacuum_db)
    extra = {**EXTRA, "vacuum_tables": ["public.dirty_a", "public.no_such_table"]}
    for check in (True, False):
        result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars=extra, check=check)
        assert result.rc != 0
        failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
        assert len(failed) == 1, failed
        assert failed[0]["msg"] == f"no such table in database {DB}: public.no_such_table; nothing was run"
        assert not result.host_results("sandbox-db", "Act |")
    assert dead_tuples(vacuum_db) == before


def test_lock_timeout_fails_that_table_and_does_the_others(vacuum_db: Target) -> None:
    with _connect(vacuum_db, DB) as locker:
        locker.autocommit = False
        locker.execute("LOCK TABLE public.dirty_a IN ACCESS EXCLUSIVE MODE")  # our own table, in our own database
        result = run_playbook(PLAYBOOK, vacuum_db.inventory, extravars={**EXTRA, "vacuum_lock_timeout": "1s"})
        locker.rollback()
    assert result.rc != 0
    failed = [r for r in result.host_results("sandbox-db") if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["msg"].startswith(f"1 of 2 statements failed in database {DB}: public.dirty_a: "), failed[0]["msg"]
    assert "lock timeout" in failed[0]["msg"]
    state = dead_tuples(vacuum_db)
    assert state["dirty_a"] >= 25000 and state["dirty_b"] == 0
