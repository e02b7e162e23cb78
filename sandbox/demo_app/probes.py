# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Live checks of PostgreSQL and Redis, reduced to plain values for health/metrics.

Each probe opens a fresh PostgreSQL connection on purpose: a pooled connection
would keep reporting "ok" for a database that was dropped or restored behind
our back, and health must reflect the real state.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
import redis

from demo_app import clients, schema
from demo_app.config import Config

STATEMENT_TIMEOUT_MS = 2000


@dataclass(frozen=True)
class DatabaseProbe:
    error: str | None = None  # None means reachable and schema readable
    last_ingest: datetime | None = None
    ingest_age_seconds: float | None = None
    tenders_total: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RedisProbe:
    error: str | None = None
    waiting: int | None = None
    active: int | None = None
    failed: int | None = None
    processed: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def probe_database(cfg: Config) -> DatabaseProbe:
    try:
        with clients.pg_connect(cfg, "demo_app-health") as conn:
            # A table locked by a restore must not hang the health endpoint.
            conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            last, age = conn.execute(schema.LAST_INGEST_SQL).fetchone() or (None, None)
            total = conn.execute("SELECT count(*) FROM tenders").fetchone()
    except psycopg.Error as exc:
        return DatabaseProbe(error=clients.short_error(exc))
    return DatabaseProbe(
        last_ingest=last,
        ingest_age_seconds=None if age is None else max(0.0, float(age)),
        tenders_total=int(total[0]) if total else 0,
    )


def probe_redis(client: redis.Redis, cfg: Config) -> RedisProbe:
    keys = cfg.keys
    try:
        # One round trip; MULTI/EXEC keeps the counts consistent with each other.
        pipe = client.pipeline(transaction=True)
        pipe.llen(keys.waiting)
        pipe.llen(keys.active)
        pipe.llen(keys.failed)
        pipe.get(keys.processed)
        waiting, active, failed, processed = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        return RedisProbe(error=clients.short_error(exc))
    return RedisProbe(
        waiting=int(waiting), active=int(active), failed=int(failed),
        processed=int(processed or 0),
    )
