# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What runbook.ops.queue_jobs does per library: plan (reads only: the job ids), then act (one Lua script).

The plan is what check mode returns; acting runs the library's own semantics (queue_scripts) on exactly
the planned ids that are still where the plan found them.
"""
from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L
from ansible_collections.runbook.ops.plugins.module_utils import queue_scripts as S

ACTIONS: tuple[str, ...] = ("retry_failed", "remove_failed", "pause", "resume")

SUPPORT: dict[str, dict[str, Optional[str]]] = {
    # None: supported; a string: why not, for the error message
    "bullmq": {a: None for a in ACTIONS},
    "bull": {a: None for a in ACTIONS},
    "rq": {"retry_failed": None, "remove_failed": None,
           "pause": "RQ has no per-queue pause (`rq suspend` suspends every worker of the Redis, not a queue)",
           "resume": "RQ has no per-queue pause (`rq resume` resumes suspended workers, not a queue)"},
    "celery": {a: ("Celery keeps no failed tasks in the broker (failures live in the result backend, if any); "
                   "it cannot be retried or removed from Redis") for a in ("retry_failed", "remove_failed")},
    "sidekiq": {"retry_failed": None, "remove_failed": None,
                "pause": "pausing a queue is a Sidekiq Pro/Enterprise feature, not part of Sidekiq's layout",
                "resume": "pausing a queue is a Sidekiq Pro/Enterprise feature, not part of Sidekiq's layout"},
}
SUPPORT["celery"].update(pause="Celery has no queue pause in the broker (cancel_consumer is a worker command)",
                         resume="Celery has no queue pause in the broker (add_consumer is a worker command)")


@dataclass
class Plan:
    queue: str
    job_ids: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    change: bool = False  # pause/resume: whether the queue's state would change
    # what the act step needs (Sidekiq members and payloads)
    payloads: list[tuple[str, str, str]] = field(default_factory=list)


def unsupported(library: str, action: str) -> Optional[str]:
    return SUPPORT[library][action]


def rq_now() -> str:
    """RQ's utcformat(now()): what requeue writes as enqueued_at."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pipe(client: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute())


# --- planning ----------------------------------------------------------------------------------------

def plan(client: Any, library: str, prefix: str, queue: str, action: str, max_jobs: int,
         cutoff: Optional[float], failed_set: str, now: Optional[float] = None) -> Plan:
    """The job ids an action would touch in one queue, oldest first, at most max_jobs (cutoff: epoch seconds)."""
    now = time.time() if now is None else now
    result = Plan(queue)
    if library in ("bullmq", "bull"):
        base = f"{prefix}:{queue}:"
        if action in ("pause", "resume"):
            if library == "bullmq":
                paused, legacy = _pipe(client, [("HGET", base + "meta", "paused"), ("LLEN", base + "paused")])
                is_paused = paused not in (None, "", "0")
                result.change = (not is_paused) if action == "pause" else (is_paused or int(legacy) > 0)
            else:
                is_paused = bool(_pipe(client, [("EXISTS", base + "meta-paused")])[0])
                result.change = (not is_paused) if action == "pause" else is_paused
            return result
        high = "+inf" if action == "retry_failed" else str(int(cutoff * 1000))
        # the failed set is scored by finishedOn (ms): ascending is oldest first, as retryJobs takes them
        ids = client.zrangebyscore(base + "failed", "-inf", high, start=0, num=max_jobs)
        if action == "remove_failed" and ids:
            fields = _pipe(client, [("HMGET", base + job, "parentKey", "deid") for job in ids])
            for job, (parent, _deid) in zip(ids, fields):
                if parent:
                    result.skipped.append({"id": job, "reason": f"part of a flow (parent {parent}): remove it with the flow"})
                else:
                    result.job_ids.append(job)
        else:
            result.job_ids = list(ids)
        return result
    if library == "rq":
        registry = L.rq_registry_key(prefix, "failed", queue)
        # what RQ's get_job_ids() returns after cleanup(): never-expiring (negative) scores, then future ones
        live = client.zrangebyscore(registry, "-inf", "(0") + client.zrangebyscore(registry, f"({int(now)}", "+inf")
        if not live:
            return result
        fields = _pipe(client, [("HMGET", f"{prefix}:job:{job}", "status", "ended_at", "rate_limit_key", "group_id")
                                for job in live])
        # oldest failure first: ended_at has microseconds, the registry's score only whole seconds
        rows = sorted(zip(live, fields), key=lambda row: L.parse_epoch(row[1][1]) or float("inf"))
        for job, (status, ended, rate_limit, group) in rows:
            if status is None:
                result.skipped.append({"id": job, "reason": "the job hash is gone (expired): RQ cannot requeue it either"})
            elif action == "retry_failed" and rate_limit:
                result.skipped.append({"id": job, "reason": "rate-limited job: requeue it with RQ itself (it must reacquire a slot)"})
            elif action == "remove_failed" and group:
                result.skipped.append({"id": job, "reason": f"member of group {group}: delete it with RQ itself"})
            elif action == "remove_failed":
                ended_at = L.parse_epoch(ended)
                if ended_at is not None and ended_at <= cutoff:
                    result.job_ids.append(job)
            else:
                result.job_ids.append(job)
        result.job_ids = result.job_ids[:max_jobs]
        return result
    if library == "sidekiq":
        set_key = L.sidekiq_key(prefix, failed_set)
        for member, score in client.zrange(set_key, 0, -1, withscores=True):
            try:
                job = json.loads(member)
            except ValueError:
                result.skipped.append({"id": member[:60], "reason": "not a JSON payload"})
                continue
            if not isinstance(job, dict) or not fnmatch.fnmatchcase(str(job.get("queue", "")), queue):
                continue
            jid = str(job.get("jid", ""))
            if action == "remove_failed":
                failed_at = L.parse_epoch(job.get("failed_at")) or score
                if failed_at > cutoff:
                    continue
                result.payloads.append((member, str(job.get("queue")), ""))
            else:
                result.payloads.append((member, str(job["queue"]), sidekiq_requeued(job, now)))
            result.job_ids.append(jid)
            if len(result.job_ids) >= max_jobs:
                break
        return result
    raise ValueError(f"{library}: {action} is not supported")


