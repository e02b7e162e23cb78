# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: playbooks/queues.yml (depth only) against a shell loop of redis-cli calls over the same queues (issue 6).

Not a pytest test (performance is never asserted). Run from the repository root with the sandbox up:

    .venv/bin/python tests/bench/bench_queues.py [--rounds 5] [--queues 20] [--db 9]

Jobs are real: --queues BullMQ queues under a key prefix of our own, each filled by the queue tests' fixture
(tests/queues/node/fixture.js `populate`: completed and failed by a real Worker, delayed, prioritized, a flow
parent waiting for its child, one held active, waiting ones). The sandbox Redis is shared: this uses db 9, which
nobody else uses (the demo app has db 0, the queue tests db 7), and deletes exactly the keys under its prefix at
the end (SCAN + UNLINK, never FLUSHDB), also when it fails.

Before timing, three answers must agree for every queue and state: BullMQ's own Queue.getJobCounts(), the
counts in the playbook's queues_report (JSON callback) and the shell loop's output. Then, side by side in an
order that rotates every round:
- playbook: `ansible-playbook playbooks/queues.yml` with the queues by name in queues_watch, as an operator runs it
  (the three plays; nothing retried or scaled), against the sandbox inventory;
- shell: a bash loop doing what the seed runbook's `redis-cli llen bull:campaign-emails:waiting` does, for every
  queue and every state: one `redis-cli llen` (lists) or `zcard` (sorted sets) per (queue, state), the password
  in REDISCLI_AUTH (never in argv);
- empty: an ansible-playbook with no task, its fixed cost.
It prints the medians, the ratio playbook / shell and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib import (ANSIBLE_PLAYBOOK, ROOT, ansible_env, empty_playbook, load_average, medians, playbook_argv, run,
                      sandbox_env, sandbox_host_vars)

from tests.queues import harness  # benchlib put the repository root on sys.path

HOST = "sandbox-cache"
REPORT_TASK = "Report | the fact for the workers play and the report"
# BullMQ's state -> (redis-cli command, key suffix), as getJobCounts() reads them (BullMQ 5+: `wait`, not `waiting`)
STATES = {"waiting": ("llen", "wait"), "paused": ("llen", "paused"), "active": ("llen", "active"),
          "delayed": ("zcard", "delayed"), "prioritized": ("zcard", "prioritized"),
          "waiting-children": ("zcard", "waiting-children"), "completed": ("zcard", "completed"),
          "failed": ("zcard", "failed")}
LOOP = """#!/usr/bin/env bash
# redis-cli per queue and state, as the seed runbook's `redis-cli llen bull:<queue>:waiting` (with the keys
# BullMQ really uses). The password comes in REDISCLI_AUTH, never in argv.
set -euo pipefail
for q in "$@"; do
{lines}
done
"""


def fill(env: dict[str, str], prefix: str, names: list[str], workers: int) -> None:
    """Real jobs in every state in each queue, by BullMQ itself, a few fixture processes at a time."""
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job in [pool.submit(harness.node, env, "bullmq", "populate", prefix, q) for q in names]:
            job.result()
    print(f"filled {len(names)} queues in {time.monotonic() - start:.0f} s", flush=True)


def shell_loop(path: Path, redis_cli: str, port: int, db: int, prefix: str) -> None:
    lines = "\n".join(f'  echo "$q {state} $({redis_cli} -h 127.0.0.1 -p {port} -n {db} {command} '
                      f'"{prefix}:$q:{suffix}")"' for state, (command, suffix) in STATES.items())
    path.write_text(LOOP.format(lines=lines))
    path.chmod(0o700)


