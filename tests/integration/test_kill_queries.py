# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/kill_queries.yml against real sessions on the sandbox PostgreSQL.

Other tests share this server, so everything here happens in a database of our
own (kill_test) with roles of our own, and every playbook run is filtered to
that database: nothing outside it is ever matched, let alone ended.
"""
from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.lib.pg_clients import REPORT_TASK, Sessions, plan_pids, report_line, report_pids
from tests.lib.runner import PlaybookResult, run_playbook

pytestmark = pytest.mark.sandbox

PLAYBOOK = "kill_queries.yml"
HOST = "sandbox-db"
DB = "kill_test"
VICTIM = "kill_test_victim"
PROTECTED = "kill_test_protected"
PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"
AGE = 2  # seconds: both the active and the idle-in-transaction age of these tests


@pytest.fixture(scope="module")
def sessions(sandbox) -> Iterator[Sessions]:
    s = Sessions(env=sandbox.env, password=secrets.token_urlsafe(16), db=DB, user=VICTIM,
                 application_name="kill_test", age=AGE)
    with s.scratch(roles=(VICTIM, PROTECTED)):
        yield s


@pytest.fixture(autouse=True)
def _clean(sessions: Sessions) -> Iterator[None]:
    yield
    sessions.end_all()


def _run(sandbox, check: bool = False, **extra: Any) -> PlaybookResult:
    extravars = {"kill_queries_active_max_age": f"{AGE}s", "kill_queries_idle_in_transaction_max_age": AGE,
                 "kill_queries_databases": [DB], "kill_queries_protected_users": ["postgres", PROTECTED], **extra}
    return run_playbook(PLAYBOOK, sandbox.inventory, extravars=extravars, check=check, limit=HOST)


def _planned(result: PlaybookResult) -> list[int]:
    return plan_pids(result, HOST)


def _report(result: PlaybookResult) -> str:
    return report_line(result, HOST)


def _report_pids(result: PlaybookResult, verb: str) -> list[int]:
    return report_pids(result, HOST, verb)


def _pgbench(sessions: Sessions, *args: str, timeout: float = 120) -> subprocess.Popen:
    env = {"PGHOST": sessions.env["PGHOST"], "PGPORT": sessions.env["PGPORT"], "PATH": "/usr/bin:/bin",
           "PGUSER": sessions.env["RUNBOOK_PG_ADMIN_USER"], "PGPASSWORD": sessions.env["RUNBOOK_PG_ADMIN_PASSWORD"]}
    return subprocess.Popen([PGBENCH, *args, DB], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_ends_exactly_the_old_sessions_under_load(sandbox, sessions: Sessions) -> None:
    init = _pgbench(sessions, "-i", "-s", "1", "-q")
    out, err = init.communicate(timeout=120)
    assert init.returncode == 0, err
    with sessions.admin(DB) as conn:
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(
            sql.Identifier(DB), sql.Identifier(VICTIM), sql.Identifier(PROTECTED)))
    # long enough to overlap the check and the real run on a loaded 2-core machine
    bench = _pgbench(sessions, "-c", "2", "-T", "40", "-n")
    try:
        sleeper = sessions.sleeper()
        idle_pid, idle_conn = sessions.idle_in_transaction()
        protected = sessions.sleeper(PROTECTED)
        victims = sorted([sleeper, idle_pid])
        sessions.wait_state([sleeper, idle_pid, protected])

        check = _run(sandbox, check=True)
        assert check.rc == 0, check.stdout[-3000:]
        assert check.changed(HOST) > 0
        assert _planned(check) == victims
        assert _report_pids(check, "would terminate") == victims
        assert sessions.alive([sleeper, idle_pid, protected]) == {sleeper, idle_pid, protected}
        assert not sessions.errors

        real = _run(sandbox)
        assert real.rc == 0, real.stdout[-3000:]
        assert real.changed(HOST) > 0
        assert _planned(real) == victims
        assert _report_pids(real, "terminated") == victims
        assert bench.poll() is None, "pgbench ended before the real run did: the load did not overlap"
        # server side: the two are gone, the protected one is still sleeping
        assert sessions.alive([sleeper, idle_pid, protected]) == {protected}
        # client side: the sleeping query raised, the idle transaction's connection is dead
        deadline = time.monotonic() + 5
        while sleeper not in sessions.errors and time.monotonic() < deadline:
            time.sleep(0.1)
        assert isinstance(sessions.errors.get(sleeper), psycopg.OperationalError), sessions.errors
        assert "terminating connection" in str(sessions.errors[sleeper])
        with pytest.raises(psycopg.OperationalError):
            idle_conn.execute("SELECT 1")
        assert protected not in sessions.errors

        for check_mode in (True, False):
            again = _run(sandbox, check=check_mode)
            assert again.rc == 0 and again.changed(HOST) == 0, again.stdout[-3000:]
            assert _planned(again) == []
            assert _report(again) == f"{HOST}: {'would terminate' if check_mode else 'terminated'} 0 sessions"
        assert sessions.alive([protected]) == {protected}
    finally:
        out, err = bench.communicate(timeout=60)
    assert bench.returncode == 0, err
    assert "error" not in (out + err).lower(), out + err
    assert re.search(r"number of failed transactions: 0\b", out), out


def test_more_matches_than_the_cap_end_none(sandbox, sessions: Sessions) -> None:
    pids = sorted([sessions.sleeper(), sessions.sleeper()])
    sessions.wait_state(pids)
    for check_mode in (True, False):
        result = _run(sandbox, check=check_mode, kill_queries_max_sessions=1)
        assert result.rc != 0
        assert result.failed_hosts() == {HOST}
        assert _planned(result) == pids  # the plan still lists what matched
        assert "2 sessions match the filters, more than max_sessions=1: none terminated" in result.stdout
        assert not result.host_results(HOST, "Act | end the planned sessions")
        assert sessions.alive(pids) == set(pids)
    assert not sessions.errors


def test_a_bad_duration_is_one_clear_error(sandbox, sessions: Sessions) -> None:
    pid = sessions.sleeper()
    sessions.wait_state([pid])
    result = _run(sandbox, kill_queries_active_max_age="soon")
    assert result.rc != 0
    failed = [r for r in result.host_results(HOST) if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, failed
    assert failed[0]["task"] == "Guards | the ages are durations"
    assert failed[0]["msg"].startswith("kill_queries_active_max_age: not a duration: 'soon' (use seconds")
    assert not result.host_results(HOST, "Plan |")
    assert sessions.alive([pid]) == {pid}


FLEET_APP = "kill_test_fleet"


def _ssh_db1(fleet, remote: str, **kw: Any) -> subprocess.Popen:
    port = fleet.env.get("FLEET_SSH_PORT_DB1")
    key = fleet.env.get("FLEET_SSH_KEY")
    if not port or not key:
        pytest.skip("the fleet has no db1 (.fleet/env)")
    return subprocess.Popen(["ssh", "-i", key, "-p", port, "-o", "StrictHostKeyChecking=no", "-o",
                             "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                             "root@127.0.0.1", remote], text=True, **kw)


@pytest.mark.fleet
def test_fleet_db1_terminates_an_old_query(fleet) -> None:
    """On db1 (PostgreSQL 15 under systemd, reached over ssh): one old query of ours is ended, once."""
    # the password travels on stdin, never in an argv; application_name marks the session as ours
    sleeper = _ssh_db1(fleet, f"read -r PGPASSWORD; export PGPASSWORD PGAPPNAME={FLEET_APP}; exec psql -X -h 127.0.0.1 "
                              "-U runbook_admin -d app -c 'SELECT pg_sleep(600)'",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sleeper.stdin.write(fleet.env["RUNBOOK_PG_ADMIN_PASSWORD"] + "\n")
        sleeper.stdin.flush()
        time.sleep(AGE + 2)
        extravars = {"kill_queries_active_max_age": f"{AGE}s", "kill_queries_databases": ["app"],
                     "kill_queries_application_names": [FLEET_APP]}
        real = run_playbook(PLAYBOOK, fleet.inventory, extravars=extravars, limit="db1")
        assert real.rc == 0, real.stdout[-3000:]
        assert real.changed("db1") > 0
        assert re.fullmatch(r"db1: terminated 1 sessions \(pids \d+\)", real.host_results("db1", REPORT_TASK)[0]["msg"])
        _out, err = sleeper.communicate(timeout=15)
        assert sleeper.returncode != 0
        assert "terminating connection due to administrator command" in err
        again = run_playbook(PLAYBOOK, fleet.inventory, extravars=extravars, limit="db1")
        assert again.rc == 0 and again.changed("db1") == 0, again.stdout[-3000:]
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.communicate()
        cleanup = _ssh_db1(fleet, "runuser -u postgres -- psql -X -qAtc \"SELECT pg_terminate_backend(pid) FROM "
                                  f"pg_stat_activity WHERE application_name = '{FLEET_APP}'\"",
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cleanup.wait(timeout=30)
