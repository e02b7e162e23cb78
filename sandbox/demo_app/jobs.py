# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Job records as stored in the Redis lists, and how to enqueue them."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import redis

from demo_app.config import QueueKeys

# "fail" exists so tests and runbooks can fill the failed list on purpose.
JOB_TYPES = frozenset({"ingest", "fail"})


class JobDecodeError(ValueError):
    """A list entry is not a valid job record."""


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    enqueued_at: str
    attempts: int = 0


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_job(job_type: str) -> Job:
    if job_type not in JOB_TYPES:
        raise ValueError(f"unknown job type {job_type!r}")
    return Job(id=uuid.uuid4().hex, type=job_type, enqueued_at=utc_now_iso())


def encode(job: Job, **extra: object) -> str:
    # Sorted keys make the payload byte-stable, which LREM relies on.
    return json.dumps({**asdict(job), **extra}, sort_keys=True, separators=(",", ":"))


def decode(raw: str) -> Job:
    """Parse a list entry; extra keys (error, failed_at) are ignored so a
    failed job pushed back to waiting by an operator still decodes."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise JobDecodeError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JobDecodeError("not a JSON object")
    try:
        job = Job(
            id=str(data["id"]),
            type=str(data["type"]),
            enqueued_at=str(data["enqueued_at"]),
            attempts=int(data.get("attempts", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobDecodeError(f"missing or bad field: {exc}") from None
    return job


def enqueue(client: redis.Redis, keys: QueueKeys, job: Job) -> None:
    # LPUSH here + right-hand pop in the worker = FIFO.
    client.lpush(keys.waiting, encode(job))
