#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Terminate or cancel the PostgreSQL sessions that match every given filter, with guards."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_sessions
short_description: Terminate or cancel PostgreSQL sessions that match filters, with a blast-radius guard
version_added: 0.1.0
author: runbook.ops maintainers (@runbook-ops)
description:
  - Ends the sessions of a PostgreSQL server that match B(all) the given filters, with
    C(pg_terminate_backend) (O(action=terminate), the default) or only cancels their running query with
    C(pg_cancel_backend) (O(action=cancel)).
  - Automates the runbooks' "kill long-running queries" step (active queries that started more than
    5 minutes ago, sessions idle in transaction for more than 10 minutes)
    with guards the hand-written query lacks.
  - The age of an C(active) session is the age of its running query (since C(query_start)); the age of a
    session in any other state is the time since it entered that state (since C(state_change)).
  - "Never ended, whatever the filters: the module's own session (C(pg_backend_pid)), every session whose
    C(application_name) is C(runbook.ops) (the sessions of this collection), every session that is not a
    C(client backend) (walsenders, autovacuum, background and parallel workers), the users in
    O(protected_users) and the applications in O(protected_application_names)."
  - "Blast-radius guard: when more than O(max_sessions) sessions match, the module ends B(none) of them and
    fails with the number that matched and the cap, in check mode too."
  - Each session is signalled only if it is still the one that was selected (same backend start, state and
    query or state start), so a session that moved on between the read and the signal is left alone and
    reported in RV(moved_on).
  - After O(action=terminate), the module waits up to O(wait_timeout) seconds for each session to disappear
    from C(pg_stat_activity) and fails, listing them in RV(survived), when one is still there.
  - In check mode the module reads C(pg_stat_activity) for real, signals nothing and returns the sessions it
    would end in RV(sessions) and their pids in RV(would_terminate) or RV(would_cancel).
extends_documentation_fragment:
  - runbook.ops.pg
options:
  action:
    description:
      - V(terminate) ends the session (its transaction rolls back, its client sees the connection close).
      - V(cancel) only cancels the query the session is running; the session and its connection stay. A
        session that is idle in transaction runs no query, so cancelling it changes nothing; such sessions are
        reported in RV(survived) with a warning (terminate them instead).
    type: str
    choices: [terminate, cancel]
    default: terminate
  states:
    description:
      - The states a session must be in (C(pg_stat_activity.state)).
    type: list
    elements: str
    choices: [active, idle in transaction, idle in transaction (aborted), idle]
    default: [active, idle in transaction, idle in transaction (aborted)]
  min_age:
    description:
      - Minimum age of a session in any of O(states), as seconds or a duration such as V(30s), V(5m), V(1h30m).
      - The per-state options O(active_min_age), O(idle_in_transaction_min_age) and O(idle_min_age) win over it.
      - V(0) (the default) selects sessions of any age; O(max_sessions) still applies.
    type: raw
    default: 0
  active_min_age:
    description:
      - Minimum age of the running query of an C(active) session (since C(query_start)); a duration as in
        O(min_age). Unset means O(min_age).
    type: raw
  idle_in_transaction_min_age:
    description:
      - Minimum time a session has been V(idle in transaction) or V(idle in transaction (aborted\)) (since
        C(state_change)); a duration as in O(min_age). Unset means O(min_age).
    type: raw
  idle_min_age:
    description:
      - Minimum time an C(idle) session has been idle (since C(state_change)); a duration as in O(min_age).
        Unset means O(min_age).
    type: raw
  databases:
    description: Only sessions connected to one of these databases. Unset means any database.
    type: list
    elements: str
  users:
    description: Only sessions of one of these roles. Unset means any role not in O(protected_users).
    type: list
    elements: str
  application_names:
    description: Only sessions with one of these C(application_name)s. Unset means any.
    type: list
    elements: str
  client_addrs:
    description:
      - Only sessions from a client address in one of these networks (an address or a CIDR network such as
        V(10.0.0.0/8)). Sessions over a Unix socket have no client address and never match.
    type: list
    elements: str
  query_pattern:
    description:
      - Only sessions whose (last) query matches this POSIX regular expression, matched by the server with
        C(~) (case-sensitive).
    type: str
  pids:
    description:
      - Only these backend pids. Every other filter still applies, so a pid that no longer matches is left
        alone. Meant for ending exactly what an earlier check-mode run planned.
      - An empty list matches nothing.
    type: list
    elements: int
  protected_users:
    description: Roles whose sessions are never ended, even when O(users) names them.
    type: list
    elements: str
    default: [postgres]
  protected_application_names:
    description:
      - Applications whose sessions are never ended, even when O(application_names) names them.
      - C(runbook.ops) is always protected and need not be listed.
    type: list
    elements: str
    default: [pg_dump, pg_dumpall, pg_restore]
  max_sessions:
    description:
      - The most sessions one run may end. When more match, none is ended and the module fails.
    type: int
    default: 10
  wait_timeout:
    description:
      - Seconds to wait for terminated sessions to disappear (or cancelled queries to stop) before reporting
        them in RV(survived).
    type: float
    default: 5
  query_length:
    description: Characters of each session's query to return in RV(sessions).
    type: int
    default: 200
