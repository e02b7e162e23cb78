# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""queue_depth and queue_jobs on real RQ 3.0 jobs (PyPI, the project's venv).

Jobs are made with RQ's own API (tests/queues/python/rq_fixture.py, RQ_KEY_PREFIX set to a prefix of our
own): finished and failed by a real SimpleWorker, one held started by a worker running a slow job, deferred
(depends_on), scheduled (enqueue_in), canceled (Job.cancel), waiting. The failed registry also holds an entry
past its failure_ttl (RQ's count drops it: cleanup() runs ZREMRANGEBYSCORE 0 <now> first) and one that never
expires (score -1): ZCARD would count 5, RQ and queue_depth count 4. queue_depth runs before RQ counts,
because RQ's count deletes the expired entry. Retried jobs are then run by `rq worker --burst`.
Sandbox Redis, db 7, deleted afterwards.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lib.redis_fixtures import queue_context
from tests.queues.harness import (PY_DIR, ROOT, depth_task, four_runs, python, python_env, redis_url, run_tasks,
                                  task_result, unique_prefix, wait_for)

pytestmark = pytest.mark.sandbox

FIXTURE = "rq_fixture.py"


@pytest.fixture
def rq(sandbox) -> Iterator[dict[str, Any]]:
    prefix = unique_prefix("rq")
    with queue_context(sandbox, prefix, f"{prefix}:*") as ctx:
        yield ctx


def _rq(ctx: dict[str, Any], *args: str, **extra: str) -> Any:
    return python(ctx["env"], FIXTURE, *args, RQ_KEY_PREFIX=ctx["prefix"], **extra)


def test_counts_equal_rq_registries(rq: dict[str, Any]) -> None:
    _rq(rq, "populate", "alerts")
    _rq(rq, "populate", "emails")
    holder = subprocess.Popen([str(ROOT / ".venv" / "bin" / "python"), FIXTURE, "hold", "alerts"], cwd=PY_DIR,
                              env=python_env(rq["env"], RQ_KEY_PREFIX=rq["prefix"]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: rq["redis"].zcard(f"{rq['prefix']}:wip:alerts") == 1, "the worker to start the slow job")
        run = run_tasks(rq["env"], rq["inventory"], [depth_task("depth", "rq", rq["prefix"])])
        theirs = _rq(rq, "counts", "alerts", "emails")
    finally:
        holder.kill()
        holder.wait()
    ours = task_result(run, "depth")
    assert set(ours["queues"]) == {"alerts", "emails"}  # from RQ's rq:queues set
    for name in ("alerts", "emails"):
        assert ours["queues"][name]["counts"] == theirs[name], name
    assert all(ours["queues"]["alerts"]["counts"].values()), "every RQ state has a job"
    assert theirs["alerts"]["failed"] == 4  # 3 failed + the never-expiring one; not the expired one
    assert ours["queues"]["alerts"]["oldest_waiting_seconds"] is not None
    assert ours["round_trips"] == 3


def test_retry_failed_then_rq_worker_runs_them(rq: dict[str, Any]) -> None:
    failed = _rq(rq, "failed", "alerts", "3")["failed"]
    run = run_tasks(rq["env"], rq["inventory"], four_runs("rq", rq["prefix"], queues=["alerts"], action="retry_failed"))
    check, real = task_result(run, "jobs check"), task_result(run, "jobs real")
    assert check["job_ids"] == failed  # oldest first: the registry's order
    assert task_result(run, "depth after check")["queues"]["alerts"]["counts"]["failed"] == 3
    assert real["job_ids"] == failed
    assert task_result(run, "depth after real")["queues"]["alerts"]["counts"] == {
        "waiting": 3, "started": 0, "finished": 0, "failed": 0, "deferred": 0, "scheduled": 0, "canceled": 0}
    assert task_result(run, "jobs check again")["changed"] is False
    assert task_result(run, "jobs real again")["changed"] is False
    status, ended_at, origin = rq["redis"].hmget(f"{rq['prefix']}:job:{failed[0]}", "status", "ended_at", "origin")
    assert (status, ended_at, origin) == ("queued", "", "alerts")
    # RQ's own worker CLI, in burst mode, runs them (they succeed now)
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "rq"), "worker", "--burst", "--url",
                           redis_url(rq["env"]), "alerts"],
                          cwd=PY_DIR, env=python_env(rq["env"], RQ_KEY_PREFIX=rq["prefix"], RQ_FLAKY_OK="1"),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = _rq(rq, "counts", "alerts")["alerts"]
    assert counts["finished"] == 3 and counts["failed"] == 0 and counts["waiting"] == 0


def test_remove_failed_older_than(rq: dict[str, Any]) -> None:
    failed = _rq(rq, "failed", "alerts", "3")["failed"]
    for day, job in enumerate(failed[:2], start=1):  # failed long ago, as RQ's ended_at says
        rq["redis"].hset(f"{rq['prefix']}:job:{job}", "ended_at", f"2020-01-0{day}T00:00:00.000000Z")
    run = run_tasks(rq["env"], rq["inventory"], four_runs("rq", rq["prefix"], queues=["alerts"],
                                                          action="remove_failed", older_than_days=7))
    assert task_result(run, "jobs check")["job_ids"] == failed[:2]
    assert task_result(run, "jobs real")["job_ids"] == failed[:2]
    assert task_result(run, "jobs real again")["changed"] is False
    assert _rq(rq, "counts", "alerts")["alerts"]["failed"] == 1
    assert not any(rq["redis"].exists(f"{rq['prefix']}:job:{j}") for j in failed[:2])


def test_pause_is_unsupported_and_says_why(rq: dict[str, Any]) -> None:
    run = run_tasks(rq["env"], rq["inventory"], [{
        "name": "pause rq", "runbook.ops.queue_jobs": {"library": "rq", "queues": ["alerts"], "action": "pause"},
        "ignore_errors": True}])
    res = task_result(run, "pause rq")
    assert res["event"] == "runner_on_failed" and "no per-queue pause" in res["msg"]
