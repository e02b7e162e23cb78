# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""queue_depth and queue_jobs on Sidekiq's documented Redis layout.

Ruby is not on these machines, so Sidekiq itself cannot make the jobs. The test writes the keys the way
Sidekiq 7's client and server do (Sidekiq::Client#atomic_push, JobRetry, DeadSet#kill, the heartbeat), with
their JSON payloads, under a redis-namespace of our own: `queues` set + LPUSH `queue:<name>`; `schedule`,
`retry`, `dead` sorted sets; `processes` set and each process's `busy`. The expected figures are the
definitions of Sidekiq's API (Queue#size, Queue#latency, Stats#scheduled_size/retry_size/dead_size,
Stats#workers_size), applied to what was written. No Sidekiq worker can run the retried jobs here; the test
checks the payload Sidekiq's fetcher would pop. Sandbox Redis, db 7, deleted afterwards.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.queues.harness import client, delete_keys, depth_task, four_runs, run_tasks, task_result, unique_prefix

pytestmark = pytest.mark.sandbox


def payload(queue: str, created: float, **extra: Any) -> dict[str, Any]:
    """Sidekiq::Client#normalize_item: what every job carries."""
    return {"retry": True, "queue": queue, "class": "AlertJob", "args": [secrets.randbelow(1000)],
            "jid": secrets.token_hex(12), "created_at": created, **extra}


@pytest.fixture
def sidekiq(sandbox) -> Iterator[dict[str, Any]]:
    ns = unique_prefix("sidekiq")
    conn = client(sandbox.env)
    now = time.time()

    def k(name: str) -> str:
        return f"{ns}:{name}"  # redis-namespace

    jobs: dict[str, list[dict[str, Any]]] = {"default": [], "mailers": [], "retry": [], "dead": []}
    for queue, count in (("default", 3), ("mailers", 2)):
        for i in range(count):
            # atomic_push: SADD queues, LPUSH queue:<name>; the first pushed is the oldest (120 s ago)
            job = payload(queue, now - 120 + i, enqueued_at=now - 120 + i)
            conn.sadd(k("queues"), queue)
            conn.lpush(k(f"queue:{queue}"), json.dumps(job))
            jobs[queue].append(job)
    conn.zadd(k("schedule"), {json.dumps(payload("default", now)): now + 3600})
    for i, queue in enumerate(("mailers", "mailers", "default")):
        job = payload(queue, now - 600, enqueued_at=now - 600, error_message="smtp down", error_class="Net::SMTPError",
                      failed_at=now - 300 + i, retry_count=2)
        conn.zadd(k("retry"), {json.dumps(job): now + 60 + i})
        jobs["retry"].append(job)
    for age_days in (30, 1):
        job = payload("mailers", now - age_days * 86400, failed_at=now - age_days * 86400, retry_count=25,
                      error_message="gone", error_class="RuntimeError")
        conn.zadd(k("dead"), {json.dumps(job): now - age_days * 86400})
        jobs["dead"].append(job)
    for identity, busy in (("web1:100:abc", 2), ("web1:101:def", 0)):
        conn.sadd(k("processes"), identity)
        conn.hset(k(identity), mapping={"busy": busy, "beat": now, "quiet": "false",
                                        "info": json.dumps({"hostname": "web1", "concurrency": 5})})
    try:
        yield {"ns": ns, "env": sandbox.env, "inventory": sandbox.inventory, "redis": conn, "jobs": jobs, "k": k}
    finally:
        delete_keys(conn, [f"{ns}:*"])
        conn.close()


