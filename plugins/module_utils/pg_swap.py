# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Put one database in the place of another by renaming both in one transaction, keeping the old one under a
third name: the work of runbook.ops.pg_database_swap, and of runbook.ops.pg_restore's swap after it verified a
restore (one module call fewer for restore.yml). The order and its reasons are in pg_database_swap's docs."""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import (
    DONE,
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


@dataclass
class SwapOptions:
    """What to swap, and how (pg_database_swap's options of the same names)."""

    live: str
    replacement: str
    keep_as: str
    maintenance_db: str = "postgres"
    terminate_sessions: bool = True
    wait_timeout: float = 10
    lock_timeout: str = "10s"
    record_path: str | None = None
    record_data: dict[str, Any] = field(default_factory=dict)

    def lock_ms(self) -> str:
        """lock_timeout in milliseconds, for set_config; ValueError when it is no duration."""
        return str(int(round(to_seconds(self.lock_timeout) * 1000)))


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


def prepare(module: AnsibleModule, conn: Any, opts: SwapOptions, result: dict[str, Any]) -> Any | None:
    """Read the three databases and what would block the swap, into result (databases, state, statements,
    sessions, changed); the plan to execute(), or None when the swap was done already. SwapFailure when it cannot
    be done (another state, prepared transactions, sessions with terminate_sessions=false)."""
    live, replacement, keep_as = opts.live, opts.replacement, opts.keep_as
    found = {r["datname"]: {"oid": r["oid"], "allow_connections": r["allow_connections"]}
             for r in conn.execute(DATABASES_SQL, [[live, replacement, keep_as]]).fetchall()}
    result["databases"] = found
    try:
        state = swap_state(live, replacement, keep_as, set(found))
    except ValueError as exc:
        raise SwapFailure(str(exc)) from exc
    result["state"] = state
    if state == DONE:
        result.update(statements=[], sessions=[])
        return None
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
    if not opts.terminate_sessions and connected:
        raise SwapFailure(f"{len(connected)} sessions are connected to {live} or {replacement} (pids "
                          + ", ".join(str(s["pid"]) for s in connected) + ") and terminate_sessions=false")
    return plan


def execute(module: AnsibleModule, conn: Any, opts: SwapOptions, plan: Any, result: dict[str, Any]) -> None:
    """Close, terminate, rename in one transaction (result: swapped, xid, terminated, attempts), check the oids
    after the commit, write the record (opts.record_path); SwapFailure when it did not happen as planned."""
    live, keep_as, found = opts.live, opts.keep_as, result["databases"]
    _swap(module, result, conn, plan, opts)
    now = {r["datname"]: r["oid"] for r in conn.execute(DATABASES_SQL, [[live, keep_as]]).fetchall()}
    if now.get(live) != found[opts.replacement]["oid"] or now.get(keep_as) != found[live]["oid"]:
        raise SwapFailure(f"after the commit {live} has oid {now.get(live)} and {keep_as} {now.get(keep_as)}, "
                          f"expected {found[opts.replacement]['oid']} and {found[live]['oid']}")
    result["msg"] = (f"{live} is now the former {opts.replacement}; the former {live} is kept as {keep_as}"
                     + (f" ({len(result['terminated'])} sessions terminated)" if result["terminated"] else ""))
    if opts.record_path:
        _write_record(module, result, conn, opts, now[live], now[keep_as])


def _write_record(module: AnsibleModule, result: dict[str, Any], conn: Any, opts: SwapOptions, oid: int,
                  keep_as_oid: int) -> None:
    """Write the swap's record atomically (a temporary file in the same directory, renamed); warn if it fails."""
    path = opts.record_path
    try:
        identifier = conn.execute(SYSTEM_IDENTIFIER_SQL).fetchone()["system_identifier"]
        record = swap_record(live=opts.live, oid=oid, keep_as=opts.keep_as, keep_as_oid=keep_as_oid,
                             xid=result["xid"], system_identifier=identifier,
                             swapped_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             data=opts.record_data, previous=_previous_record(path))
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
        module.warn(f"the swap committed, but its record {path} could not be written "
                    f"({first_line(exc, module.params)}): a later restore cannot tell that {opts.live} is unchanged "
                    "since, and treats it as changed")
        return
    result["record"] = record


def _previous_record(path: str) -> Any:
    """The record the new one replaces (its safety copies' ledger is carried over), or None when unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _swap(module: AnsibleModule, result: dict[str, Any], conn: Any, plan: Any, opts: SwapOptions) -> None:
    """Close, terminate, rename in one transaction; on any failure reopen both databases under their old names."""
    pair, lock_ms = [opts.live, opts.replacement], opts.lock_ms()
    result.update(terminated=[], attempts=0)
    committed = False
    try:
        # (1) Refuse new sessions first and commit that: terminating first would let a client reconnect
        # between its termination and the rename, which then fails on its new session.
        for statement in plan.close:
            conn.execute(statement)
        if not opts.terminate_sessions:
            late = sessions(conn, pair)
            if late:
                raise SwapFailure(f"{len(late)} sessions connected to {' or '.join(pair)} meanwhile (pids "
                                  + ", ".join(str(s["pid"]) for s in late) + ") and terminate_sessions=false")
        for attempt in range(1, ATTEMPTS + 1):
            result["attempts"] = attempt
            # (2) End who is still there (and, on a retry, a session that was half-way in when (1) committed).
            if opts.terminate_sessions:
                done, left = terminate(conn, pair, opts.wait_timeout)
                result["terminated"] += done
                if left:
                    module.warn(f"pids {', '.join(map(str, left))} still connected after {opts.wait_timeout:g}s")
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
                if attempt == ATTEMPTS or not opts.terminate_sessions:
                    raise SwapFailure(f"the rename failed {attempt} times: {first_line(exc, module.params)}") from exc
            except pg_errors.LockNotAvailable as exc:
                raise SwapFailure(f"the rename waited longer than lock_timeout {opts.lock_timeout} for its lock: "
                                  f"{first_line(exc, module.params)}; nothing was renamed") from exc
    finally:
        if not committed:
            _reopen(module, conn, plan, opts)


def _reopen(module: AnsibleModule, conn: Any, plan: Any, opts: SwapOptions) -> None:
    """Give both databases back the connections they allowed before; warn (never raise over the cause) if not."""
    fresh = None
    if plan.reopen and (conn.closed or conn.broken):
        fresh, err = connect(module, dbname=opts.maintenance_db, autocommit=True)
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
