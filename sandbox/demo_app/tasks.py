# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What each job type does. Raising JobError sends the job to the failed list;
psycopg.OperationalError means "database unreachable, try again later"."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from demo_app import clients, seed
from demo_app.config import Config
from demo_app.jobs import Job

INGEST_BATCH = 5  # new tenders per ingest job

_INSERT_TENDER = (
    "INSERT INTO tenders (reference, title, buyer, country, cpv_code, value_eur,"
    " publication_date, deadline, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    # A job re-run after a crash must not fail on its own earlier rows.
    " ON CONFLICT (reference) DO NOTHING"
)


class JobError(Exception):
    """The job itself is bad or failed; retrying as is would not help."""


def ingest(cfg: Config, job: Job) -> str:
    now = datetime.now(timezone.utc)
    rows = seed.ingest_tenders(now, job.id, INGEST_BATCH)
    with clients.pg_connect(cfg, "demo_app-worker") as conn, conn.transaction():
        added = 0
        with conn.cursor() as cur:
            for row in rows:
                cur.execute(_INSERT_TENDER, row)
                added += max(cur.rowcount, 0)
        # now() is the transaction start, clock_timestamp() the real end: both
        # from the database clock, which is what health measures age against.
        conn.execute(
            "INSERT INTO ingest_runs (job_id, started_at, finished_at, status, tenders_added)"
            " VALUES (%s, now(), clock_timestamp(), 'success', %s)",
            (job.id, added),
        )
        conn.execute(
            "INSERT INTO events (event_type, payload) VALUES ('ingest.completed', %s::jsonb)",
            (json.dumps({"job_id": job.id, "tenders_added": added}),),
        )
    return f"ingested {added} tenders"


def run(cfg: Config, job: Job) -> str:
    """Execute one job and return a short summary for the log."""
    if job.type == "ingest":
        return ingest(cfg, job)
    if job.type == "fail":
        raise JobError("job type 'fail' always fails (test job)")
    raise JobError(f"unknown job type {job.type!r}")