attributes:
  check_mode:
    support: full
    description: Reads C(pg_stat_activity) for real and signals nothing; returns what it would end.
  diff_mode:
    support: none
    description: Sessions have no before and after to show; RV(sessions) lists them.
notes:
  - The login needs to be a superuser, or a member of C(pg_signal_backend) (which cannot signal superusers'
    sessions). A session the server refuses to signal is reported in RV(refused) and fails the module.
  - "Terminating a session rolls its open transaction back: the client sees an error such as
    C(terminating connection due to administrator command) and must reconnect."
seealso:
  - name: PostgreSQL server signaling functions
    description: pg_cancel_backend and pg_terminate_backend.
    link: https://www.postgresql.org/docs/current/functions-admin.html#FUNCTIONS-ADMIN-SIGNAL
  - module: community.postgresql.postgresql_query
"""

EXAMPLES = r"""
- name: End active queries older than 5 minutes and sessions idle in transaction for 10 minutes
  runbook.ops.pg_sessions:
    login_host: 127.0.0.1
    login_user: runbook_admin
    login_password: "{{ runbook_pg_password }}"
    active_min_age: 5m
    idle_in_transaction_min_age: 10m
    databases: [app]
  register: ended

- name: Plan only - list what would be terminated
  runbook.ops.pg_sessions:
    active_min_age: 300
    states: [active]
  check_mode: true
  register: plan

- name: End exactly the sessions the plan listed
  runbook.ops.pg_sessions:
    active_min_age: 300
    states: [active]
    pids: "{{ plan.would_terminate }}"
  when: plan.would_terminate | length > 0

- name: Cancel the reporting job's runaway queries from the BI subnet, at most 3
  runbook.ops.pg_sessions:
    action: cancel
    states: [active]
    min_age: 2m
    application_names: [metabase]
    client_addrs: [10.20.0.0/16]
    query_pattern: '^\s*SELECT'
    max_sessions: 3

- name: Every pg_* module takes its login from the group defaults
  module_defaults:
    group/runbook.ops.pg:
      login_host: "{{ runbook_pg_host }}"
      login_port: "{{ runbook_pg_port }}"
      login_user: "{{ runbook_pg_user }}"
      login_password: "{{ runbook_pg_password }}"
      login_db: "{{ runbook_pg_database }}"
  block:
    - name: End idle-in-transaction sessions older than 10 minutes
      runbook.ops.pg_sessions:
        states: [idle in transaction, idle in transaction (aborted)]
        min_age: 10m
"""

RETURN = r"""
action:
  description: The action, V(terminate) or V(cancel).
  returned: always
  type: str
  sample: terminate
matched:
  description: How many sessions matched every filter (before the O(max_sessions) guard).
  returned: always
  type: int
  sample: 2
sessions:
  description:
    - The sessions that match, oldest first. In check mode the ones that would be ended; otherwise the ones
      the module signalled.
    - On the O(max_sessions) failure, every session that matched (none was ended).
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Backend process id.
      type: int
      sample: 4711
    user:
      description: Role of the session.
      type: str
      sample: app
    database:
      description: Database of the session.
      type: str
      sample: app
    application_name:
      description: Application name the client set.
      type: str
      sample: psql
    client_addr:
      description: Client address, or null over a Unix socket.
      type: str
      sample: 10.0.0.7
    state:
      description: State when it was read.
      type: str
      sample: active
    age_seconds:
      description: Age in seconds (query age for C(active), time in state otherwise).
      type: float
      sample: 412.3
    query_start:
      description: Start of the session's last query (ISO 8601).
      type: str
      sample: "2025-01-31T10:02:03.123456+00:00"
    state_change:
      description: When the session entered its state (ISO 8601).
      type: str
      sample: "2025-01-31T10:02:03.123460+00:00"
    query:
      description: The session's last query, cut at O(query_length) characters.
      type: str
      sample: SELECT pg_sleep(600)
