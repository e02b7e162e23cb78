# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A PostgreSQL 15 cluster of the sandbox's own: initdb under .sandbox, run as `postgres`."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from .common import PG_BIN, ROOT, STATE_DIR, SandboxError, State, log, pid_alive, port_open, run, wait_for

ADMIN_USER = "runbook_admin"
APP_USER = "app"
APP_DB = "app"


def cluster_dir() -> Path:
    """.sandbox/pg, or a path under /var/tmp when `postgres` cannot reach the checkout.

    PostgreSQL refuses to run as root, and a checkout under /root is not
    traversable by the postgres user.
    """
    link = STATE_DIR / "pg"
    if link.is_symlink() or link.exists():
        return link.resolve()
    if run(["test", "-x", str(ROOT)], user="postgres", check=False).returncode == 0:
        link.mkdir(parents=True)
        return link
    outside = Path("/var/tmp") / f"runbook-sandbox-{hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]}"
    outside.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    return outside


def pg(tool: str) -> str:
    path = PG_BIN / tool
    if not path.exists():
        raise SandboxError(f"{path} not found: apt-get install postgresql-15 (make setup does it)")
    return str(path)


def _base() -> Path:
    """The cluster's real path: the postgres user may not traverse a symlink under /root."""
    return (STATE_DIR / "pg").resolve()


def running() -> bool:
    base = _base()
    return base.exists() and pid_alive(base / "data" / "postmaster.pid") is not None


def up(state: State) -> None:
    port = state.port("postgres", running())
    base = cluster_dir()
    data, sock = base / "data", base / "run"
    if not (data / "PG_VERSION").exists():
        log("postgres: initdb")
        for d in (base, data, sock):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "postgres", "postgres")
        os.chmod(data, 0o700)
        run([pg("initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
             "--auth-local=peer", "--auth-host=scram-sha-256"], user="postgres")
    conf = (
        f"port = {port}\n"
        "listen_addresses = '127.0.0.1'\n"
        f"unix_socket_directories = '{sock}'\n"
        "shared_preload_libraries = 'pg_stat_statements'\n"
        "max_connections = 60\n"
        "logging_collector = on\n"
        "log_directory = 'log'\n"
    )
    auto = data / "postgresql.auto.conf.sandbox"
    if not auto.exists() or auto.read_text() != conf:
        # included from postgresql.conf, so that a port change needs no initdb
        run(["tee", str(auto)], user="postgres", input_text=conf)
        line = f"include_if_exists = '{auto}'\n"
        if line not in (data / "postgresql.conf").read_text():
            run(["tee", "-a", str(data / "postgresql.conf")], user="postgres", input_text=line)
        if running():
            run([pg("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "restart", "-l", str(base / "server.log")],
                user="postgres")
    if not running():
        log(f"postgres: starting on 127.0.0.1:{port}")
        run([pg("pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(base / "server.log"), "start"],
            user="postgres")
    wait_for("postgres", lambda: port_open(port))
    _roles(state, sock, port)


def _psql(sock: Path, port: int, sql: str, db: str = "postgres") -> str:
    # -U: peer authentication as postgres, whatever PGUSER the caller's shell exports (e.g. .sandbox/env's)
    return run([pg("psql"), "-h", str(sock), "-p", str(port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
                "-X", "-q", "-t", "-A"], user="postgres", input_text=sql).stdout.strip()


def _roles(state: State, sock: Path, port: int) -> None:
    """Logins and the app database; passwords set every time so state.json stays the truth."""
    admin_pw, app_pw = state.secret("pg_admin_password"), state.secret("pg_app_password")
    # Passwords are passed to psql on stdin through variables, never in argv.
    sql = f"""
\\set admin_pw '{admin_pw}'
\\set app_pw '{app_pw}'
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['{ADMIN_USER}', '{APP_USER}']) r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec
ALTER ROLE {ADMIN_USER} SUPERUSER PASSWORD :'admin_pw';
ALTER ROLE {APP_USER} NOSUPERUSER PASSWORD :'app_pw';
SELECT 'CREATE DATABASE {APP_DB} OWNER {APP_USER}'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{APP_DB}') \\gexec
"""
    _psql(sock, port, sql)
    _psql(sock, port, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;", db=APP_DB)


def down() -> None:
    base = _base()
    if running():
        log("postgres: stopping")
        run([pg("pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"], user="postgres")


def purge() -> None:
    base = STATE_DIR / "pg"
    if base.is_symlink():
        shutil.rmtree(base.resolve(), ignore_errors=True)
        base.unlink()
    elif base.exists():
        shutil.rmtree(base)
