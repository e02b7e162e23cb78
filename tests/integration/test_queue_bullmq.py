# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""queue_depth and queue_jobs on real BullMQ 6.7 and Bull 4 jobs (npm, the machine's Node).

Jobs are made by the libraries themselves (tests/queues/node/fixture.js): completed and failed by a real
Worker, delayed, prioritized, a flow parent in waiting-children, a job a worker holds active (its lock
outlives the test), waiting ones, and a second queue paused with Queue.pause(). queue_depth must equal
Queue.getJobCounts() state by state; failed jobs retried by queue_jobs are then processed by the library's
own worker. Sandbox Redis, db 7, a prefix of our own, deleted afterwards.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.queues.harness import (DB, NODE_DIR, client, delete_keys, depth_task, four_runs, jobs_task, node, run_tasks,
                                  task_result, unique_prefix)

pytestmark = pytest.mark.sandbox

LIBRARIES = ("bullmq", "bull")


@pytest.fixture(params=LIBRARIES)
def queues(request: pytest.FixtureRequest, sandbox) -> Iterator[dict[str, Any]]:
    library = request.param
    prefix = unique_prefix(library)
    conn = client(sandbox.env)
    try:
        yield {"library": library, "prefix": prefix, "env": sandbox.env, "inventory": sandbox.inventory, "redis": conn}
    finally:
        delete_keys(conn, [f"{prefix}:*"])
        conn.close()


def test_counts_equal_get_job_counts(queues: dict[str, Any]) -> None:
    lib, prefix, env = queues["library"], queues["prefix"], queues["env"]
    node(env, lib, "populate", prefix, "emails")
    node(env, lib, "populate", prefix, "alerts", "--paused")
    run = run_tasks(env, queues["inventory"], [
        depth_task("depth all", lib, prefix),
        depth_task("depth one", lib, prefix, queues=["emails", "absent"], thresholds={"waiting": {"warning": 2}}),
        depth_task("depth pattern", lib, prefix, queues=["al*"], states=["waiting", "failed"]),
    ])
    theirs = node(env, lib, "counts", prefix, "emails", "alerts")
    every = task_result(run, "depth all")
    assert every["is_available"] is True and set(every["queues"]) == {"emails", "alerts"}
    for name in ("emails", "alerts"):
        ours = every["queues"][name]
        assert ours["counts"] == theirs[name]["counts"], name
        assert ours["paused"] is theirs[name]["paused"]
        assert ours["oldest_waiting_seconds"] is not None and ours["oldest_waiting_seconds"] >= 0
    # every state has jobs, so the comparison covers each of them (paused: Bull only, see the docstring)
    states_with_jobs = {s for s, n in every["queues"]["emails"]["counts"].items() if n}
    assert states_with_jobs == set(theirs["emails"]["counts"]) - {"paused"}
    if lib == "bull":
        assert every["queues"]["alerts"]["counts"]["paused"] > 0
    else:  # BullMQ 5+: a paused queue keeps its jobs in wait, the legacy paused list stays empty
        assert every["queues"]["alerts"]["counts"]["waiting"] > 0
    assert every["round_trips"] <= 3
    assert every["verdict"] == "warning" and any("failed" in r for r in every["reasons"])
    one = task_result(run, "depth one")
    assert one["queues"]["absent"]["counts"]["waiting"] == 0
    assert one["queues"]["emails"]["verdict"] == "warning"
    assert any("waiting" in r for r in one["queues"]["emails"]["reasons"])
    pattern = task_result(run, "depth pattern")
    assert set(pattern["queues"]) == {"alerts"}
    assert set(pattern["queues"]["alerts"]["counts"]) == {"waiting", "failed"}


def test_retry_failed_then_the_library_worker_runs_them(queues: dict[str, Any]) -> None:
    lib, prefix, env = queues["library"], queues["prefix"], queues["env"]
    node(env, lib, "failed", prefix, "retry", "3")
    run = run_tasks(env, queues["inventory"], four_runs(lib, prefix, queues=["retry"], action="retry_failed"))
    check, real = task_result(run, "jobs check"), task_result(run, "jobs real")
    assert check["changed"] is True and len(check["job_ids"]) == 3
    assert task_result(run, "depth after check")["queues"]["retry"]["counts"]["failed"] == 3  # untouched
    assert real["changed"] is True and real["job_ids"] == check["job_ids"]
    assert check["job_ids"] == sorted(check["job_ids"], key=int)  # oldest first
    after = task_result(run, "depth after real")["queues"]["retry"]["counts"]
    assert after["failed"] == 0 and after["waiting"] == 3
    assert task_result(run, "jobs check again")["changed"] is False
    assert task_result(run, "jobs real again")["changed"] is False
    if lib == "bullmq":
        # as Job.retry(): failedReason and finishedOn gone, attemptsMade kept
        job = queues["redis"].hgetall(f"{prefix}:retry:{real['job_ids'][0]}")
        assert "failedReason" not in job and "finishedOn" not in job and job.get("atm") == "1"
    done = node(env, lib, "work", prefix, "retry", "3")
    assert sorted(done["processed"]) == sorted(real["job_ids"])
    assert node(env, lib, "counts", prefix, "retry")["retry"]["counts"]["completed"] == 3