would_terminate:
  description: Pids that would be terminated.
  returned: check mode with O(action=terminate)
  type: list
  elements: int
  sample: [4711, 4712]
would_cancel:
  description: Pids whose query would be cancelled.
  returned: check mode with O(action=cancel)
  type: list
  elements: int
  sample: [4711]
terminated:
  description: Pids terminated and verified gone from C(pg_stat_activity).
  returned: success, not in check mode, O(action=terminate)
  type: list
  elements: int
  sample: [4711, 4712]
cancelled:
  description: Pids whose query was cancelled (the session no longer runs the query it ran when read).
  returned: success, not in check mode, O(action=cancel)
  type: list
  elements: int
  sample: [4711]
survived:
  description: Pids signalled that were still there (terminate) or still ran the same query (cancel) after
    O(wait_timeout).
  returned: not in check mode
  type: list
  elements: int
  sample: []
moved_on:
  description: Pids that matched when read but had moved on (new query, new state, gone) when signalled; left alone.
  returned: not in check mode
  type: list
  elements: int
  sample: []
refused:
  description: Sessions the server refused to signal, with its error.
  returned: not in check mode
  type: list
  elements: dict
  sample: [{"pid": 4711, "error": "permission denied to terminate process"}]
msg:
  description: One line saying what was (or would be) done.
  returned: always
  type: str
  sample: terminated 2 sessions (pids 4711, 4712)
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact, sql
from ansible_collections.runbook.ops.plugins.module_utils.pg_sessions_select import (
    DEFAULT_STATES, STATE_CLASSES, candidates_query, cap_error, check_cidrs, check_states, describe, min_ages,
    select_sessions,
)

SIGNAL_FUNCTIONS = {"terminate": "pg_terminate_backend", "cancel": "pg_cancel_backend"}
PAST = {"terminate": "terminated", "cancel": "cancelled"}

# Signal a session only if it is still the one that was read: same backend, same state, same query.
SIGNAL_SQL = """
SELECT {func}(pid) AS signalled
  FROM pg_catalog.pg_stat_activity
 WHERE pid = %s AND backend_start = %s AND state = %s
   AND query_start IS NOT DISTINCT FROM %s AND state_change IS NOT DISTINCT FROM %s
"""
STILL_THERE_SQL = """
SELECT pid, backend_start, state, query_start FROM pg_catalog.pg_stat_activity WHERE pid = ANY(%s::int[])
"""


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        action={"type": "str", "choices": list(SIGNAL_FUNCTIONS), "default": "terminate"},
        states={"type": "list", "elements": "str", "choices": list(STATE_CLASSES), "default": list(DEFAULT_STATES)},
        min_age={"type": "raw", "default": 0},
        active_min_age={"type": "raw"},
        idle_in_transaction_min_age={"type": "raw"},
        idle_min_age={"type": "raw"},
        databases={"type": "list", "elements": "str"},
        users={"type": "list", "elements": "str"},
        application_names={"type": "list", "elements": "str"},
        client_addrs={"type": "list", "elements": "str"},
        query_pattern={"type": "str"},
        pids={"type": "list", "elements": "int"},
        protected_users={"type": "list", "elements": "str", "default": ["postgres"]},
        protected_application_names={"type": "list", "elements": "str",
                                     "default": ["pg_dump", "pg_dumpall", "pg_restore"]},
        max_sessions={"type": "int", "default": 10},
        wait_timeout={"type": "float", "default": 5},
        query_length={"type": "int", "default": 200},
    )
    return spec


def _still_the_same(before: dict[str, Any], now: dict[str, Any] | None, action: str) -> bool:
    """Whether the signal has not taken effect yet: the session is there (terminate) or runs the same query (cancel)."""
    if now is None or now["backend_start"] != before["backend_start"]:
        return False
    if action == "terminate":
        return True
    return now["state"] == before["state"] and now["query_start"] == before["query_start"]


