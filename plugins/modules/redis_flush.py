#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.redis_flush: FLUSHDB of a cache database, refused where job queues live."""
from __future__ import annotations

DOCUMENTATION = r"""
module: redis_flush
short_description: Empty a Redis cache database with FLUSHDB, refusing a database that holds job-queue keys
version_added: 0.3.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the seed runbooks' C(If memory issues, flush cache - redis-cli FLUSHDB) step, with the guard the
    seed leaves out - B(a database that holds job-queue keys is refused), because FLUSHDB there deletes every
    queued, delayed and failed job.
  - "Queue keys are the layouts the libraries document: BullMQ and Bull (C(bull:*)), RQ (C(rq:*)), Celery with the
    Redis transport (C(celery), C(_kombu.binding.*), C(unacked*)), Sidekiq (C(queue:*), C(queues), C(schedule),
    C(retry), C(dead)). Exact names are checked with C(EXISTS) in one pipelined round trip, patterns with
    C(SCAN) + C(MATCH) and a large C(COUNT), stopping at the first key found."
  - Idempotent - an empty database is not flushed and reports C(changed=false).
  - "Check mode reads for real (key count, queue-key guard) and writes nothing: it returns the number of keys it
    would delete (RV(keys_before), RV(would_flush)) and refuses a queue database exactly as the real run would."
  - C(community.general.redis) can flush a database too, but it reports a change for an empty one, in check mode
    and for real, and has no guard; this module exists for the guard and the honest change.
extends_documentation_fragment:
  - runbook.ops.redis
options:
  database:
    description:
      - The number of the database to flush. Required, and deliberately not O(login_db) - the shared login's
        database (C(runbook_redis_db)) is the application's, often its queue database, and must never be flushed
        because it is a default.
    type: int
    required: true
  queue_key_patterns:
    description:
      - Key names and glob patterns (C(*), C(?), C([...]), as C(SCAN MATCH) reads them) of job-queue keys. A
        database holding any such key is refused unless O(force=true).
      - Replace C(bull:*) by your BullMQ C(prefix), add your own layouts; an empty list turns the guard off.
    type: list
    elements: str
    default: ["bull:*", "rq:*", "celery", "_kombu.binding.*", "unacked*", "queue:*", "queues", "schedule", "retry", "dead"]
  force:
    description: Flush even when a queue key is found (it is still reported in RV(queue_key)).
    type: bool
    default: false
  scan_count:
    description: The C(COUNT) hint of every C(SCAN) call of the guard - larger is fewer round trips over a big database.
    type: int
    default: 10000
  asynchronous:
    description: C(FLUSHDB ASYNC) - the keys leave the keyspace at once and their memory is freed in a background
      thread, so a large cache does not block the server while it is freed.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads the key count and runs the guard for real; never sends FLUSHDB.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The guard and the flush are two steps; a queue key written between them (microseconds apart) would be flushed.
    Keep caches and queues in different databases, better in different servers, so that this cannot matter.
  - The login needs C(FLUSHDB), C(DBSIZE), C(SCAN) and C(EXISTS) (ACL categories C(@keyspace) and C(@dangerous)).
seealso:
  - module: community.general.redis
  - module: runbook.ops.redis_health
"""

EXAMPLES = r"""
- name: Empty the cache database 1, refusing it if it holds job queues
  runbook.ops.redis_flush:
    login_host: "{{ runbook_redis_host }}"
    login_password: "{{ runbook_redis_password }}"
    database: 1
  register: flushed

- name: BullMQ with its own prefix, plus the application's own queue keys
  runbook.ops.redis_flush:
    login_password: "{{ runbook_redis_password }}"
    database: 2
    queue_key_patterns: ["myapp-bull:*", "jobs:*"]
"""

RETURN = r"""
database:
  description: The database number.
  returned: always
  type: int
  sample: 1
keys_before:
  description: C(DBSIZE) before the flush.
  returned: always
  type: int
  sample: 1532
keys_after:
  description: C(DBSIZE) after the flush (the application may already have written new cache keys); null in check mode.
  returned: always
  type: int
  sample: 0
flushed:
  description: Whether FLUSHDB was sent.
  returned: always
  type: bool
  sample: true
would_flush:
  description: Whether the database would be (or was) flushed.
  returned: always
  type: bool
  sample: true
queue_key:
  description: The first job-queue key found, null when there is none.
  returned: always
  type: str
  sample: "bull:emails:wait"
queue_key_pattern:
  description: The pattern of O(queue_key_patterns) it matched.
  returned: always
  type: str
  sample: "bull:*"
scan_calls:
  description: Round trips the guard took (one for every exact name together, one per SCAN call).
  returned: always
  type: int
  sample: 8
msg:
  description: What was done, or why not.
  returned: always
  type: str
  sample: "flushed database 1: 1532 keys deleted"
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.redis_flush_guard import (
    DEFAULT_QUEUE_KEY_PATTERNS,
    find_queue_key,
)
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import (
    RedisError,
    connect_or_fail,
    error_message,
    redis_argument_spec,
    where,
)


def argument_spec() -> dict[str, Any]:
    return redis_argument_spec(
        database={"type": "int", "required": True},
        queue_key_patterns={"type": "list", "elements": "str", "default": list(DEFAULT_QUEUE_KEY_PATTERNS), "no_log": False},
        force={"type": "bool", "default": False},
        scan_count={"type": "int", "default": 10000},
        asynchronous={"type": "bool", "default": False},
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    db = params["database"]
    if db < 0:
        module.fail_json(msg=f"database must be 0 or more, got {db}")
    if params["scan_count"] < 1:
        module.fail_json(msg="scan_count must be at least 1")
    result: dict[str, Any] = {"changed": False, "database": db, "keys_before": 0, "keys_after": None, "flushed": False,
                              "would_flush": False, "queue_key": None, "queue_key_pattern": None, "scan_calls": 0}
    client = connect_or_fail(module, db=db, **result)
    place = where(params, db)
    try:
        result["keys_before"] = client.dbsize()
        if result["keys_before"] == 0:
            result["keys_after"] = 0
            module.exit_json(msg=f"database {db} is empty: nothing to flush", **result)
        key, pattern, calls = find_queue_key(client, params["queue_key_patterns"], params["scan_count"])
        result.update(queue_key=key, queue_key_pattern=pattern, scan_calls=calls)
        if key is not None and not params["force"]:
            module.fail_json(msg=f"refusing to flush database {db} at {place}: it holds job-queue keys (first found "
                                 f"{key!r}, pattern {pattern!r}); FLUSHDB would delete the jobs. Flush a cache "
                                 "database, or set force=true (flush_cache_force=true) to delete the jobs too",
                             **result)
        result.update(changed=True, would_flush=True)
        forced = f" (forced: queue key {key!r} found)" if key is not None else ""
        if module.check_mode:
            module.exit_json(msg=f"would flush database {db}: {result['keys_before']} keys{forced}", **result)
        client.flushdb(asynchronous=params["asynchronous"])
        result["flushed"] = True
        result["keys_after"] = client.dbsize()
    except RedisError as exc:
        module.fail_json(msg=error_message(exc, params, db), **result)
    finally:
        client.close()
    module.exit_json(msg=f"flushed database {db}: {result['keys_before']} keys deleted{forced}", **result)


if __name__ == "__main__":
    main()
