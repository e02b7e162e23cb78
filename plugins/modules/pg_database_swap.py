#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_database_swap: put one database in the place of another by renaming both in one transaction."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_database_swap
short_description: Swap two PostgreSQL databases' names atomically, keeping the old one under a new name
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - "Renames O(live) to O(keep_as) and O(replacement) to O(live) in B(one transaction), so that the name O(live)
    never is missing: every other session sees either the old database under it or the new one. This is how
    a restored database (see M(runbook.ops.pg_restore)) takes the place of the live one while the live one is
    kept, e.g. as C(app_pre_restore_<id>)."
  - The same module swaps back (the rescue path) with the names the other way round, e.g. O(live=app),
    O(replacement=app_pre_restore_<id>), O(keep_as=app_restore_failed_<id>).
  - "B(Order.) PostgreSQL renames a database only when no other session is connected to it, and a client whose
    session is ended may reconnect at once. So the module first stops new sessions, then ends the existing
    ones, then renames: (1) C(ALTER DATABASE ... ALLOW_CONNECTIONS false) for O(live) and O(replacement),
    committed, so that from then on every new connection to either is refused (superusers included);
    (2) C(pg_terminate_backend) on every remaining session of the two databases except the module's own, and
    a wait until they are gone (O(wait_timeout)); (3) one transaction with C(lock_timeout) (O(lock_timeout)):
    both C(ALTER DATABASE ... RENAME TO) and C(ALLOW_CONNECTIONS) set back to what each database had before
    (its own C(datallowconn)), then commit. A session that was half-way through connecting when (1) committed
    can still get in; the rename then fails with C(object in use) after PostgreSQL's own 5-second wait, and the
    module ends that session and tries again (3 attempts in all)."
  - "If the swap does not commit, each database gets back the C(ALLOW_CONNECTIONS) it had, under its own name,
    and the module fails with the cause. C(CREATE DATABASE), C(DROP DATABASE) and C(ALTER DATABASE ... SET
    TABLESPACE) cannot run in a transaction block, but C(ALTER DATABASE ... RENAME TO) and
    C(ALLOW_CONNECTIONS) can, which is what makes the swap atomic."
  - "B(Idempotent.) When O(replacement) does not exist and O(keep_as) does (the swap was done), the module reports
    no change. Any other state than O(live) and O(replacement) existing and O(keep_as) not is an error, and
    nothing is touched."
  - With O(terminate_sessions=false) a connected session is an error instead (checked again after (1)).
  - Identifiers are quoted by C(psycopg.sql.Identifier); values are passed as parameters.
extends_documentation_fragment:
  - runbook.ops.pg
