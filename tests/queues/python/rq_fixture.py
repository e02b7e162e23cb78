# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real RQ jobs in every state, made and counted through RQ's own API; prints JSON.

    python rq_fixture.py populate <queue>      jobs in every state but started (see `hold`)
    python rq_fixture.py failed <queue> <n>    n failed jobs (flaky: they succeed once RQ_FLAKY_OK is set)
    python rq_fixture.py counts <queue>...     len(queue) and every registry's count
    python rq_fixture.py work <queue>          a real SimpleWorker in burst mode; the ids it finished
    python rq_fixture.py hold <queue>          enqueue a slow job at the front and run it in a real worker (started)

The key prefix is RQ's own RQ_KEY_PREFIX (set it before running); Redis from QUEUE_REDIS_URL.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from redis import Redis  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402
from rq.registry import (CanceledJobRegistry, DeferredJobRegistry, FailedJobRegistry, FinishedJobRegistry,  # noqa: E402
                         ScheduledJobRegistry, StartedJobRegistry)

import rq_jobs  # noqa: E402

REGISTRIES = {"started": StartedJobRegistry, "finished": FinishedJobRegistry, "failed": FailedJobRegistry,
              "deferred": DeferredJobRegistry, "scheduled": ScheduledJobRegistry, "canceled": CanceledJobRegistry}


def counts(conn: Redis, name: str) -> dict[str, int]:
    queue = Queue(name, connection=conn)
    out = {"waiting": len(queue)}
    for state, registry in REGISTRIES.items():
        out[state] = registry(queue=queue).count
    return out


def main() -> None:
    cmd, names = sys.argv[1], sys.argv[2:]
    conn = Redis.from_url(os.environ["QUEUE_REDIS_URL"])
    if cmd == "counts":
        print(json.dumps({name: counts(conn, name) for name in names}))
        return
    queue = Queue(names[0], connection=conn)
    if cmd == "failed":
        jobs = [queue.enqueue(rq_jobs.flaky, i) for i in range(int(names[1]))]
        SimpleWorker([queue], connection=conn).work(burst=True)
        print(json.dumps({"failed": [j.id for j in jobs]}))
        return
    if cmd == "work":
        registry = FinishedJobRegistry(queue=queue)
        before = set(registry.get_job_ids())
        SimpleWorker([queue], connection=conn).work(burst=True)
        print(json.dumps({"finished": sorted(set(registry.get_job_ids()) - before)}))
        return
    if cmd == "hold":
        job = queue.enqueue(rq_jobs.slow, 300, at_front=True, job_timeout=600)
        print(json.dumps({"holding": job.id}), flush=True)
        SimpleWorker([queue], connection=conn).work(burst=True, max_jobs=1)  # dequeues it, as a worker does
        return
    if cmd == "populate":
        for i in range(2):
            queue.enqueue(rq_jobs.ok, i)
        for i in range(3):
            queue.enqueue(rq_jobs.boom, i)
        SimpleWorker([queue], connection=conn).work(burst=True)
        failed = FailedJobRegistry(queue=queue)
        # an entry past its failure_ttl (RQ's count drops it) and one that never expires (score -1)
        expiring = queue.enqueue(rq_jobs.ok, 90)
        forever = queue.enqueue(rq_jobs.ok, 91)
        conn.lrem(queue.key, 0, expiring.id)
        conn.lrem(queue.key, 0, forever.id)
        failed.add(expiring, ttl=1, exc_string="expired")
        failed.add(forever, ttl=-1, exc_string="kept")
        queue.enqueue_in(timedelta(hours=1), rq_jobs.ok, 7)
        parent = queue.enqueue(rq_jobs.ok, 8)
        queue.enqueue(rq_jobs.ok, 9, depends_on=parent)
        queue.enqueue(rq_jobs.ok, 10).cancel()
        for i in range(3):
            queue.enqueue(rq_jobs.ok, 20 + i)
        time.sleep(2.1)  # let the ttl=1 entry expire (whole seconds, as RQ scores them)
        print(json.dumps({"ok": True}))
        return
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
