# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real client sessions on the sandbox PostgreSQL, for the tests of pg_sessions and playbooks/kill_queries.yml.

Other tests share the server, so a Sessions works only in databases and roles
of its own (scratch()) and only ever ends the sessions it opened, by pid and
database. The readers at the end parse the kill_queries role's plan and
report lines.
"""
from __future__ import annotations

import multiprocessing
import os
import pwd
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tests.lib.runner import PlaybookResult

PLAN_TASK = "Plan | sessions to end, one line each"
REPORT_TASK = "Report | sessions ended on this host"
SLEEP = "SELECT pg_sleep(600)"
# The pg_stat_activity columns pg_sessions selects on (besides the ages).
SELECTED_ON = ("usename", "datname", "application_name", "client_addr", "state", "backend_type", "query")


def _postgres_session(out: Any, host: str, port: str, dbname: str, application_name: str, query: str) -> None:
    """Child process: become the postgres OS user, connect over the Unix socket (peer) and run query."""
    # forked, not spawned: the interpreter lives under /root, which the postgres user cannot read
    pw = pwd.getpwnam("postgres")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    try:
        conn = psycopg.connect(host=host, port=port, dbname=dbname, user="postgres", autocommit=True,
                               application_name=application_name)
    except psycopg.Error as err:
        out.send(f"{type(err).__name__}: {err}")
        return
    out.send(conn.info.backend_pid)
    out.close()
    try:
        conn.execute(query)
    except psycopg.Error:
        pass  # ended, by the test or by the module under test: the parent reads pg_stat_activity


@dataclass
class Sessions:
    """The databases, the logins and every client session a test module opens."""

    env: dict[str, str]
    password: str
    db: str  # the database, role and application_name of a session unless told otherwise
    user: str
    application_name: str
    age: float  # how old wait_state() waits for the sessions to be, in seconds
    conns: list[psycopg.Connection] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: dict[int, BaseException] = field(default_factory=dict)
    procs: dict[int, multiprocessing.Process] = field(default_factory=dict)
    databases: set[str] = field(default_factory=set)  # every database scratch() made: the only ones we touch

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=self.env["PGHOST"], port=self.env["PGPORT"], dbname=dbname,
                               user=self.env["RUNBOOK_PG_ADMIN_USER"], password=self.env["RUNBOOK_PG_ADMIN_PASSWORD"],
                               autocommit=True, application_name=f"{self.application_name}_admin")

    @contextmanager
    def scratch(self, roles: Iterable[str], databases: Iterable[str] = ()) -> Iterator[Sessions]:
        """Our database (and the others given) and login roles, made fresh and dropped at the end."""
        roles, dbs = list(roles), [self.db, *databases]
        self.databases.update(dbs)
        with self.admin() as conn:
            for db in dbs:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(self.password)))
            for db in dbs:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        try:
            yield self
        finally:
            self.end_all()
            with self.admin() as conn:
                for db in dbs:
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
                for role in roles:
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    def connect(self, user: str | None = None, *, autocommit: bool = True, dbname: str | None = None,
                application_name: str | None = None) -> psycopg.Connection:
        conn = psycopg.connect(host=self.env["PGHOST"], port=self.env["PGPORT"], dbname=dbname or self.db,
                               user=user or self.user, password=self.password, autocommit=autocommit,
                               application_name=application_name or self.application_name)
        self.conns.append(conn)
        return conn

    def conn(self, pid: int) -> psycopg.Connection:
        """Our client connection to backend pid."""
        return next(c for c in self.conns if c.info.backend_pid == pid)

    def sleeper(self, user: str | None = None, *, query: str = SLEEP, **kw: Any) -> int:
        """A session running query (SELECT pg_sleep(600)); an error it raises lands in self.errors[pid]."""
        conn = self.connect(user, **kw)
        pid = conn.info.backend_pid

        def run() -> None:
            try:
                conn.execute(query)
            except BaseException as err:  # noqa: BLE001 - recorded for the test to check
                self.errors[pid] = err

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return pid

    def idle_in_transaction(self, user: str | None = None, *, aborted: bool = False,
                            **kw: Any) -> tuple[int, psycopg.Connection]:
        """A session that began a transaction and holds it, idle (or, aborted=True, idle after an error)."""
        conn = self.connect(user, autocommit=False, **kw)
        # the same query text either way (pg_stat_activity shows $1), so that only the state differs
        try:
            conn.execute("SELECT 1 / %s", [0 if aborted else 1])
        except psycopg.errors.DivisionByZero:
            pass
        return conn.info.backend_pid, conn

    def postgres_sleeper(self, *, query: str = SLEEP, dbname: str | None = None,
                         application_name: str | None = None, timeout: float = 10) -> int:
        """A session of the superuser postgres over the Unix socket (so without client address), running query.

        Peer authentication is the only way in as postgres, hence a child process
        running as the postgres OS user.
        """
        with self.admin() as conn:
            socket_dir = conn.execute("SHOW unix_socket_directories").fetchone()[0].split(",")[0].strip()
        ctx = multiprocessing.get_context("fork")
        got, out = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_postgres_session, daemon=True,
                           args=(out, socket_dir, self.env["PGPORT"], dbname or self.db,
                                 application_name or self.application_name, query))
        proc.start()
        out.close()
        with got:
            if not got.poll(timeout):
                proc.kill()
                raise AssertionError("the postgres session did not connect")
            pid = got.recv()
        if not isinstance(pid, int):
            proc.join(timeout)
            raise AssertionError(f"the postgres session did not connect: {pid}")
        self.procs[pid] = proc
        return pid

    def activity(self, pids: list[int]) -> dict[int, dict[str, Any]]:
        """pg_stat_activity's SELECTED_ON columns of those of pids that are sessions of ours."""
        cols = sql.SQL(", ").join(sql.SQL("host(client_addr) AS client_addr") if c == "client_addr"
                                  else sql.Identifier(c) for c in SELECTED_ON)
        with self.admin() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = cur.execute(sql.SQL("SELECT pid, {} FROM pg_stat_activity WHERE pid = ANY(%s) "
                                       "AND datname = ANY(%s)").format(cols),
                               [pids, sorted(self.databases)]).fetchall()
        return {r.pop("pid"): r for r in rows}

    def alive(self, pids: list[int]) -> set[int]:
        return set(self.activity(pids))

    def wait_state(self, pids: list[int], age: float | None = None, seconds: float = 10) -> None:
        """Wait until the sessions have been in their state (any pg_sessions can select) for age seconds."""
        age = self.age if age is None else age
        deadline = time.monotonic() + seconds
        with self.admin() as conn:
            while time.monotonic() < deadline:
                old = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) AND state IN "
                    "('active', 'idle in transaction', 'idle in transaction (aborted)') "
                    "AND clock_timestamp() - state_change > make_interval(secs => %s)",
                    [pids, age + 0.5]).fetchone()[0]
                if old == len(pids):
                    return
                time.sleep(0.2)
        raise AssertionError(f"sessions {pids} did not reach {age}s in their state")

    def end_all(self) -> None:
        """Terminate what is left of our sessions (by pid, never anyone else's), then close the clients."""
        pids = [c.info.backend_pid for c in self.conns if not c.closed] + list(self.procs)
        if pids:
            with self.admin() as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s) "
                             "AND datname = ANY(%s)", [pids, sorted(self.databases)])
        for thread in self.threads:
            thread.join(timeout=10)
        for proc in self.procs.values():
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        for conn in self.conns:
            conn.close()
        self.conns.clear()
        self.threads.clear()
        self.errors.clear()
        self.procs.clear()


def plan_pids(result: PlaybookResult, host: str) -> list[int]:
    """The pids of the plan's one line per session ("pid 4711 app@app ..."), sorted."""
    found = result.host_results(host, PLAN_TASK)
    assert found, result.stdout[-3000:]
    return sorted(int(m.group(1)) for line in found[0]["msg"][1:] for m in [re.match(r"pid (\d+) ", line)] if m)


def report_line(result: PlaybookResult, host: str) -> str:
    found = result.host_results(host, REPORT_TASK)
    assert found, result.stdout[-3000:]
    return found[0]["msg"]


def report_pids(result: PlaybookResult, host: str, verb: str) -> list[int]:
    """The pids of the report line "<host>: <verb> N sessions (pids a, b)", checking N."""
    m = re.fullmatch(rf"{host}: {verb} (\d+) sessions \(pids ([\d, ]+)\)", report_line(result, host))
    assert m, report_line(result, host)
    pids = sorted(int(p) for p in m.group(2).split(", "))
    assert len(pids) == int(m.group(1))
    return pids
