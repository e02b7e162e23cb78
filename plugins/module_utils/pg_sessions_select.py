# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which PostgreSQL sessions pg_sessions may end: pure selection and guard logic.

No database access here: the module reads pg_stat_activity with the query
built by candidates_query() and hands the rows to select_sessions(), which
applies the states, the ages and the protections, then cap_error() decides
whether the blast-radius guard lets the run go on.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Iterable, Mapping

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import APPLICATION_NAME

# The states a session can be selected in, and the class each belongs to. The
# class decides which timestamp the age counts from: an active session's age is
# the age of its running query (query_start), the others' the time since they
# entered their state (state_change).
STATE_CLASSES: dict[str, str] = {
    "active": "active",
    "idle in transaction": "idle_in_transaction",
    "idle in transaction (aborted)": "idle_in_transaction",
    "idle": "idle",
}
AGE_COLUMNS: dict[str, str] = {"active": "query_start", "idle_in_transaction": "state_change", "idle": "state_change"}
DEFAULT_STATES = ["active", "idle in transaction", "idle in transaction (aborted)"]
QUERY_LENGTH = 200

# Never ended, whatever the filters say: only client backends are candidates
# (no walsenders, autovacuum or background workers), never the module's own
# session and never a session of runbook.ops itself.
CANDIDATES_SQL = """
SELECT pid, usename, datname, application_name, host(client_addr) AS client_addr, state, backend_type,
       backend_start, query_start, state_change, query,
       EXTRACT(EPOCH FROM (clock_timestamp() - query_start))::float8 AS query_age,
       EXTRACT(EPOCH FROM (clock_timestamp() - state_change))::float8 AS state_age
  FROM pg_catalog.pg_stat_activity
 WHERE backend_type = 'client backend'
   AND pid <> pg_catalog.pg_backend_pid()
   AND application_name IS DISTINCT FROM %s
   AND state = ANY(%s)
"""


def state_class(state: str | None) -> str | None:
    """active, idle_in_transaction or idle; None for a state pg_sessions never selects."""
    return STATE_CLASSES.get(state or "")


def check_states(states: Iterable[str]) -> list[str]:
    """The states, deduplicated in order; ValueError naming the ones that cannot be selected."""
    out: list[str] = []
    for state in states:
        if state not in STATE_CLASSES:
            raise ValueError(f"states: cannot select sessions in state {state!r} "
                             f"(choose from {', '.join(STATE_CLASSES)})")
        if state not in out:
            out.append(state)
    if not out:
        raise ValueError("states: give at least one state")
    return out


def min_ages(min_age: object, active_min_age: object = None, idle_in_transaction_min_age: object = None,
             idle_min_age: object = None) -> dict[str, float]:
    """Minimum age in seconds per state class; a class's own option wins over min_age.

    ValueError names the option whose value is not a duration.
    """
    def parse(name: str, value: object) -> float:
        try:
            return to_seconds(value)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None

    base = parse("min_age", 0 if min_age is None else min_age)
    given = {"active": ("active_min_age", active_min_age),
             "idle_in_transaction": ("idle_in_transaction_min_age", idle_in_transaction_min_age),
             "idle": ("idle_min_age", idle_min_age)}
    return {cls: base if value is None else parse(name, value) for cls, (name, value) in given.items()}


def session_age(row: Mapping[str, Any]) -> float | None:
    """Seconds since the timestamp the session's state class counts from; None when unknown."""
    cls = state_class(row.get("state"))
    if cls is None:
        return None
    age = row.get("query_age") if AGE_COLUMNS[cls] == "query_start" else row.get("state_age")
    return None if age is None else float(age)