def _wait(conn: Any, rows: list[dict[str, Any]], action: str, timeout: float) -> list[int]:
    """Pids on which the signal has not taken effect after timeout seconds."""
    deadline = time.monotonic() + max(timeout, 0)
    while True:
        now = {r["pid"]: r for r in conn.execute(STILL_THERE_SQL, [[r["pid"] for r in rows]]).fetchall()}
        pending = [r["pid"] for r in rows if _still_the_same(r, now.get(r["pid"]), action)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(0.2)


def _signal(module: AnsibleModule, conn: Any, rows: list[dict[str, Any]], action: str) -> tuple[list, list, list]:
    """Signal each row; (signalled rows, skipped pids, failures)."""
    stmt = sql.SQL(SIGNAL_SQL).format(func=sql.Identifier("pg_catalog", SIGNAL_FUNCTIONS[action]))
    signalled, skipped, failed = [], [], []
    for row in rows:
        try:
            got = conn.execute(stmt, [row["pid"], row["backend_start"], row["state"], row["query_start"],
                                      row["state_change"]]).fetchone()
        except PsycopgError as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            failed.append({"pid": row["pid"], "error": redact(first, module.params)})
            continue
        if got is None:
            skipped.append(row["pid"])
        elif got["signalled"]:
            signalled.append(row)
        else:  # the server found the pid but could not signal it: it ended meanwhile
            skipped.append(row["pid"])
    return signalled, skipped, failed


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    action = p["action"]
    result: dict[str, Any] = {"changed": False, "action": action, "matched": 0, "sessions": []}
    try:
        states = check_states(p["states"])
        ages = min_ages(p["min_age"], p["active_min_age"], p["idle_in_transaction_min_age"], p["idle_min_age"])
        cidrs = check_cidrs(p["client_addrs"]) if p["client_addrs"] is not None else None
    except ValueError as err:
        module.fail_json(msg=str(err), **result)
    if p["max_sessions"] < 1:
        module.fail_json(msg=f"max_sessions must be at least 1, got {p['max_sessions']}", **result)
    if p["query_length"] < 0:
        module.fail_json(msg=f"query_length cannot be negative, got {p['query_length']}", **result)

    conn, err = connect(module)
    if err:
        module.fail_json(msg=err, **result)
    try:
        query, params = candidates_query(states=states, databases=p["databases"], users=p["users"],
                                         application_names=p["application_names"], client_addrs=cidrs,
                                         query_pattern=p["query_pattern"], pids=p["pids"])
        try:
            own_pid = conn.execute("SELECT pg_catalog.pg_backend_pid() AS pid").fetchone()["pid"]
            rows = conn.execute(query, params).fetchall()
        except PsycopgError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            module.fail_json(msg=redact(f"cannot read pg_stat_activity: {first}", p), **result)
        chosen = select_sessions(rows, states=states, ages=ages, protected_users=p["protected_users"],
                                 protected_application_names=p["protected_application_names"], own_pid=own_pid)
        result["matched"] = len(chosen)
        result["sessions"] = [describe(r, p["query_length"]) for r in chosen]
        pids = [r["pid"] for r in chosen]

        too_many = cap_error(len(chosen), p["max_sessions"], action)
        if too_many:
            module.fail_json(msg=too_many, **result)

        if module.check_mode:
            result[f"would_{action}"] = pids
            result["changed"] = bool(pids)
            result["msg"] = (f"would {action} {len(pids)} sessions (pids {', '.join(map(str, pids))})" if pids
                             else f"no session to {action}")
            module.exit_json(**result)

        signalled, skipped, failed = _signal(module, conn, chosen, action)
        survived = _wait(conn, signalled, action, p["wait_timeout"]) if signalled else []
        done = [r["pid"] for r in signalled if r["pid"] not in survived]
        result.update({
            "changed": bool(signalled),
            "sessions": [describe(r, p["query_length"]) for r in signalled],
            PAST[action]: done,
            "survived": survived,
            # not "skipped"/"failed": ansible-core reads those keys as the task's own status
            "moved_on": skipped,
            "refused": failed,
            "msg": (f"{PAST[action]} {len(done)} sessions" + (f" (pids {', '.join(map(str, done))})" if done else "")
                    + (f"; skipped {len(skipped)} that had moved on" if skipped else "")),
        })
    finally:
        conn.close()

    if failed:
        module.fail_json(msg=result["msg"] + "; the server refused to signal "
                         + ", ".join(f"pid {f['pid']} ({f['error']})" for f in failed), **result)
    if survived and action == "terminate":
        module.fail_json(msg=result["msg"] + f"; still there after {p['wait_timeout']:g}s: pids "
                         + ", ".join(map(str, survived)), **result)
    if survived:
        module.warn(f"the query of pids {', '.join(map(str, survived))} still runs after {p['wait_timeout']:g}s "
                    "(a session idle in transaction runs no query to cancel: terminate it instead)")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
