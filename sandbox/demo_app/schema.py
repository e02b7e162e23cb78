# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Database schema of the demo app, written so that applying it twice is a no-op."""
from __future__ import annotations

# Fixed Alembic-style revision: backup/restore runbooks read it from
# alembic_version to check that a restored dump matches the code.
REVISION = "3f2a9c1d7b40"

TABLES = ("tenders", "events", "feature_flags", "ingest_runs", "alembic_version")

DDL: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS tenders (
        id               bigserial PRIMARY KEY,
        reference        text NOT NULL UNIQUE,
        title            text NOT NULL,
        buyer            text NOT NULL,
        country          char(2) NOT NULL,
        cpv_code         text NOT NULL,
        value_eur        numeric(14, 2),
        publication_date date NOT NULL,
        deadline         date,
        source           text NOT NULL DEFAULT 'TED',
        created_at       timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX IF NOT EXISTS idx_tenders_created_at ON tenders (created_at)",
    """
    CREATE TABLE IF NOT EXISTS events (
        id          bigserial PRIMARY KEY,
        user_id     uuid,
        event_type  text NOT NULL,
        payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
        "timestamp" timestamptz NOT NULL DEFAULT now()
    )
    """,
    'CREATE INDEX IF NOT EXISTS idx_events_user_ts ON events (user_id, "timestamp" DESC)',
    """
    CREATE TABLE IF NOT EXISTS feature_flags (
        name               text PRIMARY KEY,
        enabled            boolean NOT NULL DEFAULT false,
        kill_switch        boolean NOT NULL DEFAULT false,
        rollout_percentage integer NOT NULL DEFAULT 0
            CHECK (rollout_percentage BETWEEN 0 AND 100),
        description        text NOT NULL DEFAULT '',
        updated_at         timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS ingest_runs (
        id            bigserial PRIMARY KEY,
        job_id        text,
        started_at    timestamptz NOT NULL,
        finished_at   timestamptz,
        status        text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
        tenders_added integer NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX IF NOT EXISTS idx_ingest_runs_finished ON ingest_runs (finished_at)",
    # Same shape as Alembic's own table, so `alembic current`-style checks work.
    """
    CREATE TABLE IF NOT EXISTS alembic_version (
        version_num varchar(32) NOT NULL PRIMARY KEY
    )
    """,
)

# Health and metrics: the newest successful ingest drives last_ingest_time.
LAST_INGEST_SQL = """
    SELECT max(finished_at),
           extract(epoch FROM now() - max(finished_at))::float8
      FROM ingest_runs
     WHERE status = 'success'
"""
