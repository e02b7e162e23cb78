#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.queue_jobs: retry or remove failed jobs, pause or resume a queue, as the library itself does."""
from __future__ import annotations

DOCUMENTATION = r"""
module: queue_jobs
short_description: Retry or remove failed jobs, pause or resume queues of BullMQ, Bull, RQ or Sidekiq
version_added: 0.3.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the resolution of the seed runbooks' C(Email Alerts Failing) procedure (C(send_alerts
    --retry-failed)) for the job-queue library itself, and the queue pause an operator uses during an incident.
  - "O(action=retry_failed): failed jobs go back to waiting, oldest first, at most O(max_jobs) per queue, with the
    library's own semantics. B(BullMQ) as C(Job.retry('failed')) (its C(reprocessJob) script): C(finishedOn),
    C(processedOn) and C(failedReason) cleared, C(attemptsMade) kept unless O(reset_attempts), back to C(wait)
    (C(RPUSH) for lifo jobs) or to C(prioritized) for jobs with a priority, a C(waiting) event, a parent's
    dependency restored. B(Bull) as C(Job.retry()): locked jobs are left alone, C(retriedOn) set, into C(paused)
    when the queue is paused. B(RQ) as C(FailedJobRegistry.requeue()): status C(queued), C(enqueued_at) now,
    C(RPUSH) onto the job's queue. B(Sidekiq) as C(SortedEntry#retry): out of the C(retry) set (or C(dead), see
    O(failed_set)), C(retry_count) minus one, C(enqueued_at) now, C(LPUSH) onto C(queue:<name>)."
  - "O(action=remove_failed): deletes failed jobs that failed at least O(older_than_days) days ago (BullMQ and
    Bull C(finishedOn), RQ C(ended_at), Sidekiq C(failed_at)), as C(Queue.clean(grace, limit, 'failed')),
    C(FailedJobRegistry.remove(job, delete_job=True)) or C(SortedEntry#delete) do; at most O(max_jobs) per queue."
  - "O(action=pause) and O(action=resume): B(BullMQ) as C(Queue.pause()) (BullMQ 5 and later only set
    C(meta.paused): the jobs stay in C(wait), which workers then leave alone) and C(Queue.resume()) (which also
    moves a legacy C(paused) list back); B(Bull) as C(Queue.pause()) (C(wait) renamed to C(paused),
    C(meta-paused) set). RQ, Celery and Sidekiq have no queue pause in Redis: the module fails and says why."
  - Every change is one Lua script per queue (atomic, as the libraries' own scripts are) that acts only on the
    planned jobs still in the failed set, and returns those it moved.
  - Celery keeps no failed tasks in the broker; retrying or removing them is refused with that reason.
extends_documentation_fragment:
  - runbook.ops.redis
options:
  library:
    description: The job-queue library whose keys to change.
    type: str
    required: true
    choices: [bullmq, bull, rq, celery, sidekiq]
  action:
    description: What to do.
    type: str
    required: true
    choices: [retry_failed, remove_failed, pause, resume]
  queues:
    description:
      - Queue names or glob patterns, as in M(runbook.ops.queue_depth). For Sidekiq they are matched against each
        failed job's C(queue).
    type: list
    elements: str
    required: true
  prefix:
    description: The key prefix; the library's default when not given (see M(runbook.ops.queue_depth)).
    type: str
  max_jobs:
    description: At most this many jobs per queue and run (the blast radius). Run again for the next batch.
    type: int
    default: 100
  older_than_days:
    description: For O(action=remove_failed), required; jobs that failed at least this many days ago.
    type: float
  reset_attempts:
    description:
      - BullMQ only, with O(action=retry_failed); also clear C(attemptsMade), as
        C(Job.retry('failed')) with its C(resetAttemptsMade) option. By default, as in the library, it is kept.
    type: bool
    default: false
  failed_set:
    description: Sidekiq only; the sorted set to take failed jobs from. V(retry) (jobs waiting for their next
      automatic retry) or V(dead) (the morgue). Default V(retry) for O(action=retry_failed), V(dead) for
      O(action=remove_failed).
    type: str
    choices: [retry, dead]
attributes:
  check_mode:
    support: full
    description: Reads for real and writes nothing; RV(job_ids) lists the jobs it would touch.
  diff_mode:
    support: none
    description: RV(queues) lists the jobs per queue instead.
notes:
  - A second run finds nothing left to do and reports no change (unless more than O(max_jobs) were failed).
  - An unreachable Redis fails the task with the reason (never the password); this module changes things, so
    unlike M(runbook.ops.queue_depth) it cannot report and carry on.
seealso:
  - module: runbook.ops.queue_depth
"""

