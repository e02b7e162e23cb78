# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pg_sessions through playbooks/kill_queries.yml: action=cancel, each filter, the protections.

Each filter test opens two real sessions that differ, as pg_stat_activity
shows them, only in the column the filter looks at (client_addrs: in the user
too, see there), and proves that the run ends the one that matches and leaves
its twin alone.

Other tests share this server, so everything here happens in databases of our
own (sessions_test, sessions_test_other) with roles of our own, and every
playbook run is filtered to those databases (_extravars() insists on it).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.lib.pg_clients import SLEEP, Sessions, plan_pids, report_line, report_pids
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

pytestmark = pytest.mark.sandbox

PLAYBOOK = "kill_queries.yml"
HOST = "sandbox-db"
DB = "sessions_test"
OTHER_DB = "sessions_test_other"
USER = "sessions_test_user"
OTHER_USER = "sessions_test_other_user"
APP = "sessions_test"
OTHER_APP = "sessions_test_other"
AGE = 1  # seconds: both the active and the idle-in-transaction age of these tests


@pytest.fixture(scope="module")
def sessions(sandbox) -> Iterator[Sessions]:
    s = Sessions(env=sandbox.env, password=secrets.token_urlsafe(16), db=DB, user=USER, application_name=APP,
                 age=AGE)
    with s.scratch(roles=(USER, OTHER_USER), databases=(OTHER_DB,)):
        yield s


@pytest.fixture(autouse=True)
def _clean(sessions: Sessions) -> Iterator[None]:
    yield
    sessions.end_all()


def _extravars(**extra: Any) -> dict[str, Any]:
    """The role's defaults but for the ages, limited to our databases."""
    extravars = {"kill_queries_active_max_age": f"{AGE}s", "kill_queries_idle_in_transaction_max_age": f"{AGE}s",
                 "kill_queries_databases": [DB], **extra}
    # never a run that could reach another engineer's sessions
    assert extravars["kill_queries_databases"] and set(extravars["kill_queries_databases"]) <= {DB, OTHER_DB}
    return extravars


def _run(sandbox, check: bool = False, **extra: Any) -> PlaybookResult:
    result = run_playbook(PLAYBOOK, sandbox.inventory, extravars=_extravars(**extra), check=check, limit=HOST)
    assert result.rc == 0, result.stdout[-3000:]
    return result


def _differences(sessions: Sessions, one: int, other: int) -> set[str]:
    """The pg_stat_activity columns pg_sessions selects on in which two live sessions differ."""
    rows = sessions.activity([one, other])
    assert set(rows) == {one, other}, rows
    return {col for col, value in rows[one].items() if rows[other][col] != value}


def _wait_error(sessions: Sessions, pid: int, seconds: float = 10) -> BaseException | None:
    """The error the sleeper pid's client got, once it got one (the signal reaches it asynchronously)."""
    deadline = time.monotonic() + seconds
    while pid not in sessions.errors and time.monotonic() < deadline:
        time.sleep(0.1)
    return sessions.errors.get(pid)


def _assert_client_terminated(sessions: Sessions, pid: int, *, sleeping: bool) -> None:
    """The client of pid saw its connection end: the sleeping query raised, or the next query does."""
    if sleeping:
        err = _wait_error(sessions, pid)
        assert isinstance(err, psycopg.OperationalError), sessions.errors
        assert "terminating connection due to administrator command" in str(err)
    else:
        with pytest.raises(psycopg.OperationalError, match="terminating connection"):
            sessions.conn(pid).execute("SELECT 1")


# --- action=cancel -------------------------------------------------------------------------------------------


