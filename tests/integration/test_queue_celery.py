# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""queue_depth on real Celery 5.7 tasks on the Redis broker (kombu 5.7, the project's venv).

Tasks are sent with Celery's own apply_async (tests/queues/python/celery_app.py, kombu's global_keyprefix set
to a prefix of our own) at priorities 0, 3, 5, 6 and 9, so they land in kombu's four priority lists; kombu's
Channel._size (what queue_declare reports as message_count) must equal our `waiting`. A real `celery worker`
holds a task due in an hour: it sits in kombu's `unacked` hash, which must equal what the worker itself says
it holds (inspect reserved + scheduled + active). Celery keeps no failed tasks in the broker, so retrying
is refused with the reason. Sandbox Redis, db 7, deleted afterwards.
"""
from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lib.redis_fixtures import queue_context
from tests.queues.harness import (PY_DIR, ROOT, depth_task, python, python_env, run_tasks, task_result, unique_prefix,
                                  wait_for)

pytestmark = pytest.mark.sandbox

APP = "celery_app.py"


@pytest.fixture
def celery(sandbox) -> Iterator[dict[str, Any]]:
    prefix = unique_prefix("celery") + ":"
    with queue_context(sandbox, prefix, f"{prefix}*") as ctx:
        yield ctx


def test_counts_equal_kombu(celery: dict[str, Any]) -> None:
    env, prefix = celery["env"], celery["prefix"]
    python(env, APP, "populate", "alerts", QUEUE_CELERY_PREFIX=prefix)
    python(env, APP, "eta", "held", QUEUE_CELERY_PREFIX=prefix)
    worker = subprocess.Popen([str(ROOT / ".venv" / "bin" / "celery"), "-A", "celery_app", "worker", "-Q", "held",
                               "--pool", "solo", "--without-mingle", "--without-gossip", "-l", "warning",
                               "-n", f"{prefix}worker@%h"],
                              cwd=PY_DIR, env=python_env(env, QUEUE_CELERY_PREFIX=prefix),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: celery["redis"].hlen(f"{prefix}unacked") == 1, "the worker to reserve the ETA task", 60)
        run = run_tasks(env, celery["inventory"], [
            depth_task("depth", "celery", prefix, queues=["alerts", "held", "empty"])])
        theirs = python(env, APP, "counts", "alerts", "held", "empty", QUEUE_CELERY_PREFIX=prefix)
        held = python(env, APP, "inspect", QUEUE_CELERY_PREFIX=prefix)["held"]
    finally:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: kombu puts the unacked task back
        worker.wait(timeout=60)
    ours = task_result(run, "depth")
    assert {q: e["counts"]["waiting"] for q, e in ours["queues"].items()} == theirs
    assert theirs["alerts"] == 7 and all(celery["redis"].llen(f"{prefix}alerts\x06\x16{p}") for p in (3, 6, 9))
    assert ours["global"]["unacked"] == held == 1
    assert ours["queues"]["alerts"]["oldest_waiting_seconds"] is None  # kombu's messages carry no enqueue time
    assert ours["round_trips"] == 1
    # after the warm shutdown the held task is back in its queue, as kombu counts it
    assert python(env, APP, "counts", "held", QUEUE_CELERY_PREFIX=prefix)["held"] == 1


def test_retry_is_refused_with_the_reason(celery: dict[str, Any]) -> None:
    run = run_tasks(celery["env"], celery["inventory"], [{
        "name": "retry celery", "ignore_errors": True,
        "runbook.ops.queue_jobs": {"library": "celery", "queues": ["alerts"], "action": "retry_failed"}}])
    res = task_result(run, "retry celery")
    assert res["event"] == "runner_on_failed" and "no failed tasks in the broker" in res["msg"]
