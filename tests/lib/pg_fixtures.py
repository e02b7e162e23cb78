# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scratch databases of a test's own on a target's PostgreSQL, through the target's admin login.

The sandbox and the fleet are shared: a test creates, fills and drops only the databases it names, and the
admin password travels in the environment of the tools it runs (password_env), never on their command line.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from tests.conftest import Target


def connect(target: Target, dbname: str) -> psycopg.Connection:
    env = target.env
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True,
                           application_name="runbook.ops-tests")


def drop(target: Target, dbname: str) -> None:
    with connect(target, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def recreate(target: Target, dbname: str, statements: Iterable[Any] = ()) -> None:
    """dbname dropped if it is there, created empty, then the statements run in it."""
    drop(target, dbname)
    with connect(target, "postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with connect(target, dbname) as conn:
        for statement in statements:
            conn.execute(statement)


def user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every ordinary table outside the system schemas, as (schema, name)."""
    return conn.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                        "AND n.nspname !~ '^pg_toast'").fetchall()


def password_env(target: Target) -> dict[str, str]:
    """os.environ plus PGPASSWORD, for pg_dump, pg_restore and pgbench as the admin login."""
    return {**os.environ, "PGPASSWORD": target.env["RUNBOOK_PG_ADMIN_PASSWORD"]}