def test_cancel_stops_the_query_and_keeps_the_session(sandbox, sessions: Sessions) -> None:
    target = sessions.sleeper()
    other = sessions.sleeper(application_name=OTHER_APP)  # the same query, filtered out by its application
    sessions.wait_state([target, other])

    def state() -> dict[int, tuple[str, str]]:
        return {pid: (row["state"], row["query"]) for pid, row in sessions.activity([target, other]).items()}

    runs = run_four_times(PLAYBOOK, sandbox.inventory, read_state=state, limit=HOST,
                          extravars=_extravars(kill_queries_action="cancel", kill_queries_application_names=[APP]))
    # server side: the target's query stopped but its session is still there; the other still sleeps
    assert runs.before == {target: ("active", SLEEP), other: ("active", SLEEP)}
    assert runs.after == {target: ("idle", SLEEP), other: ("active", SLEEP)}
    assert plan_pids(runs.check, HOST) == plan_pids(runs.real, HOST) == [target]
    assert report_pids(runs.check, HOST, "would cancel") == [target]
    assert report_pids(runs.real, HOST, "cancelled") == [target]
    assert report_line(runs.check_again, HOST) == f"{HOST}: would cancel 0 sessions"
    assert report_line(runs.real_again, HOST) == f"{HOST}: cancelled 0 sessions"
    # client side: the query raised QueryCanceled, and the same connection (same backend) goes on working
    err = _wait_error(sessions, target)
    assert isinstance(err, psycopg.errors.QueryCanceled), sessions.errors
    assert "canceling statement due to user request" in str(err)
    conn = sessions.conn(target)
    assert not conn.closed
    assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == target
    assert other not in sessions.errors


def test_cancel_leaves_an_idle_transaction_open_and_says_so(sandbox, sessions: Sessions) -> None:
    pid, conn = sessions.idle_in_transaction()
    xid = conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0]
    sessions.wait_state([pid], age=0)

    # the module waits wait_timeout for a query to stop; this one never will
    real = _run(sandbox, kill_queries_action="cancel", kill_queries_states=["idle in transaction"],
                kill_queries_idle_in_transaction_max_age=0, kill_queries_wait_timeout=0.5)
    assert plan_pids(real, HOST) == [pid]
    # signalled (changed), but an idle session runs no query to cancel: reported, not counted as cancelled
    assert real.changed(HOST) > 0
    assert report_line(real, HOST) == f"{HOST}: cancelled 0 sessions; query still running in pids {pid}"
    assert sessions.activity([pid])[pid]["state"] == "idle in transaction"
    # the very same transaction is still open and commits
    assert conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0] == xid
    conn.commit()


# --- each filter: ends the session that matches, leaves its twin ----------------------------------------------


@dataclass
class Case:
    """A filter, and how to open a session it matches, its twin it does not, and maybe more it does not."""

    extravars: dict[str, Any]
    differ: set[str]  # the columns in which the match and its twin differ
    match: Callable[[Sessions], int]
    twin: Callable[[Sessions], int]
    others: tuple[Callable[[Sessions], int], ...] = ()
    sleeping: bool = True  # whether the match runs a query (else it sits idle in a transaction)


def _idle(aborted: bool = False) -> Callable[[Sessions], int]:
    return lambda s: s.idle_in_transaction(aborted=aborted)[0]


