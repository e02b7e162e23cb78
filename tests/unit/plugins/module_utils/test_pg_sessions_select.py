# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Selection and guard logic of runbook.ops.pg_sessions: states, ages, protections, the cap, the SQL."""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_sessions_select import (
    DEFAULT_STATES, cap_error, candidates_query, check_cidrs, check_states, describe, min_ages, protection,
    select_sessions, session_age, state_class,
)


def row(pid: int = 100, state: str = "active", query_age: float | None = 400.0, state_age: float | None = 400.0,
        **kw: Any) -> dict[str, Any]:
    base = {"pid": pid, "usename": "app", "datname": "app", "application_name": "psql", "client_addr": "10.0.0.7",
            "state": state, "backend_type": "client backend", "query_age": query_age, "state_age": state_age,
            "query_start": None, "state_change": None, "query": "SELECT pg_sleep(600)"}
    base.update(kw)
    return base


SEED_AGES = {"active": 300.0, "idle_in_transaction": 600.0, "idle": 0.0}


@pytest.mark.parametrize(("state", "cls"), [
    ("active", "active"), ("idle in transaction", "idle_in_transaction"),
    ("idle in transaction (aborted)", "idle_in_transaction"), ("idle", "idle"),
    ("fastpath function call", None), ("disabled", None), (None, None), ("", None),
])
def test_state_class(state: str | None, cls: str | None) -> None:
    assert state_class(state) == cls


@pytest.mark.parametrize(("states", "expected"), [
    (["active"], ["active"]),
    (["active", "active", "idle"], ["active", "idle"]),
    (DEFAULT_STATES, DEFAULT_STATES),
])
def test_check_states(states: list[str], expected: list[str]) -> None:
    assert check_states(states) == expected


