# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/slow_queries.yml against the sandbox PostgreSQL, in a scratch database of our own (health_test).

The sandbox's pg_stat_statements is shared with other tests: it is never reset there (only in check mode); the
real reset runs on a throwaway cluster.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pg_throwaway
from tests.lib.runner import run_four_times, run_playbook

PLAYBOOK = "slow_queries.yml"
SCRATCH_DB = "health_test"
STATS_TASK = "Stats | read the top statements of pg_stat_statements"
# Three statements pg_stat_statements keeps apart (different shapes), slowest first.
STATEMENTS = [
    ("SELECT pg_sleep(0.30), 1, 2, 3", 1),
    ("SELECT pg_sleep(0.15), 1, 2", 2),
    ("SELECT pg_sleep(0.05), 1", 3),
]
INDEX = {"name": "idx_health_orders_customer", "table": "orders", "columns": ["customer_id", "created_at"],
         "schema": "health"}


def _admin(sandbox, dbname: str) -> Any:
    env = sandbox.env
    return psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True)


@pytest.fixture(scope="module")
def scratch(sandbox):
    """A fresh health_test database with the table health.orders, and the statements run in it."""
    with _admin(sandbox, "postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {SCRATCH_DB}")
    with _admin(sandbox, SCRATCH_DB) as conn:
        conn.execute("CREATE SCHEMA health")
        conn.execute("CREATE TABLE health.orders (id serial PRIMARY KEY, customer_id int, created_at timestamptz)")
        conn.execute("INSERT INTO health.orders (customer_id, created_at) "
                     "SELECT g % 100, now() - g * interval '1 minute' FROM generate_series(1, 1000) g")
        for text, times in STATEMENTS:
            for _ in range(times):
                conn.execute(text)
    yield SCRATCH_DB
    with _admin(sandbox, "postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DB} WITH (FORCE)")


def _stats(result, host: str = "sandbox-db") -> dict[str, Any]:
    """The pg_query_stats result, from the debug line and the JSON report (the module task is no_log)."""
    found = result.host_results(host, "Stats | say what was found")
    assert found, result.stdout[-3000:]
    return found[-1]


@pytest.mark.sandbox
def test_report_lists_the_statements_ordered_by_mean_time(sandbox, scratch, tmp_path):
    result = run_playbook(PLAYBOOK, sandbox.inventory, extravars={
        "slow_queries_report_dir": str(tmp_path), "slow_queries_database": scratch, "slow_queries_limit": 20})
    assert result.rc == 0 and result.changed() == 0, result.stdout[-3000:]
    report = json.loads((tmp_path / "slow_queries_sandbox-db.json").read_text())
    assert report["available"] is True and report["order_by"] == "mean_exec_time"
    statements = report["statements"]
    assert statements and all(s["database"] == scratch for s in statements)
    means = [s["mean_ms"] for s in statements]
    assert means == sorted(means, reverse=True)
    ours = [s for s in statements if "pg_sleep" in s["query"]]
    assert [s["calls"] for s in ours] == [times for _text, times in STATEMENTS], ours
    assert ours[0]["mean_ms"] >= 300 and ours[0]["query"].startswith("SELECT pg_sleep($1)")
    assert {"calls", "mean_ms", "total_ms", "max_ms", "rows", "query", "database", "user"} <= set(ours[0])
    markdown = (tmp_path / "slow_queries_sandbox-db.md").read_text()
    assert "| 1 | " in markdown and "SELECT pg_sleep($1), $2, $3, $4" in markdown
    assert sandbox.env["RUNBOOK_PG_ADMIN_PASSWORD"] not in result.stdout + markdown

    by_calls = run_playbook(PLAYBOOK, sandbox.inventory, check=True, extravars={
        "slow_queries_report_dir": str(tmp_path), "slow_queries_database": scratch, "slow_queries_order_by": "calls",
        "slow_queries_reset": True})
    assert by_calls.rc == 0 and by_calls.changed() > 0, by_calls.stdout[-3000:]  # the reset it would do
    report = json.loads((tmp_path / "slow_queries_sandbox-db.json").read_text())
    calls = [s["calls"] for s in report["statements"]]
    assert calls == sorted(calls, reverse=True)
    assert report["would_reset"] is True and report["reset"] is False
    with _admin(sandbox, "app") as conn:  # check mode reset nothing
        n = conn.execute("SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                         "WHERE d.datname = %s AND s.query LIKE 'SELECT pg_sleep%%'", [scratch]).fetchone()[0]
    assert n == 3


@pytest.mark.sandbox
def test_index_four_steps_and_missing_extension(sandbox, scratch, tmp_path):
    def read_state() -> list[tuple[str, str]]:
        with _admin(sandbox, scratch) as conn:
            return conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'health' "
                                "AND tablename = 'orders' ORDER BY indexname").fetchall()

    # runbook_pg_database = the scratch database, which has no pg_stat_statements extension: the report says so
    # and the run goes on to the indexes.
    runs = run_four_times(PLAYBOOK, sandbox.inventory, read_state=read_state, extravars={
        "runbook_pg_database": scratch, "slow_queries_report_dir": str(tmp_path), "slow_queries_indexes": [INDEX]})
    assert [name for name, _def in runs.after] == ["idx_health_orders_customer", "orders_pkey"]
    assert "(customer_id, created_at)" in dict(runs.after)["idx_health_orders_customer"]
    assert "would create idx_health_orders_customer" in runs.check.stdout
    assert "created idx_health_orders_customer" in runs.real.stdout
    assert "every index exists" in runs.real_again.stdout

    line = _stats(runs.real)["msg"]
    assert line.startswith(f"sandbox-db: pg_stat_statements is not enabled: the extension pg_stat_statements is "
                           f"not created in database {scratch}"), line
    assert f"CREATE EXTENSION IF NOT EXISTS pg_stat_statements; (in database {scratch}" in line
    report = json.loads((tmp_path / "slow_queries_sandbox-db.json").read_text())
    assert report["available"] is False and report["statements"] == []
    assert "CREATE EXTENSION" in (tmp_path / "slow_queries_sandbox-db.md").read_text()


@pytest.mark.sandbox
def test_reset_on_a_throwaway_cluster(tmp_path):
    pg = pg_throwaway.start(max_connections=20, preload_pg_stat_statements=True)
    try:
        inventory = pg.inventory(tmp_path)
        with pg.connect(autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("SELECT pg_sleep(0.01), 'reset me'")
        extravars = {"slow_queries_report_dir": str(tmp_path / "reports"), "slow_queries_reset": True,
                     "slow_queries_limit": 50}
        result = run_playbook(PLAYBOOK, inventory, extravars=extravars)
        assert result.rc == 0 and result.changed() == 1, result.stdout[-3000:]
        report = json.loads((tmp_path / "reports" / "slow_queries_throwaway-db.json").read_text())
        assert report["reset"] is True and any("pg_sleep" in s["query"] for s in report["statements"])
        with pg.connect(autocommit=True) as conn:
            left = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE query LIKE '%pg_sleep%'").fetchone()[0]
        assert left == 0
    finally:
        pg.destroy()