def sidekiq_requeued(job: dict[str, Any], now: float) -> str:
    """SortedEntry#retry: retry_count - 1, then Client.push sets enqueued_at (ms when created_at is ms: Sidekiq 8)."""
    job = dict(job)
    if job.get("retry_count") is not None:
        job["retry_count"] = int(job["retry_count"]) - 1
    job.pop("at", None)
    created = job.get("created_at")
    job["enqueued_at"] = int(now * 1000) if isinstance(created, int) and created > 1e11 else now
    return json.dumps(job, separators=(",", ":"))


# --- acting ------------------------------------------------------------------------------------------

def act(client: Any, library: str, prefix: str, action: str, planned: Plan, cutoff: Optional[float],
        reset_attempts: bool, failed_set: str, now: Optional[float] = None) -> list[str]:
    """Run the action on the planned jobs in one script; returns the ids touched (for pause/resume: [queue])."""
    now = time.time() if now is None else now
    q = planned.queue
    if library in ("bullmq", "bull") and action in ("pause", "resume"):
        if not planned.change:
            return []
        base = f"{prefix}:{q}:"
        src, dst = ("wait", "paused") if action == "pause" else ("paused", "wait")
        if library == "bullmq":
            keys = [base + n for n in ("wait", "paused", "meta", "prioritized", "events", "delayed", "marker")]
            client.eval(S.BULLMQ_PAUSE, len(keys), *keys, "paused" if action == "pause" else "resumed")
        else:
            keys = [base + src, base + dst, base + "meta-paused", base + ("paused" if action == "pause" else "resumed"), base + "meta"]
            client.eval(S.BULL_PAUSE, len(keys), *keys, "paused" if action == "pause" else "resumed")
        return [q]
    ids = planned.job_ids
    if not ids:
        return []
    if library == "bullmq":
        base = f"{prefix}:{q}:"
        if action == "retry_failed":
            keys = [base] + [base + n for n in ("events", "failed", "wait", "meta", "active", "marker", "prioritized", "pc")]
            return list(client.eval(S.BULLMQ_RETRY, len(keys), *keys, "1" if reset_attempts else "0", *ids))
        keys = [base, base + "events", base + "failed"]
        return list(client.eval(S.BULLMQ_REMOVE, len(keys), *keys, str(int(cutoff * 1000)), *ids))
    if library == "bull":
        base = f"{prefix}:{q}:"
        if action == "retry_failed":
            keys = [base, base + "failed", base + "wait", base + "meta-paused", base + "paused"]
            return list(client.eval(S.BULL_RETRY, len(keys), *keys, str(int(now * 1000)), *ids))
        keys = [base, base + "failed", base + "priority"]
        return list(client.eval(S.BULL_REMOVE, len(keys), *keys, str(int(cutoff * 1000)), *ids))
    if library == "rq":
        registry = L.rq_registry_key(prefix, "failed", q)
        if action == "retry_failed":
            keys = [registry, f"{prefix}:queue:{q}"]
            return list(client.eval(S.RQ_REQUEUE, len(keys), *keys, rq_now(), q, f"{prefix}:job:", *ids))
        return list(client.eval(S.RQ_DELETE, 1, registry, prefix, *ids))
    if library == "sidekiq":
        set_key = L.sidekiq_key(prefix, failed_set)
        by_member = dict(zip((p[0] for p in planned.payloads), ids))
        if action == "remove_failed":
            members = [p[0] for p in planned.payloads]
            removed = []
            # ZREM of each planned member, in one MULTI: atomic, and it says which were still there
            pipe = client.pipeline(transaction=True)
            for member in members:
                pipe.zrem(set_key, member)
            for member, count in zip(members, pipe.execute()):
                if count:
                    removed.append(by_member[member])
            return removed
        args: list[str] = [f"{prefix}:" if prefix else ""]
        for member, queue_name, payload in planned.payloads:
            args.extend((member, queue_name, payload))
        moved = client.eval(S.SIDEKIQ_PUSH, 2, set_key, L.sidekiq_key(prefix, "queues"), *args)
        return [by_member[m] for m in moved]
    raise ValueError(f"{library}: {action} is not supported")