def shell_counts(stdout: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for queue, state, count in (line.split() for line in stdout.splitlines() if line.strip()):
        found.setdefault(queue, {})[state] = int(count)
    return found


def playbook_counts(argv: list[str]) -> dict[str, dict[str, int]]:
    """The counts of queues_report, from the JSON callback (untimed)."""
    _elapsed, stdout = run(argv, ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"))
    tasks = [t for play in json.loads(stdout)["plays"] for t in play["tasks"]
             if t["task"]["name"].endswith(REPORT_TASK)]  # "runbook.ops.queues : Report | ..."
    report = tasks[0]["hosts"][HOST]["ansible_facts"]["queues_report"]
    return {name: q["counts"] for e in report["entries"] for name, q in e["queues"].items()}


def agree(theirs: dict[str, dict[str, int]], **others: dict[str, dict[str, int]]) -> None:
    for name, ours in others.items():
        wrong = {q: (ours.get(q), counts) for q, counts in theirs.items() if ours.get(q) != counts}
        if wrong or set(ours) != set(theirs):
            raise SystemExit(f"{name} and BullMQ disagree: {dict(list(wrong.items())[:3])} "
                             f"(queues: {name} {len(ours)}, BullMQ {len(theirs)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queues", type=int, default=20)
    parser.add_argument("--db", type=int, default=9, help="a Redis database nobody else uses")
    parser.add_argument("--setup-workers", type=int, default=4, help="fixture processes at a time while filling")
    args = parser.parse_args()

    redis_cli = shutil.which("redis-cli")
    if not redis_cli:
        raise SystemExit("bench_queues: redis-cli is not on PATH (Debian: apt-get install redis-tools)")
    # a SIGTERM (make bench interrupted) must still reach the cleanup in `finally`
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    harness.DB = args.db  # the fixtures and harness.client read it at call time
    env, hostvars = sandbox_env(), sandbox_host_vars(HOST)
    prefix, names = harness.unique_prefix("benchqueues"), [f"bench-{i:02d}" for i in range(args.queues)]
    conn, tmp = harness.client(env), Path(tempfile.mkdtemp(prefix="bench-queues-"))
    print(f"bench_queues: queues.yml against a redis-cli loop over {args.queues} BullMQ queues on {HOST}, "
          f"Redis db {args.db}, prefix {prefix}", flush=True)
    try:
        fill(env, prefix, names, args.setup_workers)
        print(f"db {args.db} holds {conn.dbsize()} keys", flush=True)

        watch: dict[str, Any] = {"queues_watch": [{"library": "bullmq", "prefix": prefix, "db": args.db,
                                                   "queues": names}], "queues_fail_on": "never"}
        book = playbook_argv("queues.yml", watch)
        loop = tmp / "depth.sh"
        shell_loop(loop, redis_cli, int(hostvars["runbook_redis_port"]), args.db, prefix)
        loop_argv = ["bash", str(loop), *names]
        loop_env = {**os.environ, "REDISCLI_AUTH": str(hostvars["runbook_redis_password"])}

        theirs = {q: found["counts"] for q, found in harness.node(env, "bullmq", "counts", prefix, *names).items()}
        agree(theirs, playbook=playbook_counts(book), shell=shell_counts(run(loop_argv, loop_env)[1]))
        print(f"counts agree (BullMQ getJobCounts, queues.yml, redis-cli loop) for all {args.queues} queues and "
              f"{len(STATES)} states; timing {args.rounds} rounds", flush=True)

        with empty_playbook(HOST) as empty:
            steps = [("playbook", lambda: run(book, ansible_env())[0]),
                     ("shell", lambda: run(loop_argv, loop_env)[0]),
                     ("empty", lambda: run([ANSIBLE_PLAYBOOK, "-i", str(ROOT / "inventories/sandbox"), str(empty)],
                                           ansible_env())[0])]
            times: dict[str, list[float]] = {name: [] for name, _fn in steps}
            for n in range(args.rounds):
                turn = n % len(steps)
                for name, fn in steps[turn:] + steps[:turn]:
                    times[name].append(fn())
                print(f"round {n + 1}: " + ", ".join(f"{name} {times[name][-1]:.2f} s" for name, _fn in steps),
                      flush=True)

        med = medians(times)
        calls = args.queues * len(STATES)
        paired = statistics.median(p / s for p, s in zip(times["playbook"], times["shell"]))
        print(f"\nmedians over {args.rounds} rounds, {args.queues} queues x {len(STATES)} states:")
        print(f"  queues.yml (3 plays, depth only): {med['playbook']:.2f} s")
        print(f"  bash loop of {calls} redis-cli calls: {med['shell']:.2f} s "
              f"({med['shell'] / calls * 1000:.1f} ms a call)")
        print(f"  empty ansible-playbook: {med['empty']:.2f} s")
        print(f"  ratio queues.yml / shell loop: {med['playbook'] / med['shell']:.2f}x "
              f"(median of the per-round ratios {paired:.2f}x); over the empty run the playbook takes "
              f"{med['playbook'] - med['empty']:.2f} s")
        print(f"\n{load_average()} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        gone = harness.delete_keys(conn, [f"{prefix}:*"])
        print(f"cleanup: deleted {gone} keys under {prefix} in db {args.db}; {conn.dbsize()} keys left in db "
              f"{args.db}", flush=True)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