options:
  live:
    description: The name in use, e.g. C(app). Its database is renamed to O(keep_as), and O(replacement) takes the name.
    type: str
    required: true
  replacement:
    description: The database to put under the name O(live), e.g. the restored C(app_restore_<id>).
    type: str
    required: true
  keep_as:
    description:
      - The name the current O(live) database is kept under, e.g. C(app_pre_restore_<id>). It must not exist.
      - At most 63 bytes, like every name here (PostgreSQL would truncate a longer name and could then name
        another database).
    type: str
    required: true
  maintenance_db:
    description:
      - The database the module connects to. It cannot be any of the three (PostgreSQL cannot rename the
        database a session is connected to).
      - O(login_db) is not used by this module, because the group's C(module_defaults) usually point it at the
        live database itself.
    type: str
    default: postgres
  terminate_sessions:
    description:
      - End the sessions connected to O(live) or O(replacement) (except the module's own) before the rename.
      - With V(false), such a session makes the module fail, and nothing is renamed.
    type: bool
    default: true
  lock_timeout:
    description:
      - C(lock_timeout) of the swap's transaction, as a duration (C(10s), C(1m), seconds). A rename that waits
        longer for its lock on the database fails, and the swap is rolled back. V(0) waits forever.
      - The default C(10s) is not from the seed runbooks; it is long enough for the short locks that connecting
        sessions take and short enough to keep the writers' downtime bounded.
    type: str
    default: 10s
  wait_timeout:
    description: Seconds to wait for terminated sessions to end before the rename is tried anyway.
    type: float
    default: 10
  record_path:
    description:
      - "After a swap that committed, write its record to this file (JSON, replaced atomically, mode C(0600)):
        O(live), the oid of the database now under it, O(keep_as) and its oid, the cluster's system identifier,
        the time, RV(xid) and the keys of O(record_data)."
      - RV(xid) is the horizon of the database swapped in - it took the name and allowed connections again in
        that transaction, so every transaction that wrote to it since has a later id.
        M(runbook.ops.pg_restore) (O(runbook.ops.pg_restore#module:swap_record)) reads the record to tell that a
        database is still the one swapped in, with no row written since.
      - An absolute path, taken as it is (no C(~) or C($VAR) expansion, since a database name may contain a C($)).
      - A record that cannot be written is a warning, not a failure (the swap has happened; the next restore
        then cannot tell the database unchanged, and treats it as changed). Not written when the swap was done
        before (RV(state=done)), nor in check mode.
    type: str
  record_data:
    description: More keys for the record, e.g. C(backup_id). The module's own keys win over these.
    type: dict
    default: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reads the databases and sessions for real, changes nothing, and returns the statements (RV(statements))
        and the sessions it would terminate (RV(would_terminate)). Reports a change unless the swap is done.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The login must be a superuser, or own both databases and have C(CREATEDB) (and may then only terminate
    sessions of roles it is a member of).
  - Clients connected to O(live) lose their session; the restore playbook stops the writers first. A client
    that connects during the swap is refused (C(not currently accepting connections)) or, if it was waiting for
    the rename's lock, told the database was renamed; its next attempt reaches the new O(live).
  - Prepared transactions in either database block a rename; the module fails before changing anything.
  - If the module is killed between (1) and the commit, the databases refuse connections until they are
    allowed again (C(ALTER DATABASE ... ALLOW_CONNECTIONS true)); the module warns when it finds a database
    that refuses connections at its start, and leaves that setting as it found it.
seealso:
  - module: runbook.ops.pg_restore
  - name: ALTER DATABASE
    description: PostgreSQL documentation of C(RENAME TO) and C(ALLOW_CONNECTIONS).
    link: https://www.postgresql.org/docs/current/sql-alterdatabase.html
"""

EXAMPLES = r"""
- name: Put the restored database in the place of app, keeping the old one
  runbook.ops.pg_database_swap:
    login_host: 127.0.0.1
    login_user: runbook_admin
    login_password: "{{ runbook_pg_password }}"
    live: app
    replacement: app_restore_20261201T083000Z
    keep_as: app_pre_restore_20261201T083000Z
  register: swap

- name: Rescue - swap back, the previous database is app again
  runbook.ops.pg_database_swap:
    live: app
    replacement: app_pre_restore_20261201T083000Z
    keep_as: app_restore_failed_20261201T083000Z

- name: Plan only (check mode) - the statements and the sessions that would end
  runbook.ops.pg_database_swap:
    live: app
    replacement: app_restore_20261201T083000Z
    keep_as: app_pre_restore_20261201T083000Z
  check_mode: true
  register: plan
"""

RETURN = r"""
live:
  description: The name swapped (O(live)).
  returned: always
  type: str
  sample: app
replacement:
  description: O(replacement).
  returned: always
  type: str
  sample: app_restore_20261201T083000Z
keep_as:
  description: O(keep_as).
  returned: always
  type: str
  sample: app_pre_restore_20261201T083000Z
state:
  description: V(swap) when the swap was (or would be) done by this run, V(done) when it had been done before.
  returned: success
  type: str
  sample: swap
databases:
  description: >-
    The databases before the swap by their names then: C(oid) and C(allow_connections) (C(datallowconn)).
    After a swap, the oid under O(live) is the one O(replacement) had.
  returned: success
  type: dict
  sample: {"app": {"oid": 16384, "allow_connections": true}, "app_restore_1": {"oid": 16961, "allow_connections": true}}
statements:
  description:
    - The statements run (or that would run, in check mode), in order. The first ones run on their own, the
      ones between C(BEGIN) and C(COMMIT) in one transaction.
  returned: success
  type: list
  elements: str
  sample:
    - ALTER DATABASE "app" ALLOW_CONNECTIONS false
    - ALTER DATABASE "app_restore_1" ALLOW_CONNECTIONS false
    - BEGIN
    - ALTER DATABASE "app" RENAME TO "app_pre_restore_1"
    - ALTER DATABASE "app_restore_1" RENAME TO "app"
    - ALTER DATABASE "app_pre_restore_1" ALLOW_CONNECTIONS true
    - ALTER DATABASE "app" ALLOW_CONNECTIONS true
    - COMMIT
sessions:
  description: >-
    The sessions connected to O(live) or O(replacement) when the module looked, except its own: C(pid),
    C(datname), C(usename), C(application_name), C(client_addr), C(state), C(backend_type).
  returned: success
  type: list
  elements: dict
would_terminate:
  description: The pids check mode would terminate.
  returned: in check mode
  type: list
  elements: int
  sample: [4711]
terminated:
  description: The pids terminated, over all attempts.
  returned: when the swap ran
  type: list
  elements: int
  sample: [4711]
swapped:
  description: Whether this run's swap committed (the names are swapped).
  returned: always
  type: bool
  sample: true
xid:
  description: The full (64-bit) transaction id of the swap's transaction.
  returned: when the swap committed
  type: int
  sample: 73921
record:
  description: The record written to O(record_path).
  returned: when O(record_path) is given and the record was written
  type: dict
attempts:
  description: How many times the rename transaction was tried.
  returned: when the swap ran
  type: int
  sample: 1
msg:
  description: One line saying what was done, or why it failed.
  returned: always
  type: str
  sample: app is now the former app_restore_1; the former app is kept as app_pre_restore_1
"""

import json
import os
import tempfile
import time
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import (
    DONE,
    check_database_name,
    swap_record,
    swap_state,
    swap_statements,
)

try:
    from psycopg import errors as pg_errors
except ImportError:  # reported by connect() through ensure_psycopg()
    pg_errors = None

ATTEMPTS = 3
DATABASES_SQL = """
SELECT datname, oid::int8 AS oid, datallowconn AS allow_connections
  FROM pg_catalog.pg_database WHERE datname = ANY(%s)"""
SESSIONS_SQL = """
SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, state, backend_type
  FROM pg_catalog.pg_stat_activity
 WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid()
 ORDER BY pid"""
TERMINATE_SQL = """
SELECT pid, pg_catalog.pg_terminate_backend(pid) AS terminated
  FROM pg_catalog.pg_stat_activity
 WHERE datname = ANY(%s) AND pid <> pg_catalog.pg_backend_pid()"""
PREPARED_SQL = "SELECT database, gid FROM pg_catalog.pg_prepared_xacts WHERE database = ANY(%s)"
# the swap transaction's own id (it has one: it renamed), 64 bits with the epoch
XID_SQL = {True: "SELECT pg_catalog.pg_current_xact_id()::text::int8 AS xid",
           False: "SELECT pg_catalog.txid_current() AS xid"}
SYSTEM_IDENTIFIER_SQL = """
SELECT CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS system_identifier"""


class SwapFailure(Exception):
    """The swap did not happen; the message says why."""


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        live={"type": "str", "required": True},
        replacement={"type": "str", "required": True},
        keep_as={"type": "str", "required": True},
        maintenance_db={"type": "str", "default": "postgres"},
        terminate_sessions={"type": "bool", "default": True},
        lock_timeout={"type": "str", "default": "10s"},
        wait_timeout={"type": "float", "default": 10},
        # str, not path: Ansible would expand a $ that belongs to a database name in the path
        record_path={"type": "str"},
        record_data={"type": "dict", "default": {}},
    )
    return spec


def check_options(module: AnsibleModule, result: dict[str, Any]) -> str:
    """The lock_timeout in milliseconds; fails the module on any invalid option, all problems in one message."""
    p = module.params
    names = {"live": p["live"], "replacement": p["replacement"], "keep_as": p["keep_as"]}
    problems = [check_database_name(value, option) for option, value in names.items()]
    if len(set(names.values())) != 3:
        problems.append("live, replacement and keep_as must be three different names")
    if p["maintenance_db"] in names.values():
        problems.append(f"maintenance_db {p['maintenance_db']!r} is one of the databases to rename; connect to "
                        "another one (PostgreSQL cannot rename the database a session is connected to)")
    if p["wait_timeout"] < 0:
        problems.append("wait_timeout cannot be negative")
    if p["record_path"] is not None and not os.path.isabs(p["record_path"]):
        problems.append(f"record_path must be an absolute path, not {p['record_path']!r}")
    lock_ms = "0"
    try:
        lock_ms = str(int(round(to_seconds(p["lock_timeout"]) * 1000)))
    except ValueError as exc:
        problems.append(f"lock_timeout: {exc}")
    problems = [x for x in problems if x]
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    return lock_ms


def first_line(exc: BaseException, params: dict[str, Any]) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__, params)


def sessions(conn: Any, names: list[str]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(SESSIONS_SQL, [names]).fetchall()]


def terminate(conn: Any, names: list[str], timeout: float) -> tuple[list[int], list[int]]:
    """End every other session of the databases: (pids terminated, pids still there after timeout)."""
    done = [r["pid"] for r in conn.execute(TERMINATE_SQL, [names]).fetchall() if r["terminated"]]
    deadline = time.monotonic() + timeout
    while True:
        left = [s["pid"] for s in sessions(conn, names)]
        if not left or time.monotonic() >= deadline:
            return done, left
        time.sleep(0.1)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    live, replacement, keep_as = p["live"], p["replacement"], p["keep_as"]
    result: dict[str, Any] = {"changed": False, "live": live, "replacement": replacement, "keep_as": keep_as,
                              "swapped": False}
    lock_ms = check_options(module, result)

    conn, err = connect(module, dbname=p["maintenance_db"], autocommit=True)
    if err:
        module.fail_json(msg=err, **result)
    try:
        run(module, result, conn, lock_ms)
    except SwapFailure as exc:
        module.fail_json(msg=redact(str(exc), p), **result)
    except PsycopgError as exc:
        module.fail_json(msg=f"PostgreSQL error during the swap of {live}: {first_line(exc, p)}", **result)
    finally:
        conn.close()


def run(module: AnsibleModule, result: dict[str, Any], conn: Any, lock_ms: str) -> None:
    p = module.params
    live, replacement, keep_as = p["live"], p["replacement"], p["keep_as"]
    found = {r["datname"]: {"oid": r["oid"], "allow_connections": r["allow_connections"]}
             for r in conn.execute(DATABASES_SQL, [[live, replacement, keep_as]]).fetchall()}
    result["databases"] = found
    try:
        state = swap_state(live, replacement, keep_as, set(found))
    except ValueError as exc:
        raise SwapFailure(str(exc)) from exc
    result["state"] = state
    if state == DONE:
        result.update(statements=[], sessions=[],
                      msg=f"nothing to do: {replacement} no longer exists and {keep_as} does (the swap was done)")
        if module.check_mode:
            result["would_terminate"] = []
        module.exit_json(**result)

    pair = [live, replacement]
    allow = {name: found[name]["allow_connections"] for name in pair}
    for name in pair:
        if not allow[name]:
            module.warn(f"database {name} does not allow connections (datallowconn false), and will not after the "
                        "swap either; an interrupted swap leaves it so - ALTER DATABASE ... ALLOW_CONNECTIONS true")
    prepared = conn.execute(PREPARED_SQL, [pair]).fetchall()
    if prepared:
        raise SwapFailure("prepared transactions block the rename: " + ", ".join(
            f"{r['gid']} in {r['database']}" for r in prepared) + "; COMMIT PREPARED or ROLLBACK PREPARED them first")
    plan = swap_statements(live, replacement, keep_as, allow)
    shown = [s.as_string(conn) for s in plan.close] + ["BEGIN"] + [s.as_string(conn) for s in plan.swap] + ["COMMIT"]
    connected = sessions(conn, pair)
    result.update(statements=shown, sessions=connected, changed=True)
    if not p["terminate_sessions"] and connected:
        raise SwapFailure(f"{len(connected)} sessions are connected to {live} or {replacement} (pids "
                          + ", ".join(str(s["pid"]) for s in connected) + ") and terminate_sessions=false")
    if module.check_mode:
        result.update(would_terminate=[s["pid"] for s in connected],
                      msg=f"would rename {live} to {keep_as} and {replacement} to {live}"
                      + (f", terminating {len(connected)} sessions" if connected else ""))
        module.exit_json(**result)

    swap(module, result, conn, plan, pair, lock_ms)
    now = {r["datname"]: r["oid"] for r in conn.execute(DATABASES_SQL, [[live, keep_as]]).fetchall()}
    if now.get(live) != found[replacement]["oid"] or now.get(keep_as) != found[live]["oid"]:
        raise SwapFailure(f"after the commit {live} has oid {now.get(live)} and {keep_as} {now.get(keep_as)}, "
                          f"expected {found[replacement]['oid']} and {found[live]['oid']}")
    result["msg"] = (f"{live} is now the former {replacement}; the former {live} is kept as {keep_as}"
                     + (f" ({len(result['terminated'])} sessions terminated)" if result["terminated"] else ""))
    if p["record_path"]:
        write_record(module, result, conn, now[live], now[keep_as])
    module.exit_json(**result)


def write_record(module: AnsibleModule, result: dict[str, Any], conn: Any, oid: int, keep_as_oid: int) -> None:
    """Write the swap's record atomically (a temporary file in the same directory, renamed); warn if it fails."""
    p = module.params
    path = p["record_path"]
    try:
        identifier = conn.execute(SYSTEM_IDENTIFIER_SQL).fetchone()["system_identifier"]
        record = swap_record(live=p["live"], oid=oid, keep_as=p["keep_as"], keep_as_oid=keep_as_oid,
                             xid=result["xid"], system_identifier=identifier,
                             swapped_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             data=p["record_data"])
        fd, tmp = tempfile.mkstemp(prefix=".swap-record-", dir=os.path.dirname(os.path.abspath(path)))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except (OSError, PsycopgError) as exc:
        module.warn(f"the swap committed, but its record {path} could not be written ({first_line(exc, p)}): a "
                    f"later restore cannot tell that {p['live']} is unchanged since, and treats it as changed")
        return
    result["record"] = record


def swap(module: AnsibleModule, result: dict[str, Any], conn: Any, plan: Any, pair: list[str], lock_ms: str) -> None:
    """Close, terminate, rename in one transaction; on any failure reopen both databases under their old names."""
    p = module.params
    result.update(terminated=[], attempts=0)
    committed = False
    try:
        # (1) Refuse new sessions first and commit that: terminating first would let a client reconnect
        # between its termination and the rename, which then fails on its new session.
        for statement in plan.close:
            conn.execute(statement)
        if not p["terminate_sessions"]:
            late = sessions(conn, pair)
            if late:
                raise SwapFailure(f"{len(late)} sessions connected to {' or '.join(pair)} meanwhile (pids "
                                  + ", ".join(str(s["pid"]) for s in late) + ") and terminate_sessions=false")
        for attempt in range(1, ATTEMPTS + 1):
            result["attempts"] = attempt
            # (2) End who is still there (and, on a retry, a session that was half-way in when (1) committed).
            if p["terminate_sessions"]:
                done, left = terminate(conn, pair, p["wait_timeout"])
                result["terminated"] += done
                if left:
                    module.warn(f"pids {', '.join(map(str, left))} still connected after {p['wait_timeout']:g}s")
            # (3) Both renames and the connections allowed again commit together, or neither does.
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", [lock_ms])
                    for statement in plan.swap:
                        conn.execute(statement)
                    result["xid"] = int(conn.execute(XID_SQL[conn.info.server_version >= 130000]).fetchone()["xid"])
                committed = True
                result["swapped"] = True
                return
            except pg_errors.ObjectInUse as exc:
                # PostgreSQL waited 5 s for a session to leave; end it and try again
                if attempt == ATTEMPTS or not p["terminate_sessions"]:
                    raise SwapFailure(f"the rename failed {attempt} times: {first_line(exc, p)}") from exc
            except pg_errors.LockNotAvailable as exc:
                raise SwapFailure(f"the rename waited longer than lock_timeout {p['lock_timeout']} for its lock: "
                                  f"{first_line(exc, p)}; nothing was renamed") from exc
    finally:
        if not committed:
            reopen(module, conn, plan)


def reopen(module: AnsibleModule, conn: Any, plan: Any) -> None:
    """Give both databases back the connections they allowed before; warn (never raise over the cause) if not."""
    fresh = None
    if plan.reopen and (conn.closed or conn.broken):
        fresh, err = connect(module, dbname=module.params["maintenance_db"], autocommit=True)
        if err:
            module.warn(f"could not reconnect to allow connections again after the failed swap: {err}")
            return
    try:
        for statement in plan.reopen:
            try:
                (fresh or conn).execute(statement)
            except PsycopgError as exc:
                module.warn(f"could not run {statement.as_string(None)} after the failed swap; run it by hand: "
                            f"{first_line(exc, module.params)}")
    finally:
        if fresh is not None:
            fresh.close()


if __name__ == "__main__":
    main()
