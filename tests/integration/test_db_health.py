# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/db_health.yml against real PostgreSQL servers.

The sandbox and db1 are shared with other tests: against them the run is read-only and only the shape of the
report is checked. Full connections, locks and a stopped server happen on a throwaway cluster of our own.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

import pg_throwaway
from tests.lib.runner import PlaybookResult, run_playbook

PLAYBOOK = "db_health.yml"
REPORT_TASK = "Summary | database health report, one line per host"
HOST_TASK = "Report | compose this host's verdict and line"
HOST = "throwaway-db"


def _host_report(result: PlaybookResult, host: str) -> dict[str, Any]:
    return result.host_fact(host, HOST_TASK, "db_health_report")


@pytest.fixture(scope="module")
def cluster():
    with pg_throwaway.start(max_connections=10) as pg:
        with pg.connect(autocommit=True) as conn:
            conn.execute("CREATE ROLE filler LOGIN")
            conn.execute("CREATE TABLE locked (id int PRIMARY KEY)")
            conn.execute("INSERT INTO locked VALUES (1)")
            conn.execute("GRANT ALL ON locked TO filler")
        yield pg


@pytest.fixture(scope="module")
def inventory(cluster, tmp_path_factory):
    return cluster.inventory(tmp_path_factory.mktemp("db-health-inv"))


# --- sandbox and fleet: read-only, shared --------------------------------------------------


@pytest.mark.sandbox
def test_sandbox_check_mode_reports_and_writes_json(sandbox, tmp_path):
    result = run_playbook(PLAYBOOK, sandbox.inventory, check=True,
                          extravars={"db_health_report_dir": str(tmp_path), "db_health_fail_on": "never"})
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed() == 0
    lines = result.run_once_msg(REPORT_TASK)
    assert lines[-1].startswith("db_health: 1 host: "), lines
    report = _host_report(result, "sandbox-db")
    assert report["result"]["is_available"] is True
    assert report["result"]["server_version_num"] >= 150000
    assert report["verdict"] in ("ok", "warning", "critical")
    assert lines[0].startswith("sandbox-db: ")
    if report["verdict"] == "ok":
        assert lines[0].startswith("sandbox-db: ok (PostgreSQL 15"), lines[0]
    files = list(tmp_path.glob("db_health_*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["check_mode"] is True and data["hosts"][0]["host"] == "sandbox-db"
    conn = data["hosts"][0]["result"]["connections"]
    assert conn["available"] == conn["max_connections"] - conn["superuser_reserved"] and conn["total"] >= 1
    password = sandbox.env["RUNBOOK_PG_ADMIN_PASSWORD"]
    assert password not in result.stdout and password not in files[0].read_text()


@pytest.mark.fleet
def test_fleet_db1_is_available(fleet):
    result = run_playbook(PLAYBOOK, fleet.inventory, extravars={"db_health_fail_on": "never"})
    assert result.rc == 0, result.stdout[-3000:]
    report = _host_report(result, "db1")
    assert report["result"]["is_available"] is True, report
    assert report["result"]["server_version"].startswith("15.")
    assert report["result"]["in_recovery"] is False
    assert result.run_once_msg(REPORT_TASK)[0].startswith("db1: ")


# --- throwaway cluster: locks, full connections, stopped server -----------------------------


@pytest.mark.sandbox
def test_blocked_and_idle_in_transaction_are_warnings(cluster, inventory):
    holder = cluster.connect(user="filler")
    holder.execute("UPDATE locked SET id = id WHERE id = 1")  # opens a transaction holding the row lock
    waiter = cluster.connect(user="filler", autocommit=True)
    blocked = threading.Thread(target=lambda: waiter.execute("UPDATE locked SET id = id WHERE id = 1"), daemon=True)
    blocked.start()
    try:
        extravars = {"db_health_idle_in_transaction_warning": "1s", "db_health_active_query_warning": "1h",
                     "db_health_active_query_critical": "2h"}
        time.sleep(1.2)  # the idle transaction gets older than 1s
        result = run_playbook(PLAYBOOK, inventory, extravars=extravars)
        assert result.rc == 0, result.stdout[-3000:]  # warnings do not fail by default
        report = _host_report(result, HOST)
        assert report["verdict"] == "warning", report
        reasons = " | ".join(report["reasons"])
        assert f"1 session(s) blocked by pid {holder.info.backend_pid} (warning at 1)" in reasons
        assert "1 session(s) idle in transaction" in reasons
        blocking = report["result"]["blocking"]
        assert blocking["blocked"][0]["blocked_by"] == [holder.info.backend_pid]
        assert blocking["blocking"][0]["state"] == "idle in transaction"

        strict = run_playbook(PLAYBOOK, inventory, extravars={**extravars, "db_health_fail_on": "warning"})
        assert strict.rc != 0 and strict.failed_hosts() == {HOST}
    finally:
        holder.rollback()
        blocked.join(timeout=10)
        cluster.close_connections()


@pytest.mark.sandbox
def test_full_connections_are_critical_and_fail_the_run(cluster, inventory):
    # max_connections 10 - 3 reserved = 7 for ordinary roles: take them all. The check logs in as a superuser
    # into a reserved slot, so it is 8 of 7.
    for _ in range(7):
        cluster.connect(user="filler")
    try:
        result = run_playbook(PLAYBOOK, inventory)
        assert result.rc != 0 and result.failed_hosts() == {HOST}, result.stdout[-3000:]
        report = _host_report(result, HOST)
        assert report["verdict"] == "critical"
        assert report["reasons"][0] == ("connections 8/7 (114.3% of max_connections 10 minus 3 reserved) "
                                        "(critical at 90%)"), report["reasons"]
        assert report["line"].startswith(f"{HOST}: CRITICAL connections 8/7 ")
        assert report["result"]["connections"]["by_user"] == {"filler": 7, "postgres": 1}
    finally:
        cluster.close_connections()


@pytest.mark.sandbox
def test_stopped_server_is_unavailable_not_a_traceback(cluster, inventory):
    cluster.stop()
    result = run_playbook(PLAYBOOK, inventory)
    assert result.rc != 0 and result.failed_hosts() == {HOST}
    report = _host_report(result, HOST)
    assert report["verdict"] == "critical"
    assert report["result"]["is_available"] is False
    assert report["reasons"][0].startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{cluster.port} as postgres")
    assert "Traceback" not in result.stdout
    assert report["line"].startswith(f"{HOST}: CRITICAL cannot connect to PostgreSQL")
