# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a backup records about its database, read in one snapshot: identity, tables and rows, migration revision.

pg_backup reads these inside the REPEATABLE READ transaction whose snapshot pg_dump uses (--snapshot), so the
row counts are exactly the rows in the dump. A restore can read the same figures from the restored database
and compare.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

try:
    from psycopg import Error as PsycopgError
    from psycopg import sql
except ImportError:  # the modules report a missing psycopg through pg.ensure_psycopg()
    PsycopgError = Exception
    sql = None

SQL_IDENTITY = """
SELECT current_database() AS database,
       current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num,
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier FROM pg_control_system())::text END AS system_identifier,
       pg_is_in_recovery() AS in_recovery"""

# The tables pg_dump writes data for: ordinary tables and partitions (a partitioned parent holds no rows of its
# own), outside the system schemas, and not members of an extension (CREATE EXTENSION recreates those).
SQL_TABLES = """
SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relpersistence = 'u' AS unlogged,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END AS rows_estimate
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY n.nspname, c.relname"""

# The migration tables an application may keep, the one first on its search_path first.
SQL_MIGRATION_TABLES = """
SELECT n.nspname AS schema, c.relname AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relname IN ('alembic_version', '_prisma_migrations') AND c.relkind IN ('r', 'p', 'v')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
 ORDER BY c.relname = 'alembic_version' DESC,
          array_position(current_schemas(false), n.nspname::text) NULLS LAST, n.nspname"""


def read_identity(conn: Any) -> dict[str, Any]:
    """Database, server version and the cluster's system identifier (None when the login may not read it)."""
    return dict(conn.execute(SQL_IDENTITY).fetchone())


def read_tables(conn: Any, row_counts: str, in_recovery: bool = False) -> list[dict[str, Any]]:
    """Every table with rows (count(*) with row_counts=exact, else None) and rows_estimate (pg_class.reltuples).

    count(*) FROM ONLY: a partition is counted once, as itself, never again through its parent. On a standby
    pg_dump leaves out unlogged tables' data (a standby has none), so they are left out here too.
    """
    tables = list_tables(conn, row_counts, in_recovery)
    if row_counts == "exact":
        count_rows(conn, tables)
    return tables


def list_tables(conn: Any, row_counts: str, in_recovery: bool = False) -> list[dict[str, Any]]:
    """The tables read_tables() returns, with rows still None: count_rows() fills them (pg_backup counts while
    pg_dump runs, in the snapshot pg_dump imported)."""
    tables = [dict(row) for row in conn.execute(SQL_TABLES).fetchall() if not (in_recovery and row["unlogged"])]
    for table in tables:
        table["rows"] = None
        if row_counts == "none":
            table["rows_estimate"] = None
    return tables


def count_rows(conn: Any, tables: list[dict[str, Any]], give_up: Callable[[], bool] | None = None) -> None:
    """Set every table's rows to its exact count(*) FROM ONLY, in conn's transaction (its snapshot).

    give_up() is asked before each table: pg_backup stops counting once pg_dump has failed.
    """
    for table in tables:
        if give_up and give_up():
            return
        query = sql.SQL("SELECT count(*) AS n FROM ONLY {}").format(sql.Identifier(table["schema"], table["name"]))
        table["rows"] = int(conn.execute(query).fetchone()["n"])


def manifest_tables(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tables as the manifest keeps them: no oids, which mean nothing once restored elsewhere."""
    return [{"schema": t["schema"], "name": t["name"], "rows": t["rows"], "rows_estimate": t["rows_estimate"]}
            for t in tables]


def read_migration(conn: Any) -> tuple[str | None, str | None, str | None]:
    """(tool, revision, warning): alembic_version.version_num, else the newest finished Prisma migration.

    Each read runs in a savepoint, so an unexpected table shape costs a warning, not the backup's transaction.
    """
    for table in conn.execute(SQL_MIGRATION_TABLES).fetchall():
        ident = sql.Identifier(table["schema"], table["name"])
        if table["name"] == "alembic_version":
            tool = "alembic"
            query = sql.SQL("SELECT version_num::text AS revision FROM {} ORDER BY 1").format(ident)
        else:
            tool = "prisma"
            query = sql.SQL("SELECT migration_name::text AS revision FROM {} "
                            "WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL "
                            "ORDER BY finished_at DESC, migration_name DESC LIMIT 1").format(ident)
        try:
            with conn.transaction():
                rows = conn.execute(query).fetchall()
        except PsycopgError as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return None, None, f"cannot read the migration revision from {table['schema']}.{table['name']}: {text}"
        # alembic keeps one row per head; a branched history has several
        revision = ",".join(r["revision"] for r in rows if r["revision"]) or None
        return tool, revision, None
    return None, None, None
