#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.queue_depth: how many jobs wait, run, failed... in each queue, counted as the library counts them."""
from __future__ import annotations

DOCUMENTATION = r"""
module: queue_depth
short_description: Count the jobs of BullMQ, Bull, RQ, Celery or Sidekiq queues in every state, with a verdict
version_added: 0.3.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the diagnosis of the seed runbooks' C(Queue Backlog) and C(Email Alerts Failing) procedures
    (C(redis-cli llen bull:campaign-emails:waiting)), for every queue and every state at once. Note that the
    seeds' key C(bull:<queue>:waiting) does not exist in Bull or BullMQ (the list is C(bull:<queue>:wait)), so
    that command always prints 0; this module reads the keys the libraries really use.
  - "Counts each state the way the library's own API does (read from its source):
    B(BullMQ) C(Queue.getJobCounts()): V(waiting), V(paused) (a legacy list: BullMQ 5 and later keep a paused
    queue's jobs in C(wait)), V(active), V(delayed), V(prioritized), V(waiting-children), V(completed), V(failed);
    B(Bull) C(Queue.getJobCounts()): V(waiting), V(paused), V(active), V(delayed), V(completed), V(failed);
    B(RQ) C(len(Queue)) as V(waiting), and the registries' C(count) (V(started), V(finished), V(failed),
    V(deferred), V(scheduled), V(canceled)), counting what RQ's own cleanup would leave, without deleting
    anything; B(Celery) (kombu's Redis transport C(_size)): V(waiting), summed over the priority lists, and
    V(unacked) in RV(global); B(Sidekiq) C(Queue#size) as V(waiting), and C(Sidekiq::Stats)' V(scheduled),
    V(retry), V(dead) and V(busy) in RV(global)."
  - The age of the oldest waiting job where the library records it (BullMQ and Bull C(timestamp), RQ
    C(enqueued_at), Sidekiq C(enqueued_at), as Sidekiq's C(Queue#latency)). Celery's messages carry no enqueue
    time, so for Celery it is null.
  - "Round trips: every count of every queue in B(one) pipelined round trip; one more to discover queue names
    when O(queues) has patterns (a SCAN for BullMQ and Bull, which takes one round trip per 1000 keys; a set
    for RQ and Sidekiq); one more for the ages of the oldest jobs (BullMQ, Bull, RQ). RV(round_trips) says how
    many it took."
  - B(A health check reports, it never fails.) An unreachable Redis is a result (RV(is_available=false),
    RV(verdict=critical), the reason), not a failed task; the password never appears in it.
extends_documentation_fragment:
  - runbook.ops.redis
options:
  library:
    description: The job-queue library whose keys to read.
    type: str
    required: true
    choices: [bullmq, bull, rq, celery, sidekiq]
  queues:
    description:
      - Queue names, or glob patterns (C(*), C(?), C([...])) matched against the queues the library has
        registered in Redis (BullMQ C(<prefix>:*:meta) keys, Bull C(<prefix>:*:id) keys, RQ's C(rq:queues)
        set, Sidekiq's C(queues) set).
      - An exact name is always reported, with zeros when it has no jobs.
      - Celery (kombu) keeps no list of queues in Redis, so give its queue names; the default there is
        C(celery), Celery's default queue.
    type: list
    elements: str
    default: ['*']
  prefix:
    description:
      - The key prefix. Defaults to the library's own default; C(bull) for BullMQ and Bull (their C(prefix)
        option), C(rq) for RQ (C(RQ_KEY_PREFIX)), empty for Celery (kombu's C(global_keyprefix), given with its
        separator, e.g. C(myapp:)) and for Sidekiq (a C(redis-namespace) namespace, without the colon).
    type: str
  states:
    description: Count only these states (names as in RV(queues)); default all of the library's states.
    type: list
    elements: str
  oldest_waiting:
    description: Also read the age of each queue's oldest waiting job (one more round trip for BullMQ, Bull, RQ).
    type: bool
    default: true
  thresholds:
    description:
      - "Per state, the count at or beyond which the verdict is V(warning) or V(critical), for example
        C({waiting: {warning: 1000, critical: 5000}, failed: {warning: 1}}). The key V(oldest_waiting) takes
        seconds. They apply to every queue that has the state, and to RV(global) (Sidekiq's V(dead), ...)."
      - "Given states replace the defaults level by level; a state set to C({}) or null has no threshold.
        Defaults (not from the seeds, which give no numbers; set them to your service levels):
        V(waiting) 1000 / 5000, V(failed) 1 / 100, V(dead) 1 / 100, V(oldest_waiting) 300 / 900 seconds."
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing.
notes:
  - A key of an unexpected type (for example a list where the library keeps a sorted set) is not counted; it is
    named in RV(errors) and makes the verdict at least V(warning).
  - RQ's C(ReadyJobRegistry) (jobs whose dependencies just finished) is not counted; RQ's own count of it moves
    them into the queue first, which a read-only check must not do.
  - RQ's C(StartedJobRegistry.count) first moves abandoned jobs (their worker died) to the failed registry. This
    module leaves them out of V(started) as RQ does, but cannot add them to V(failed) without writing, so until RQ
    cleans up, V(failed) can be lower than RQ's count by the number of abandoned jobs.
  - Discovering BullMQ or Bull queues from a pattern SCANs the whole database (every job is a key); on a large
    Redis give exact queue names, which need no discovery.
seealso:
  - module: runbook.ops.queue_jobs
"""

