# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m demo_app.migrate`: create the schema and seed empty tables.

Safe to run any number of times, also concurrently: everything happens in one
transaction under an advisory lock, and each table is seeded only when empty.
"""
from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from demo_app import clients, logs, schema, seed
from demo_app.config import ConfigError, from_env

# Arbitrary constant shared by all migrate runs, so two app hosts starting at
# once don't both create and seed.
_LOCK_ID = 0x64656D6F  # "demo"


def _is_empty(conn: psycopg.Connection[TupleRow], table: str) -> bool:
    query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return bool(row and row[0])


def _seed(conn: psycopg.Connection[TupleRow], now: datetime) -> dict[str, int]:
    seeded: dict[str, int] = {}
    with conn.cursor() as cur:
        if _is_empty(conn, "tenders"):
            rows = seed.seed_tenders(now)
            cur.executemany(
                "INSERT INTO tenders (reference, title, buyer, country, cpv_code, value_eur,"
                " publication_date, deadline, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
            seeded["tenders"] = len(rows)
        if _is_empty(conn, "events"):
            events = seed.seed_events(now)
            cur.executemany(
                'INSERT INTO events (user_id, event_type, payload, "timestamp")'
                " VALUES (%s, %s, %s::jsonb, %s)",
                events,
            )
            seeded["events"] = len(events)
        if _is_empty(conn, "feature_flags"):
            cur.executemany(
                "INSERT INTO feature_flags (name, enabled, kill_switch, rollout_percentage,"
                " description) VALUES (%s, %s, %s, %s, %s)",
                seed.FEATURE_FLAGS,
            )
            seeded["feature_flags"] = len(seed.FEATURE_FLAGS)
        if _is_empty(conn, "ingest_runs"):
            runs = seed.seed_ingest_runs(now)
            cur.executemany(
                "INSERT INTO ingest_runs (job_id, started_at, finished_at, status, tenders_added)"
                " VALUES (%s, %s, %s, %s, %s)",
                runs,
            )
            seeded["ingest_runs"] = len(runs)
        if _is_empty(conn, "alembic_version"):
            cur.execute("INSERT INTO alembic_version (version_num) VALUES (%s)", (schema.REVISION,))
            seeded["alembic_version"] = 1
    return seeded


def migrate(conn: psycopg.Connection[TupleRow], now: datetime) -> dict[str, int]:
    """Apply DDL and seed; return how many rows were seeded per table."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        for statement in schema.DDL:
            conn.execute(statement)
        return _seed(conn, now)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app.migrate",
        description="Create the demo app schema (idempotent) and seed empty tables. "
        "Reads DEMO_PG_DSN from the environment.",
    )
    parser.parse_args(argv)
    log = logs.setup("migrate")
    try:
        cfg = from_env(os.environ, need_redis=False)
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    try:
        with clients.pg_connect(cfg, "demo_app-migrate") as conn:
            seeded = migrate(conn, datetime.now(timezone.utc))
    except psycopg.Error as exc:
        log.error("migration failed: %s", clients.short_error(exc))
        return 1
    if seeded:
        log.info("schema at revision %s; seeded %s", schema.REVISION,
                 ", ".join(f"{t}={n}" for t, n in seeded.items()))
    else:
        log.info("schema at revision %s; data already present, nothing seeded", schema.REVISION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