EXAMPLES = r"""
- name: Retry the failed alert emails (the seed's "Email Alerts Failing"), 50 at a time
  runbook.ops.queue_jobs:
    library: bullmq
    queues: [campaign-emails]
    action: retry_failed
    max_jobs: 50
  register: retried

- name: See which RQ jobs would be requeued, without touching them
  runbook.ops.queue_jobs:
    library: rq
    queues: ['alerts*']
    action: retry_failed
  check_mode: true

- name: Drop Sidekiq's dead jobs older than two weeks
  runbook.ops.queue_jobs:
    library: sidekiq
    queues: ['*']
    action: remove_failed
    older_than_days: 14

- name: Pause a BullMQ queue during the incident
  runbook.ops.queue_jobs:
    library: bullmq
    queues: [campaign-emails]
    action: pause
"""

RETURN = r"""
job_ids:
  description: The jobs touched (in check mode, that would be touched), oldest first; for pause and resume, the
    queues whose state changed.
  returned: always
  type: list
  elements: str
queues:
  description: Per queue, the jobs touched and the ones left alone with the reason.
  returned: always
  type: dict
  sample: {campaign-emails: {job_ids: ["3", "4"], skipped: [], changed: true}}
count:
  description: The number of RV(job_ids).
  returned: always
  type: int
msg:
  description: What was (or would be) done.
  returned: always
  type: str
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import queue_actions as A
from ansible_collections.runbook.ops.plugins.module_utils.queue_layouts import prefix_for
from ansible_collections.runbook.ops.plugins.module_utils.queue_options import queue_argument_spec
from ansible_collections.runbook.ops.plugins.module_utils.queue_read import RoundTrips, discover
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import RedisError, connect_or_fail, redact


def argument_spec() -> dict[str, Any]:
    return queue_argument_spec(
        action={"type": "str", "required": True, "choices": list(A.ACTIONS)},
        queues={"type": "list", "elements": "str", "required": True},
        max_jobs={"type": "int", "default": 100},
        older_than_days={"type": "float"},
        reset_attempts={"type": "bool", "default": False},
        failed_set={"type": "str", "choices": ["retry", "dead"]},
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("action", "remove_failed", ["older_than_days"])])
    p = module.params
    library, action = p["library"], p["action"]
    why = A.unsupported(library, action)
    if why:
        module.fail_json(msg=f"{library} does not support {action}: {why}")
    if p["max_jobs"] < 1:
        module.fail_json(msg="max_jobs must be at least 1")
    if p["older_than_days"] is not None and p["older_than_days"] < 0:
        module.fail_json(msg="older_than_days must not be negative")
    prefix = prefix_for(library, p["prefix"])
    failed_set = p["failed_set"] or ("dead" if action == "remove_failed" else "retry")
    client = connect_or_fail(module)
    now = time.time()
    cutoff = now - p["older_than_days"] * 86400 if p["older_than_days"] is not None else None
    report: dict[str, dict[str, Any]] = {}
    touched: list[str] = []
    try:
        if library == "sidekiq":
            names = list(p["queues"])  # patterns over each payload's queue; no discovery needed
        else:
            names, _processes = discover(client, RoundTrips(), library, prefix, p["queues"])
        seen: set[str] = set()
        for queue in names:
            planned = A.plan(client, library, prefix, queue, action, p["max_jobs"], cutoff, failed_set, now)
            if library == "sidekiq":
                # overlapping patterns must not list a job twice
                keep = [i for i, payload in enumerate(planned.payloads) if payload[0] not in seen]
                seen.update(payload[0] for payload in planned.payloads)
                planned.payloads = [planned.payloads[i] for i in keep]
                planned.job_ids = [planned.job_ids[i] for i in keep]
            if module.check_mode:
                done = [queue] if planned.change else list(planned.job_ids)
            else:
                done = A.act(client, library, prefix, action, planned, cutoff, p["reset_attempts"], failed_set, now)
            report[queue] = {"job_ids": [] if action in ("pause", "resume") else done,
                             "skipped": planned.skipped, "changed": bool(done)}
            touched.extend(done)
    except RedisError as error:
        module.fail_json(msg=redact(f"{action} on {library} queues failed: {error}", p), queues=report, job_ids=touched)
    except ValueError as error:
        module.fail_json(msg=str(error), queues=report, job_ids=touched)
    finally:
        client.close()
    verb = {"retry_failed": "retried", "remove_failed": "removed", "pause": "paused", "resume": "resumed"}[action]
    what = "queues" if action in ("pause", "resume") else "jobs"
    prefix_msg = "would have " if module.check_mode else ""
    skipped = sum(len(r["skipped"]) for r in report.values())
    msg = f"{prefix_msg}{verb} {len(touched)} {what}" + (f"; {skipped} left alone (see queues)" if skipped else "")
    module.exit_json(changed=bool(touched), job_ids=touched, count=len(touched), queues=report, msg=msg)


if __name__ == "__main__":
    main()