def test_retry_at_most_max_jobs(queues: dict[str, Any]) -> None:
    lib, prefix, env = queues["library"], queues["prefix"], queues["env"]
    node(env, lib, "failed", prefix, "capped", "3")
    run = run_tasks(env, queues["inventory"], [
        jobs_task("retry two", lib, prefix, queues=["capped"], action="retry_failed", max_jobs=2)])
    ids = task_result(run, "retry two")["job_ids"]
    assert len(ids) == 2
    counts = node(env, lib, "counts", prefix, "capped")["capped"]["counts"]
    assert counts["failed"] == 1 and counts["waiting"] == 2


def test_remove_failed_older_than(queues: dict[str, Any]) -> None:
    lib, prefix, env, conn = queues["library"], queues["prefix"], queues["env"], queues["redis"]
    node(env, lib, "failed", prefix, "old", "3")
    failed = conn.zrange(f"{prefix}:old:failed", 0, -1, withscores=True)
    # make two of them 10 days old, as their finishedOn and failed score say
    for job, score in failed[:2]:
        old = int(score) - 10 * 86400 * 1000
        conn.zadd(f"{prefix}:old:failed", {job: old})
        conn.hset(f"{prefix}:old:{job}", "finishedOn", old)
    old_ids = [j for j, _s in failed[:2]]
    run = run_tasks(env, queues["inventory"], four_runs(lib, prefix, queues=["old"], action="remove_failed",
                                                        older_than_days=7))
    assert task_result(run, "jobs check")["job_ids"] == old_ids
    assert task_result(run, "depth after check")["queues"]["old"]["counts"]["failed"] == 3
    assert task_result(run, "jobs real")["job_ids"] == old_ids
    assert task_result(run, "jobs check again")["changed"] is False
    assert task_result(run, "jobs real again")["changed"] is False
    assert node(env, lib, "counts", prefix, "old")["old"]["counts"]["failed"] == 1
    assert not any(conn.exists(f"{prefix}:old:{j}") for j in old_ids)


def test_pause_and_resume_as_the_library(queues: dict[str, Any]) -> None:
    lib, prefix, env = queues["library"], queues["prefix"], queues["env"]
    node(env, lib, "failed", prefix, "p", "1")
    run = run_tasks(env, queues["inventory"], [
        *four_runs(lib, prefix, tag="pause ", queues=["p"], action="pause"),
        {"name": "what the library says", "ansible.builtin.command": {"argv": [
            "node", "fixture.js", lib, "counts", prefix, "p"], "chdir": str(NODE_DIR)}, "changed_when": False,
         "environment": {"QUEUE_REDIS_PORT": env["REDIS_PORT"], "QUEUE_REDIS_PASSWORD": env["REDISCLI_AUTH"],
                         "QUEUE_REDIS_DB": str(DB)}},
        *four_runs(lib, prefix, tag="resume ", queues=["p"], action="resume")])
    for action in ("pause", "resume"):
        assert task_result(run, f"{action} jobs check")["changed"] is True
        assert task_result(run, f"{action} depth after check")["queues"]["p"]["paused"] is (action == "resume")
        assert task_result(run, f"{action} jobs real")["changed"] is True
        assert task_result(run, f"{action} depth after real")["queues"]["p"]["paused"] is (action == "pause")
        assert task_result(run, f"{action} jobs check again")["changed"] is False
        assert task_result(run, f"{action} jobs real again")["changed"] is False
    # the library itself saw the queue paused in between, and sees it resumed now
    assert json.loads(task_result(run, "what the library says")["stdout"])["p"]["paused"] is True
    assert node(env, lib, "counts", prefix, "p")["p"]["paused"] is False


def test_unreachable_redis_is_reported(queues: dict[str, Any]) -> None:
    lib, env = queues["library"], queues["env"]
    run = run_tasks(env, queues["inventory"], [
        {"name": "depth nowhere", "runbook.ops.queue_depth": {"library": lib, "login_port": 1, "connect_timeout": 2}},
        {"name": "retry nowhere", "ignore_errors": True,
         "runbook.ops.queue_jobs": {"library": lib, "queues": ["q"], "action": "retry_failed", "login_port": 1}}])
    res = task_result(run, "depth nowhere")
    assert res["event"] == "runner_on_ok" and res["is_available"] is False and res["verdict"] == "critical"
    assert "cannot connect" in res["reasons"][0] and env["REDISCLI_AUTH"] not in str(res)
    changing = task_result(run, "retry nowhere")  # a module that changes things fails, with the reason
    assert changing["event"] == "runner_on_failed" and "cannot connect" in changing["msg"]
    assert "Traceback" not in str(changing) and env["REDISCLI_AUTH"] not in str(changing)