CASES = {
    "users": Case({"kill_queries_users": [USER]}, {"usename"},
                  match=lambda s: s.sleeper(USER), twin=lambda s: s.sleeper(OTHER_USER)),
    "application_names": Case({"kill_queries_application_names": [APP]}, {"application_name"},
                              match=lambda s: s.sleeper(application_name=APP),
                              twin=lambda s: s.sleeper(application_name=OTHER_APP)),
    # a regular expression, matched case-sensitively (~, not ~*)
    "query_pattern": Case({"kill_queries_query_pattern": r"sessions_test re(port|run) \*/$"}, {"query"},
                          match=lambda s: s.sleeper(query=f"{SLEEP} /* sessions_test report */"),
                          twin=lambda s: s.sleeper(query=f"{SLEEP} /* sessions_test REPORT */")),
    "databases": Case({"kill_queries_databases": [DB]}, {"datname"},
                      match=lambda s: s.sleeper(dbname=DB), twin=lambda s: s.sleeper(dbname=OTHER_DB)),
    # the state itself, not its class: idle in transaction (aborted) counts its age the same way
    "states": Case({"kill_queries_states": ["idle in transaction (aborted)"]}, {"state"},
                   match=_idle(aborted=True), twin=_idle(), others=(lambda s: s.sleeper(),), sleeping=False),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_filter_ends_only_the_matching_session(sandbox, sessions: Sessions, case: Case) -> None:
    match, twin = case.match(sessions), case.twin(sessions)
    others = [twin, *(make(sessions) for make in case.others)]
    sessions.wait_state([match, *others])
    assert _differences(sessions, match, twin) == case.differ

    # databases: both of ours are searched but for the one the case filters on
    real = _run(sandbox, **{"kill_queries_databases": [DB, OTHER_DB], **case.extravars})
    assert plan_pids(real, HOST) == [match]
    assert report_pids(real, HOST, "terminated") == [match]
    assert sessions.alive([match, *others]) == set(others)
    _assert_client_terminated(sessions, match, sleeping=case.sleeping)
    assert not set(others) & set(sessions.errors)


def test_client_addrs_matches_networks_and_never_the_unix_socket(sandbox, sessions: Sessions) -> None:
    # 127.0.0.1 is the only address the sandbox listens on; the twin comes over the Unix socket, which only
    # postgres can use (peer authentication), so postgres is unprotected here to make it a candidate
    local = sessions.postgres_sleeper()  # forked first, before any client thread runs
    tcp = sessions.sleeper()
    sessions.wait_state([tcp, local])
    assert _differences(sessions, tcp, local) == {"client_addr", "usename"}
    unprotected = {"kill_queries_protected_users": []}

    # without the filter both are planned, so what spares the Unix-socket session below is the filter
    control = _run(sandbox, check=True, **unprotected)
    assert plan_pids(control, HOST) == sorted([tcp, local])
    # networks that do not hold 127.0.0.1 (one of them IPv6) match nothing
    elsewhere = _run(sandbox, check=True, kill_queries_client_addrs=["10.0.0.0/8", "::1"], **unprotected)
    assert plan_pids(elsewhere, HOST) == []
    assert elsewhere.changed(HOST) == 0

    real = _run(sandbox, kill_queries_client_addrs=["10.0.0.0/8", "127.0.0.0/8"], **unprotected)
    assert plan_pids(real, HOST) == [tcp]
    assert report_pids(real, HOST, "terminated") == [tcp]
    assert sessions.alive([tcp, local]) == {local}
    _assert_client_terminated(sessions, tcp, sleeping=True)


# --- what is never ended -------------------------------------------------------------------------------------


def test_protected_users_and_applications_by_default(sandbox, sessions: Sessions) -> None:
    postgres = sessions.postgres_sleeper()
    tools = [sessions.sleeper(application_name=app) for app in ("pg_dump", "pg_dumpall", "pg_restore")]
    control = sessions.sleeper()
    protected = [postgres, *tools]
    sessions.wait_state([*protected, control])

    # with the protections emptied every one of them is planned, so what spares them below is the defaults
    unprotected = _run(sandbox, check=True, kill_queries_protected_users=[],
                       kill_queries_protected_application_names=[])
    assert plan_pids(unprotected, HOST) == sorted([*protected, control])

    real = _run(sandbox)  # the role's defaults: postgres; pg_dump, pg_dumpall, pg_restore
    assert plan_pids(real, HOST) == [control]
    assert report_pids(real, HOST, "terminated") == [control]
    assert sessions.alive([*protected, control]) == set(protected)
    assert not set(tools) & set(sessions.errors)


def test_never_ends_its_own_session_nor_runbook_ops_sessions(sandbox, sessions: Sessions) -> None:
    imitation = sessions.sleeper(application_name="runbook.ops")  # as another runbook.ops run would be named
    control = sessions.sleeper()
    sessions.wait_state([imitation, control], age=0)

    # The module logs in to our database, so its own session (active, age 0, not a protected user) passes
    # every filter; only the built-in guards remain. Ending it would fail the task; planning it would list
    # a pid that is not one of ours.
    real = _run(sandbox, runbook_pg_database=DB, kill_queries_active_max_age=0, kill_queries_states=["active"],
                kill_queries_protected_users=[], kill_queries_protected_application_names=[])
    assert plan_pids(real, HOST) == [control]
    assert report_pids(real, HOST, "terminated") == [control]
    assert sessions.alive([imitation, control]) == {imitation}
    assert imitation not in sessions.errors
