# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m demo_app.worker`: consume the reliable queue (layout in the package
docstring). SIGTERM/SIGINT let the current job finish, then the worker exits 0.
Redis or PostgreSQL outages are waited out with capped exponential backoff.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import cast

import psycopg
import redis

from demo_app import clients, jobs, logs, tasks
from demo_app.config import Config, ConfigError, from_env

log = logging.getLogger("demo_app.worker")

POP_TIMEOUT = 1  # seconds; bounds how long a stop request waits
HEARTBEAT_TTL = 30  # seconds; renewed on every loop turn, so only outlives a dead worker
REDIS_ERRORS = (redis.RedisError, OSError)


class Backoff:
    """Capped exponential delays: 0.5, 1, 2, 4, 8, 10, 10, ..."""

    def __init__(self, first: float = 0.5, cap: float = 10.0) -> None:
        self.first, self.cap, self._next = first, cap, first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    @property
    def failing(self) -> bool:
        return self._next != self.first

    def reset(self) -> None:
        self._next = self.first


class Worker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.keys = cfg.keys
        # The socket timeout must outlast the blocking pop.
        self.redis = clients.redis_client(cfg, socket_timeout=POP_TIMEOUT + 5)
        self.heartbeat_key = self.keys.worker(f"{socket.gethostname()}-{os.getpid()}")
        self.stopping = False
        self.redis_backoff = Backoff()
        self.pg_backoff = Backoff()

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("received %s: finishing current job, then exiting",
                     signal.Signals(signum).name)
        self.stopping = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def run(self) -> int:
        log.info("worker started queue=%s version=%s", self.cfg.queue, self.cfg.version)
        next_orphan_check = 0.0
        while not self.stopping:
            try:
                self.redis.set(self.heartbeat_key, jobs.utc_now_iso(), ex=HEARTBEAT_TTL)
                # Here, between jobs, this worker owns nothing in active.
                if time.monotonic() >= next_orphan_check:
                    self.requeue_orphans()
                    next_orphan_check = time.monotonic() + HEARTBEAT_TTL
                raw = self.redis.blmove(self.keys.waiting, self.keys.active, POP_TIMEOUT,
                                        "RIGHT", "LEFT")
            except REDIS_ERRORS as exc:
                self.wait_out("redis", self.redis_backoff, exc)
                continue
            self.recovered("redis", self.redis_backoff)
            if raw is not None:
                self.process(cast(str, raw))  # decode_responses=True: always str
        with contextlib.suppress(*REDIS_ERRORS):  # else it just expires
            self.redis.delete(self.heartbeat_key)
        log.info("worker stopped")
        return 0

    def wait_out(self, what: str, backoff: Backoff, exc: BaseException) -> None:
        delay = backoff.next()
        log.warning("%s unavailable (%s); retrying in %.1fs", what, clients.short_error(exc), delay)
        self.sleep(delay)

    @staticmethod
    def recovered(what: str, backoff: Backoff) -> None:
        if backoff.failing:
            log.info("%s reachable again", what)
        backoff.reset()

    def requeue_orphans(self) -> None:
        """Put back jobs a killed worker left in the active list, unless another
        worker is alive: its jobs in active may be in progress. Run at start and
        every HEARTBEAT_TTL, so a dead worker's jobs return once its heartbeat
        has expired."""
        if not self.redis.llen(self.keys.active):
            return
        others = [k for k in self.redis.scan_iter(match=f"{self.keys.workers}*")
                  if k != self.heartbeat_key]
        if others:
            return
        moved = 0
        while self.redis.lmove(self.keys.active, self.keys.waiting, "LEFT", "RIGHT") is not None:
            moved += 1
        if moved:
            log.warning("requeued %d job(s) left in %s", moved, self.keys.active)

    def process(self, raw: str) -> None:
        try:
            job = jobs.decode(raw)
        except jobs.JobDecodeError as exc:
            log.error("dropping malformed job to failed list: %s", exc)
            entry = json.dumps({"raw": raw, "error": str(exc), "failed_at": jobs.utc_now_iso()})
            self.settle(raw, lambda p: p.lpush(self.keys.failed, entry))
            return
        job = replace(job, attempts=job.attempts + 1)
        log.info("job %s type=%s attempt=%d started", job.id, job.type, job.attempts)
        try:
            summary = tasks.run(self.cfg, job)
        except psycopg.OperationalError as exc:
            # Database unreachable: not the job's fault, so it goes back to the
            # consuming end of waiting and runs again once PostgreSQL is back.
            self.settle(raw, lambda p: p.rpush(self.keys.waiting, jobs.encode(job)))
            self.wait_out("postgresql", self.pg_backoff, exc)
            return
        except Exception as exc:  # any other error is this job's failure
            reason = clients.short_error(exc)
            log.error("job %s type=%s failed: %s", job.id, job.type, reason)
            entry = jobs.encode(job, error=reason, failed_at=jobs.utc_now_iso())
            self.settle(raw, lambda p: p.lpush(self.keys.failed, entry))
            return
        self.recovered("postgresql", self.pg_backoff)
        self.settle(raw, lambda p: p.incr(self.keys.processed))
        log.info("job %s type=%s done: %s", job.id, job.type, summary)

    def settle(self, raw: str, then: Callable[[redis.client.Pipeline], object]) -> None:
        """Atomically remove `raw` from active and record the outcome.

        Retries through Redis outages; if asked to stop meanwhile, the job stays
        in active and requeue_orphans() puts it back later.
        """
        while True:
            try:
                pipe = self.redis.pipeline(transaction=True)
                pipe.lrem(self.keys.active, 1, raw)
                then(pipe)
                pipe.execute()
                return
            except REDIS_ERRORS as exc:
                if self.stopping:
                    log.warning("stopping with a job still in %s", self.keys.active)
                    return
                self.wait_out("redis", self.redis_backoff, exc)


def main() -> int:
    logs.setup("worker")
    try:
        cfg = from_env(os.environ)
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return 2
    worker = Worker(cfg)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    try:
        return worker.run()
    finally:
        worker.redis.close()


if __name__ == "__main__":
    sys.exit(main())