EXAMPLES = r"""
- name: Depth of every BullMQ queue, the seed's campaign-emails among them
  runbook.ops.queue_depth:
    library: bullmq
    login_host: 127.0.0.1
    login_password: "{{ runbook_redis_password }}"
  register: depth

- name: The waiting jobs of one queue
  ansible.builtin.debug:
    msg: "{{ depth.queues['campaign-emails'].counts.waiting }} waiting"

- name: RQ queues of the app, stricter on failed jobs
  runbook.ops.queue_depth:
    library: rq
    queues: ['alerts', 'default']
    thresholds:
      failed: {warning: 1, critical: 10}
      waiting: {warning: 200}

- name: Celery queues (names, with the priority lists summed as kombu does)
  runbook.ops.queue_depth:
    library: celery
    queues: [celery, emails]
"""

RETURN = r"""
is_available:
  description: Whether the Redis server answered.
  returned: always
  type: bool
library:
  description: The library read.
  returned: always
  type: str
prefix:
  description: The key prefix used.
  returned: always
  type: str
queues:
  description: Per queue name, its figures.
  returned: always
  type: dict
  sample:
    campaign-emails:
      counts: {waiting: 12, paused: 0, active: 2, delayed: 1, prioritized: 0, waiting-children: 0, completed: 40, failed: 3}
      paused: false
      oldest_waiting_job: "17"
      oldest_waiting_seconds: 42.5
      verdict: warning
      reasons: ["campaign-emails: 3 failed (>= 1)"]
  contains:
    counts:
      description: Jobs per state, counted as the library counts them.
      type: dict
    paused:
      description: Whether the queue is paused (BullMQ C(meta.paused), Bull C(meta-paused)); null for libraries
        without a pause.
      type: bool
    oldest_waiting_job:
      description: The id of the oldest waiting job (Sidekiq's C(jid)), or null.
      type: str
    oldest_waiting_seconds:
      description: Its age in seconds, or null when the library does not record it or nothing waits.
      type: float
    verdict:
      description: V(ok), V(warning) or V(critical) for this queue.
      type: str
    reasons:
      description: One line per threshold reached.
      type: list
      elements: str
global:
  description: Library-wide figures that belong to no single queue (Sidekiq V(scheduled), V(retry), V(dead),
    V(busy); Celery V(unacked)); empty for the others.
  returned: always
  type: dict
  sample: {scheduled: 0, retry: 2, dead: 1, busy: 1}
totals:
  description: Each state summed over the queues.
  returned: always
  type: dict
verdict:
  description: The worst verdict over all queues and RV(global); V(critical) when Redis is unreachable.
  returned: always
  type: str
reasons:
  description: Every finding, critical ones first.
  returned: always
  type: list
  elements: str
thresholds:
  description: The thresholds applied.
  returned: always
  type: dict
errors:
  description: Figures that could not be read (for example a key of an unexpected type).
  returned: always
  type: list
  elements: str
round_trips:
  description: Round trips to Redis the reading took (discovery, counts, ages).
  returned: when available
  type: int
msg:
  description: The verdict and its reasons in one line.
  returned: always
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L
from ansible_collections.runbook.ops.plugins.module_utils.queue_options import queue_argument_spec
from ansible_collections.runbook.ops.plugins.module_utils.queue_read import collect, evaluate, merge_thresholds
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import RedisError, connect, redact


def argument_spec() -> dict[str, Any]:
    return queue_argument_spec(
        queues={"type": "list", "elements": "str", "default": ["*"]},
        states={"type": "list", "elements": "str"},
        oldest_waiting={"type": "bool", "default": True},
        thresholds={"type": "dict", "default": {}},
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    library = params["library"]
    prefix = L.prefix_for(library, params["prefix"])
    queues = params["queues"]
    if queues == ["*"] and library in L.DEFAULT_QUEUE:  # Celery: no list of queues to match '*' against
        queues = [L.DEFAULT_QUEUE[library]]
    known = set(L.STATES[library]) | set(L.GLOBAL_STATES.get(library, ()))
    unknown = sorted(set(params["states"] or []) - known)
    if unknown:
        module.fail_json(msg=f"states not in {library}: {', '.join(unknown)} (it has: {', '.join(sorted(known))})")
    try:
        thresholds = merge_thresholds(params["thresholds"])
    except ValueError as err:
        module.fail_json(msg=str(err))
    result: dict[str, Any] = {"changed": False, "library": library, "prefix": prefix, "queues": {}, "global": {},
                              "totals": {}, "errors": [], "thresholds": thresholds}
    client, err = connect(module)
    if client is None:
        result.update(is_available=False, verdict="critical", reasons=[err], msg=f"critical: {err}")
        module.exit_json(**result)
    try:
        figures = collect(client, library, prefix, queues, params["states"], params["oldest_waiting"])
    except ValueError as error:
        module.fail_json(msg=str(error), **result)
    except RedisError as error:
        reason = redact(f"reading the queues failed: {error}", params)
        result.update(is_available=False, verdict="critical", reasons=[reason], msg=f"critical: {reason}")
        module.exit_json(**result)
    finally:
        client.close()
    verdict, reasons = evaluate(figures, thresholds)
    totals: dict[str, int] = {}
    for entry in figures["queues"].values():
        for state, count in entry["counts"].items():
            totals[state] = totals.get(state, 0) + count
    result.update(is_available=True, queues=figures["queues"], totals=totals, errors=figures["errors"],
                  round_trips=figures["round_trips"], verdict=verdict, reasons=reasons,
                  msg=verdict if not reasons else f"{verdict}: {'; '.join(reasons)}")
    result["global"] = figures["global"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