def test_counts_follow_sidekiq_api(sidekiq: dict[str, Any]) -> None:
    conn, k = sidekiq["redis"], sidekiq["k"]
    run = run_tasks(sidekiq["env"], sidekiq["inventory"], [depth_task("depth", "sidekiq", sidekiq["ns"])])
    ours = task_result(run, "depth")
    # Sidekiq's API, by its definitions
    api = {q: conn.llen(k(f"queue:{q}")) for q in conn.smembers(k("queues"))}
    stats = {"scheduled": conn.zcard(k("schedule")), "retry": conn.zcard(k("retry")), "dead": conn.zcard(k("dead")),
             "busy": sum(int(conn.hget(k(p), "busy") or 0) for p in conn.smembers(k("processes")))}
    assert {q: e["counts"]["waiting"] for q, e in ours["queues"].items()} == api == {"default": 3, "mailers": 2}
    assert ours["global"] == stats == {"scheduled": 1, "retry": 3, "dead": 2, "busy": 2}
    # Queue#latency: now - enqueued_at of the job at the tail (the next one BRPOP takes)
    oldest = sidekiq["jobs"]["default"][0]
    assert ours["queues"]["default"]["oldest_waiting_job"] == oldest["jid"]
    assert 115 <= ours["queues"]["default"]["oldest_waiting_seconds"] < 600
    assert ours["verdict"] == "warning" and any("dead" in r for r in ours["reasons"])
    assert ours["round_trips"] == 2  # the queues and processes sets, then every count and the latencies


def test_fifty_queues_take_the_same_round_trips(sidekiq: dict[str, Any]) -> None:
    conn, k = sidekiq["redis"], sidekiq["k"]
    for i in range(50):
        conn.sadd(k("queues"), f"bulk{i:02}")
        jobs = [json.dumps(payload(f"bulk{i:02}", time.time(), enqueued_at=time.time())) for _n in range(i % 3 + 1)]
        conn.lpush(k(f"queue:bulk{i:02}"), *jobs)
    run = run_tasks(sidekiq["env"], sidekiq["inventory"], [depth_task("depth", "sidekiq", sidekiq["ns"], queues=["bulk*"])])
    ours = task_result(run, "depth")
    assert len(ours["queues"]) == 50 and ours["round_trips"] == 2
    assert {q: e["counts"]["waiting"] for q, e in ours["queues"].items()} == {f"bulk{i:02}": i % 3 + 1 for i in range(50)}


def test_retry_set_back_to_its_queue(sidekiq: dict[str, Any]) -> None:
    conn, k = sidekiq["redis"], sidekiq["k"]
    mailers = [j["jid"] for j in sidekiq["jobs"]["retry"] if j["queue"] == "mailers"]
    run = run_tasks(sidekiq["env"], sidekiq["inventory"], four_runs("sidekiq", sidekiq["ns"], queues=["mailers"],
                                                                    action="retry_failed"))
    assert task_result(run, "jobs check")["job_ids"] == mailers  # by score: the next retry first
    assert conn.zcard(k("retry")) == 1 and task_result(run, "depth after check")["global"]["retry"] == 3
    assert task_result(run, "jobs real")["job_ids"] == mailers
    assert task_result(run, "depth after real")["queues"]["mailers"]["counts"]["waiting"] == 4
    assert task_result(run, "jobs check again")["changed"] is False
    assert task_result(run, "jobs real again")["changed"] is False
    # what Sidekiq's fetcher pops next (BRPOP: the tail) is still the oldest enqueued job; the retried ones
    # were LPUSHed at the head, as Client.push does, with retry_count - 1 and a fresh enqueued_at
    head = json.loads(conn.lindex(k("queue:mailers"), 0))
    assert head["jid"] in mailers and head["retry_count"] == 1 and time.time() - head["enqueued_at"] < 600
    assert head["error_message"] == "smtp down"  # SortedEntry#retry keeps the error fields
    assert json.loads(conn.zrange(k("retry"), 0, -1)[0])["queue"] == "default"


def test_remove_dead_older_than(sidekiq: dict[str, Any]) -> None:
    old = sidekiq["jobs"]["dead"][0]["jid"]
    run = run_tasks(sidekiq["env"], sidekiq["inventory"], four_runs("sidekiq", sidekiq["ns"], queues=["*"],
                                                                    action="remove_failed", older_than_days=7))
    assert task_result(run, "jobs check")["job_ids"] == [old]
    assert task_result(run, "jobs real")["job_ids"] == [old]
    assert task_result(run, "jobs real again")["changed"] is False
    assert sidekiq["redis"].zcard(sidekiq["k"]("dead")) == 1