@pytest.mark.parametrize(("states", "match"), [
    ([], "at least one"), (["disabled"], "'disabled'"), (["Active"], "'Active'"),
])
def test_check_states_rejects(states: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_states(states)


@pytest.mark.parametrize(("args", "expected"), [
    ((0,), {"active": 0.0, "idle_in_transaction": 0.0, "idle": 0.0}),
    ((None,), {"active": 0.0, "idle_in_transaction": 0.0, "idle": 0.0}),
    (("5m",), {"active": 300.0, "idle_in_transaction": 300.0, "idle": 300.0}),
    ((0, "5m", "10m"), {"active": 300.0, "idle_in_transaction": 600.0, "idle": 0.0}),
    ((60, "300", None, "1h"), {"active": 300.0, "idle_in_transaction": 60.0, "idle": 3600.0}),
    (("1m", 0, 0), {"active": 0.0, "idle_in_transaction": 0.0, "idle": 60.0}),
])
def test_min_ages(args: tuple, expected: dict[str, float]) -> None:
    assert min_ages(*args) == expected


@pytest.mark.parametrize(("args", "match"), [
    (("soon",), r"^min_age: not a duration: 'soon'"),
    ((0, "5 minutes"), r"^active_min_age: not a duration"),
    ((0, None, -1), r"^idle_in_transaction_min_age: a duration cannot be negative"),
    ((0, None, None, True), r"^idle_min_age: not a duration"),
])
def test_min_ages_name_the_bad_option(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        min_ages(*args)


@pytest.mark.parametrize(("state", "query_age", "state_age", "expected"), [
    ("active", 400.0, 5.0, 400.0),                     # an active query counts from query_start
    ("idle in transaction", 900.0, 650.0, 650.0),      # the others from state_change
    ("idle in transaction (aborted)", 900.0, 10.0, 10.0),
    ("idle", 900.0, 30.0, 30.0),
    ("active", None, 5.0, None),
    ("disabled", 10.0, 10.0, None),
])
def test_session_age(state: str, query_age: float | None, state_age: float | None, expected: float | None) -> None:
    assert session_age(row(state=state, query_age=query_age, state_age=state_age)) == expected


@pytest.mark.parametrize(("overrides", "own_pid", "reason"), [
    ({}, None, None),
    ({}, 100, "own session"),
    ({"application_name": "runbook.ops"}, None, "application_name runbook.ops"),
    ({"usename": "postgres"}, None, "protected user postgres"),
    ({"application_name": "pg_dump"}, None, "protected application pg_dump"),
    ({"backend_type": "walsender"}, None, "backend_type walsender"),
    ({"backend_type": "autovacuum worker"}, None, "backend_type autovacuum worker"),
    ({"backend_type": "parallel worker"}, None, "backend_type parallel worker"),
])
def test_protection(overrides: dict[str, Any], own_pid: int | None, reason: str | None) -> None:
    assert protection(row(**overrides), ["postgres"], ["pg_dump"], own_pid) == reason


# The seed procedure: active queries older than 5 minutes, idle in transaction for more than 10 minutes.
@pytest.mark.parametrize(("session", "selected"), [
    (row(state="active", query_age=301), True),
    (row(state="active", query_age=300), True),        # "at least" the minimum age
    (row(state="active", query_age=299.9), False),
    (row(state="active", query_age=10, state_age=9999), False),   # a young query in an old session
    (row(state="idle in transaction", state_age=601, query_age=5), True),
    (row(state="idle in transaction", state_age=599), False),
    (row(state="idle in transaction (aborted)", state_age=700), True),
    (row(state="idle", state_age=99999), False),      # not in the selected states
    (row(state="active", query_age=999, usename="postgres"), False),
    (row(state="active", query_age=999, application_name="runbook.ops"), False),
    (row(state="active", query_age=999, backend_type="walsender"), False),
    (row(pid=42, state="active", query_age=999), False),          # own session
])
def test_select_sessions_seed_procedure(session: dict[str, Any], selected: bool) -> None:
    got = select_sessions([session], states=DEFAULT_STATES, ages=SEED_AGES, protected_users=["postgres"],
                          protected_application_names=["pg_dump"], own_pid=42)
    assert (got == [session]) is selected


def test_select_sessions_oldest_first() -> None:
    rows = [row(pid=1, query_age=310), row(pid=2, state="idle in transaction", state_age=900),
            row(pid=3, query_age=2000), row(pid=4, query_age=10)]
    got = select_sessions(rows, states=DEFAULT_STATES, ages=SEED_AGES)
    assert [r["pid"] for r in got] == [3, 2, 1]


@pytest.mark.parametrize(("matched", "cap", "blocked"), [
    (0, 10, False), (10, 10, False), (11, 10, True), (2, 1, True), (1, 1, False),
])
def test_cap_error(matched: int, cap: int, blocked: bool) -> None:
    msg = cap_error(matched, cap, "terminate")
    assert (msg is not None) is blocked
    if blocked:
        assert f"{matched} sessions match" in msg
        assert f"max_sessions={cap}" in msg
        assert "none terminated" in msg


def test_cap_error_says_cancelled_for_cancel() -> None:
    assert "none cancelled" in cap_error(3, 2, "cancel")


@pytest.mark.parametrize(("values", "expected"), [
    (["10.0.0.0/8"], ["10.0.0.0/8"]),
    (["10.1.2.3"], ["10.1.2.3/32"]),
    (["10.1.2.3/8"], ["10.0.0.0/8"]),
    (["::1", "fd00::/8"], ["::1/128", "fd00::/8"]),
    ([], []),
])
def test_check_cidrs(values: list[str], expected: list[str]) -> None:
    assert check_cidrs(values) == expected


@pytest.mark.parametrize("value", ["10.0.0.0/33", "localhost", "", "10.0.0.0/8; DROP TABLE x"])
def test_check_cidrs_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="client_addrs: not an address or CIDR network"):
        check_cidrs([value])


def test_candidates_query_without_filters() -> None:
    sql, params = candidates_query(states=["active"])
    assert "backend_type = 'client backend'" in sql
    assert "pg_backend_pid()" in sql
    assert params == ["runbook.ops", ["active"]]


def test_candidates_query_every_value_is_a_parameter() -> None:
    evil = "x'; DROP TABLE t; --"
    sql, params = candidates_query(states=["active"], databases=[evil], users=["u"], application_names=["a"],
                                   client_addrs=["10.0.0.0/8"], query_pattern="^SELECT", pids=[1, "2"])
    assert evil not in sql and "^SELECT" not in sql
    assert sql.count("%s") == len(params) == 8
    assert params[2:] == [[evil], ["u"], ["a"], ["10.0.0.0/8"], "^SELECT", [1, 2]]


def test_candidates_query_empty_list_still_filters() -> None:
    sql, params = candidates_query(states=["active"], pids=[])
    assert "pid = ANY" in sql and params[-1] == []


@pytest.mark.parametrize(("length", "query", "shown"), [
    (10, "SELECT 1", "SELECT 1"),
    (5, "SELECT pg_sleep(600)", "SELEC..."),
    (200, "  SELECT 1\n ", "SELECT 1"),
])
def test_describe(length: int, query: str, shown: str) -> None:
    out = describe(row(query=query), length)
    assert out["query"] == shown
    assert out["age_seconds"] == 400.0
    assert set(out) == {"pid", "user", "database", "application_name", "client_addr", "state", "age_seconds",
                        "query_start", "state_change", "query"}
