# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connections to PostgreSQL and Redis with short timeouts and no hidden retries.

Health checks must answer quickly and truthfully when a dependency is dead,
so nothing here retries: callers decide whether and when to try again.
"""
from __future__ import annotations

import psycopg
import redis
from psycopg.rows import TupleRow
from redis.backoff import NoBackoff
from redis.retry import Retry

from demo_app.config import Config

CONNECT_TIMEOUT = 2  # seconds, for both PostgreSQL and Redis


def pg_connect(cfg: Config, app_name: str) -> psycopg.Connection[TupleRow]:
    # application_name lets runbooks spot our sessions in pg_stat_activity.
    return psycopg.connect(
        cfg.pg_dsn, connect_timeout=CONNECT_TIMEOUT, application_name=app_name
    )


def redis_client(cfg: Config, socket_timeout: float = CONNECT_TIMEOUT) -> redis.Redis:
    # redis-py >= 6 retries with backoff by default, which would make a dead
    # Redis look like a hang; Retry(NoBackoff(), 0) means "fail at once".
    return redis.Redis.from_url(
        cfg.redis_url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=socket_timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def short_error(exc: BaseException, limit: int = 160) -> str:
    """First line of an exception message, bounded, for health output and logs."""
    text = " ".join(str(exc).strip().splitlines()[:1]).strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
