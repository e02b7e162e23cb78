# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Environment contract and Redis key names shared by server, worker and migrate.

The environment is the only configuration channel: the sandbox and the fleet
set these variables and nothing else. See the package docstring for the list.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from demo_app import __version__

DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8080
DEFAULT_QUEUE = "ingest"
DEFAULT_STALE_HOURS = 6.0  # seed runbook: "Tenders ingested < 6 hours ago"
DEFAULT_VERSION = __version__

# Queue names end up inside Redis keys; keep them free of ':' and spaces.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class ConfigError(ValueError):
    """A DEMO_* variable is missing or malformed."""


@dataclass(frozen=True)
class QueueKeys:
    """Redis keys of one reliable queue (layout in the package docstring)."""

    waiting: str
    active: str
    failed: str
    processed: str
    workers: str  # prefix of per-worker heartbeat keys

    def worker(self, worker_id: str) -> str:
        return f"{self.workers}{worker_id}"


def queue_keys(queue: str) -> QueueKeys:
    prefix = f"demo:queue:{queue}"
    return QueueKeys(
        waiting=f"{prefix}:waiting",
        active=f"{prefix}:active",
        failed=f"{prefix}:failed",
        processed=f"{prefix}:processed",
        workers=f"{prefix}:workers:",
    )


@dataclass(frozen=True)
class Config:
    # Secrets are kept out of repr() so a logged Config never leaks them.
    pg_dsn: str = field(repr=False)
    redis_url: str = field(repr=False)
    admin_token: str = field(default="", repr=False)
    http_host: str = DEFAULT_HTTP_HOST
    http_port: int = DEFAULT_HTTP_PORT
    queue: str = DEFAULT_QUEUE
    stale_hours: float = DEFAULT_STALE_HOURS
    version: str = DEFAULT_VERSION

    @property
    def keys(self) -> QueueKeys:
        return queue_keys(self.queue)

    @property
    def stale_seconds(self) -> float:
        return self.stale_hours * 3600.0


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def _port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"DEMO_HTTP_PORT must be an integer, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"DEMO_HTTP_PORT must be in 1..65535, got {port}")
    return port


def _stale_hours(raw: str) -> float:
    try:
        hours = float(raw)
    except ValueError:
        raise ConfigError(f"DEMO_INGEST_STALE_HOURS must be a number, got {raw!r}") from None
    # Rejects nan/inf too: neither makes a usable threshold.
    if not 0 < hours < 10_000:
        raise ConfigError(f"DEMO_INGEST_STALE_HOURS must be in (0, 10000), got {raw!r}")
    return hours


def _redis_url(raw: str) -> str:
    # Never echo the URL itself: it may carry the Redis password.
    if urlsplit(raw).scheme not in _REDIS_SCHEMES:
        raise ConfigError("DEMO_REDIS_URL must start with redis://, rediss:// or unix://")
    return raw


def _queue(raw: str) -> str:
    if not _QUEUE_NAME.match(raw):
        raise ConfigError(f"DEMO_QUEUE must match {_QUEUE_NAME.pattern}, got {raw!r}")
    return raw


def from_env(env: Mapping[str, str], *, need_redis: bool = True) -> Config:
    """Build a Config from DEMO_* variables; raise ConfigError on bad input.

    migrate passes need_redis=False: it only touches PostgreSQL.
    """
    pg_dsn = _required(env, "DEMO_PG_DSN")
    redis_url = env.get("DEMO_REDIS_URL", "").strip()
    if need_redis or redis_url:
        redis_url = _redis_url(_required(env, "DEMO_REDIS_URL"))
    return Config(
        pg_dsn=pg_dsn,
        redis_url=redis_url,
        admin_token=env.get("DEMO_ADMIN_TOKEN", "").strip(),
        http_host=env.get("DEMO_HTTP_HOST", "").strip() or DEFAULT_HTTP_HOST,
        http_port=_port(env.get("DEMO_HTTP_PORT", "").strip() or str(DEFAULT_HTTP_PORT)),
        queue=_queue(env.get("DEMO_QUEUE", "").strip() or DEFAULT_QUEUE),
        stale_hours=_stale_hours(
            env.get("DEMO_INGEST_STALE_HOURS", "").strip() or str(DEFAULT_STALE_HOURS)
        ),
        version=env.get("DEMO_VERSION", "").strip() or DEFAULT_VERSION,
    )
