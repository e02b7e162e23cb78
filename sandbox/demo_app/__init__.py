# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Demo app for the runbook.ops sandbox and test fleet.

A small tender-tracking service modelled on the apps our runbooks describe
(TenderPulse and friends): an HTTP API backed by PostgreSQL and a Redis job
queue consumed by a worker. It exists so restart, restore, health-check,
queue and feature-flag runbooks have something real to act on.

Dependencies: the standard library, psycopg 3 (>= 3.1) and redis-py (>= 4.3),
so Debian bookworm's python3-psycopg/python3-redis are enough. Redis >= 6.2
(for BLMOVE/LMOVE), PostgreSQL >= 13.

Entry points (run with PYTHONPATH pointing at the directory holding demo_app):
    python -m demo_app.migrate   create schema, seed empty tables (idempotent)
    python -m demo_app.server    HTTP API, see demo_app.server for routes
    python -m demo_app.worker    queue consumer

Environment (the only configuration):
    DEMO_PG_DSN              required; libpq conninfo or postgresql:// URL
    DEMO_REDIS_URL           required except for migrate; redis://[:pw@]host:port/db
    DEMO_HTTP_HOST           default 127.0.0.1
    DEMO_HTTP_PORT           default 8080
    DEMO_ADMIN_TOKEN         Bearer token of the admin endpoint; unset = endpoint 503
    DEMO_QUEUE               default "ingest"
    DEMO_INGEST_STALE_HOURS  default 6; older last ingest makes health "degraded"
    DEMO_VERSION             default "1.0.0"; reported by health and metrics

Reliable queue layout in Redis, for queue name Q (DEMO_QUEUE):
    demo:queue:Q:waiting    list; producers LPUSH job JSON
    demo:queue:Q:active     list; the worker BLMOVEs waiting -> active (RIGHT ->
                            LEFT), so a job is never only in the worker's memory
    demo:queue:Q:failed     list; failed jobs, with "error" and "failed_at" added
    demo:queue:Q:processed  string counter of successful jobs (INCR)
    demo:queue:Q:workers:<host>-<pid>
                            heartbeat of each live worker (SET EX 30, renewed
                            at least every few seconds); count them to see
                            how many workers are up
A job is {"id", "type", "enqueued_at", "attempts"}; "attempts" counts runs so
far. On success the job is LREMed from active and processed is incremented, in
one MULTI; on failure it moves from active to failed. If PostgreSQL is down the
job goes back to the consuming end of waiting. At start and every 30 s, a
worker that sees no other live heartbeat for its queue moves whatever is left
in active (by a killed worker) back to waiting; while other workers live it
leaves active alone, since those jobs may be in progress. To retry failed
jobs, move them from failed back to waiting.

Database tables: tenders, events, feature_flags, ingest_runs (the newest
successful run is last_ingest_time) and alembic_version (fixed revision,
demo_app.schema.REVISION).
"""
from __future__ import annotations

__version__ = "1.0.0"  # default DEMO_VERSION; sandbox/fleet.py reads this line
