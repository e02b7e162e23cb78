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

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import check_database_name
from ansible_collections.runbook.ops.plugins.module_utils.pg_swap import (
    SwapFailure, SwapOptions, execute, first_line, prepare,
)


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


def check_options(module: AnsibleModule, result: dict[str, Any]) -> SwapOptions:
    """The swap's options; fails the module on any invalid one, all problems in one message."""
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
    opts = SwapOptions(**names, maintenance_db=p["maintenance_db"], terminate_sessions=p["terminate_sessions"],
                       wait_timeout=p["wait_timeout"], lock_timeout=p["lock_timeout"], record_path=p["record_path"],
                       record_data=p["record_data"])
    try:
        opts.lock_ms()
    except ValueError as exc:
        problems.append(f"lock_timeout: {exc}")
    problems = [x for x in problems if x]
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    return opts


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    live, replacement, keep_as = p["live"], p["replacement"], p["keep_as"]
    result: dict[str, Any] = {"changed": False, "live": live, "replacement": replacement, "keep_as": keep_as,
                              "swapped": False}
    opts = check_options(module, result)

    conn, err = connect(module, dbname=p["maintenance_db"], autocommit=True)
    if err:
        module.fail_json(msg=err, **result)
    try:
        run(module, result, conn, opts)
    except SwapFailure as exc:
        module.fail_json(msg=redact(str(exc), p), **result)
    except PsycopgError as exc:
        module.fail_json(msg=f"PostgreSQL error during the swap of {live}: {first_line(exc, p)}", **result)
    finally:
        conn.close()


def run(module: AnsibleModule, result: dict[str, Any], conn: Any, opts: SwapOptions) -> None:
    plan = prepare(module, conn, opts, result)
    if plan is None:
        result["msg"] = (f"nothing to do: {opts.replacement} no longer exists and {opts.keep_as} does "
                         "(the swap was done)")
        if module.check_mode:
            result["would_terminate"] = []
        module.exit_json(**result)
    if module.check_mode:
        connected = result["sessions"]
        result.update(would_terminate=[s["pid"] for s in connected],
                      msg=f"would rename {opts.live} to {opts.keep_as} and {opts.replacement} to {opts.live}"
                      + (f", terminating {len(connected)} sessions" if connected else ""))
        module.exit_json(**result)
    execute(module, conn, opts, plan, result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