def protection(row: Mapping[str, Any], protected_users: Iterable[str],
               protected_application_names: Iterable[str], own_pid: int | None = None) -> str | None:
    """Why a session must never be ended, or None when it may be."""
    if row.get("backend_type") not in (None, "client backend"):
        return f"backend_type {row.get('backend_type')}"
    if own_pid is not None and row.get("pid") == own_pid:
        return "own session"
    if row.get("application_name") == APPLICATION_NAME:
        return f"application_name {APPLICATION_NAME}"
    if row.get("usename") in set(protected_users):
        return f"protected user {row.get('usename')}"
    if row.get("application_name") in set(protected_application_names):
        return f"protected application {row.get('application_name')}"
    return None


def select_sessions(rows: Iterable[Mapping[str, Any]], *, states: Iterable[str], ages: Mapping[str, float],
                    protected_users: Iterable[str] = (), protected_application_names: Iterable[str] = (),
                    own_pid: int | None = None) -> list[Mapping[str, Any]]:
    """The rows in one of states, at least as old as their class's minimum age, and not protected.

    Ordered oldest first, so that the plan reads like the seed's query output.
    """
    wanted = set(states)
    users, apps = list(protected_users), list(protected_application_names)
    chosen = []
    for row in rows:
        if row.get("state") not in wanted:
            continue
        age = session_age(row)
        if age is None or age < ages[STATE_CLASSES[row["state"]]]:
            continue
        if protection(row, users, apps, own_pid) is not None:
            continue
        chosen.append(row)
    return sorted(chosen, key=lambda r: (-(session_age(r) or 0.0), r.get("pid") or 0))


def cap_error(matched: int, max_sessions: int, action: str) -> str | None:
    """The blast-radius guard: a message when more sessions match than one run may end, else None."""
    if matched <= max_sessions:
        return None
    verb = "terminated" if action == "terminate" else "cancelled"
    return (f"{matched} sessions match the filters, more than max_sessions={max_sessions}: none {verb}. "
            f"Narrow the filters (databases, users, application_names, ages) or raise max_sessions.")


def check_cidrs(values: Iterable[str]) -> list[str]:
    """The client address filters as normalised networks; ValueError naming a bad one."""
    out = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(str(value).strip(), strict=False)))
        except ValueError:
            raise ValueError(f"client_addrs: not an address or CIDR network: {value!r}") from None
    return out


def candidates_query(*, states: list[str], databases: list[str] | None = None, users: list[str] | None = None,
                     application_names: list[str] | None = None, client_addrs: list[str] | None = None,
                     query_pattern: str | None = None, pids: list[int] | None = None) -> tuple[str, list[Any]]:
    """SQL and parameters that read the candidate sessions; every value is a parameter.

    A filter that is None is not applied; an empty list matches nothing.
    """
    sql = CANDIDATES_SQL
    params: list[Any] = [APPLICATION_NAME, list(states)]
    for column, values in (("datname", databases), ("usename", users), ("application_name", application_names)):
        if values is not None:
            sql += f"   AND {column} = ANY(%s)\n"
            params.append(list(values))
    if client_addrs is not None:
        sql += "   AND client_addr <<= ANY(%s::inet[])\n"
        params.append(list(client_addrs))
    if query_pattern:
        sql += "   AND query ~ %s\n"
        params.append(query_pattern)
    if pids is not None:
        sql += "   AND pid = ANY(%s::int[])\n"
        params.append([int(p) for p in pids])
    return sql, params


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else (None if value is None else str(value))


def describe(row: Mapping[str, Any], query_length: int = QUERY_LENGTH) -> dict[str, Any]:
    """What the module returns for one session: who, where, how old, and the start of its query."""
    query = (row.get("query") or "").strip()
    if len(query) > query_length:
        query = query[:query_length] + "..."
    age = session_age(row)
    return {
        "pid": row.get("pid"),
        "user": row.get("usename"),
        "database": row.get("datname"),
        "application_name": row.get("application_name"),
        "client_addr": row.get("client_addr"),
        "state": row.get("state"),
        "age_seconds": None if age is None else round(age, 1),
        "query_start": _iso(row.get("query_start")),
        "state_change": _iso(row.get("state_change")),
        "query": query,
    }
