# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A throwaway PostgreSQL cluster of the tests' own, for what the shared servers must never go through.

Filling every connection or stopping the server would break the other tests running against the sandbox and
the fleet, so the tests that need it start this one: initdb and pg_ctl as the postgres OS user in a temporary
directory under /tmp, on 127.0.0.1 and a free port, trust authentication, small max_connections, fsync off.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.lib.throwaway import Server, free_port, local_inventory

BINDIR = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str) -> None:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *argv], text=True, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")


@dataclass(kw_only=True)
class Throwaway(Server):
    """A running throwaway cluster; superuser postgres without a password."""

    conns: list[Any] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def connect(self, user: str = "postgres", dbname: str = "postgres", **kw: Any) -> Any:
        conn = psycopg.connect(host="127.0.0.1", port=self.port, user=user, dbname=dbname, **kw)
        self.conns.append(conn)
        return conn

    def inventory(self, directory: Path, host: str = "throwaway-db") -> Path:
        """An inventory with one host in group postgres whose runbook_pg_* point at this cluster."""
        return local_inventory(directory, "postgres", host, {
            "runbook_pg_host": "127.0.0.1", "runbook_pg_port": self.port, "runbook_pg_user": "postgres",
            "runbook_pg_password": "", "runbook_pg_database": "postgres", "runbook_pg_sslmode": "disable"})

    def close_connections(self) -> None:
        for conn in self.conns:
            try:
                conn.close()
            except psycopg.Error:
                pass
        self.conns.clear()

    def stop(self) -> None:
        self.close_connections()
        if self.running:
            _as_postgres(str(BINDIR / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
            self.running = False


def start(max_connections: int = 10, preload_pg_stat_statements: bool = False) -> Throwaway:
    base = Path(tempfile.mkdtemp(prefix="runbook-pgtest-", dir="/tmp"))
    shutil.chown(base, "postgres", "postgres")
    port = free_port()
    _as_postgres(str(BINDIR / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                 "-E", "UTF8", "--locale", "C")
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} "
               f"-c max_connections={max_connections} -c superuser_reserved_connections=3 -c fsync=off")
    if preload_pg_stat_statements:
        options += " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
    _as_postgres(str(BINDIR / "pg_ctl"), "-D", str(base / "data"), "-o", options, "-l", str(base / "log"),
                 "-w", "-t", "30", "start")
    return Throwaway(base=base, port=port)
