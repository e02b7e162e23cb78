# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: runbook.ops.queue_depth over 50 queues against over 1 queue on one host (issue 6, goal <= 1.2x).

Not a pytest test (performance is never asserted). Run from the repository root with the sandbox up:

    .venv/bin/python tests/bench/bench_queue_depth.py [--rounds 5] [--queues 50] [--failed 200]
                                                      [--libraries bullmq rq] [--db 9]

Jobs are real: for each library, --queues queues under a key prefix of our own, each filled by the queue tests'
fixtures (tests/queues: node/fixture.js for BullMQ, python/rq_fixture.py for RQ): first --failed jobs failed by
the library's own worker, then `populate` (completed/finished and failed by a worker, delayed/scheduled,
prioritized, a flow parent waiting for its child or a deferred job, one held active (BullMQ), waiting jobs).
The sandbox Redis is shared: this uses a database nobody else uses (db 9; the demo app has db 0, the queue
tests db 7) and deletes exactly the keys under its prefixes at the end (SCAN + UNLINK, never FLUSHDB), also
when it fails.

Before timing, the counts queue_depth returns through ansible-playbook (JSON callback) must equal the library's
own counting API (BullMQ getJobCounts(), RQ's queue and registries) for every queue. Then, side by side in an
order that rotates every round, each library times:
- playbook: ansible-playbook of a one-task play on sandbox-cache (login from the inventory through
  runbook.ops.redis_login's module_defaults) over 1 queue, over the 50 by name, and over the 50 by the
  default pattern `*` (which adds a SCAN discovery of the database: every job is a key); and an empty play,
  ansible-playbook's fixed cost;
- module logic: what the module does once its arguments are parsed (connect and PING, queue_read.collect,
  evaluate), in this process, --reps times a round; no Ansible at all;
- raw: redis-py with the same counting commands in one pipeline, and one round trip per (queue, state), as a
  shell loop of `redis-cli llen` does.
It prints the medians, the ratios 50 / 1 with the goal met or not, and the load average.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import yaml

from benchlib import (ANSIBLE_PLAYBOOK, ROOT, ansible_env, empty_playbook, load_average, medians, playbook_argv, run,
                      sandbox_env, sandbox_host_vars)

sys.path.insert(0, str(ROOT / ".collections"))  # the collection as ansible_collections.runbook.ops (make setup)
from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils.queue_read import collect, evaluate, merge_thresholds  # noqa: E402
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import client_params, redis_argument_spec  # noqa: E402
from tests.queues import harness  # noqa: E402

HOST = "sandbox-cache"
GOAL = 1.2
VARIANTS = ("1", "50", "50*")  # one queue by name, all by name, all by the default pattern


def login_params(db: int) -> dict[str, Any]:
    """The module's login parameters as the playbook gets them: the inventory's runbook_redis_*, in db."""
    hostvars = sandbox_host_vars(HOST)
    params = {name: spec.get("default") for name, spec in redis_argument_spec().items()}
    params.update(login_host=hostvars["runbook_redis_host"], login_port=int(hostvars["runbook_redis_port"]),
                  login_password=hostvars.get("runbook_redis_password", ""), login_db=db)
    return params


# --- real jobs ------------------------------------------------------------------------------------

def fill_queue(env: dict[str, str], library: str, prefix: str, queue: str, failed: int) -> None:
    """Failed jobs first: populate's waiting jobs would otherwise be taken by the `failed` command's worker."""
    if library == "bullmq":
        harness.node(env, "bullmq", "failed", prefix, queue, str(failed))
        harness.node(env, "bullmq", "populate", prefix, queue)
    else:
        harness.python(env, "rq_fixture.py", "failed", queue, str(failed), RQ_KEY_PREFIX=prefix)
        harness.python(env, "rq_fixture.py", "populate", queue, RQ_KEY_PREFIX=prefix)


def library_counts(env: dict[str, str], library: str, prefix: str, queues: list[str]) -> dict[str, dict[str, int]]:
    if library == "bullmq":
        return {q: found["counts"] for q, found in harness.node(env, "bullmq", "counts", prefix, *queues).items()}
    return harness.python(env, "rq_fixture.py", "counts", *queues, RQ_KEY_PREFIX=prefix)


# --- what is timed --------------------------------------------------------------------------------

def write_play(path: Path, library: str, prefix: str, queues: list[str], expect: int) -> None:
    """One queue_depth task; it fails (so the benchmark stops) unless Redis answered with every queue."""
    play = [{
        "name": "Benchmark queue_depth",
        "hosts": HOST,
        "gather_facts": False,
        "roles": ["runbook.ops.redis_login"],
        "tasks": [{
            "name": "Queue depth",
            "module_defaults": {"group/runbook.ops.redis": "{{ __redis_login_module_defaults }}"},
            "runbook.ops.queue_depth": {"library": library, "prefix": prefix, "queues": queues},
            "register": "depth",
            "failed_when": f"not depth.is_available or (depth.queues | length) != {expect}",
        }],
    }]
    path.write_text(yaml.safe_dump(play, sort_keys=False))


def module_logic(params: dict[str, Any], library: str, prefix: str, queues: list[str]) -> dict[str, Any]:
    """queue_depth's main() without AnsibleModule: connect + PING, collect, evaluate, close."""
    client = redis.Redis(**client_params(params))
    try:
        client.ping()
        figures = collect(client, library, prefix, queues)
    finally:
        client.close()
    evaluate(figures, merge_thresholds({}))
    return figures


def count_commands(library: str, prefix: str, queues: list[str]) -> list[tuple[Any, ...]]:
    """The module's counting round trip for these queues (ages' LINDEX included, as the module sends them)."""
    now = time.time()
    commands: list[tuple[Any, ...]] = []
    for queue in queues:
        for probe in L.queue_probes(library, prefix, queue, now):
            commands.extend(probe.commands)
        commands.extend(L.oldest_probe(library, prefix, queue))
    return commands


def loop_commands(library: str, prefix: str, queues: list[str]) -> list[tuple[Any, ...]]:
    """One count per (queue, state), as `for q ...; for s ...; redis-cli llen|zcard` sends them."""
    now = time.time()
    return [probe.commands[0] for queue in queues for probe in L.queue_probes(library, prefix, queue, now)
            if probe.state != "is_paused"]


def raw_pipeline(params: dict[str, Any], commands: list[tuple[Any, ...]]) -> None:
    client = redis.Redis(**client_params(params))
    try:
        client.ping()
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()
    finally:
        client.close()


def raw_loop(params: dict[str, Any], commands: list[tuple[Any, ...]]) -> None:
    client = redis.Redis(**client_params(params))
    try:
        client.ping()
        for command in commands:
            client.execute_command(*command)
    finally:
        client.close()


def clock(fn: Callable[[], Any]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


# --- checks before timing -------------------------------------------------------------------------

def check_playbook_counts(argv: list[str], theirs: dict[str, dict[str, int]]) -> None:
    """Untimed: the counts the playbook returns equal the library's own, queue by queue."""
    _elapsed, stdout = run(argv, ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"))
    task = json.loads(stdout)["plays"][0]["tasks"][-1]
    ours = task["hosts"][HOST]["queues"]
    wrong = {q: (ours.get(q, {}).get("counts"), counts) for q, counts in theirs.items()
             if ours.get(q, {}).get("counts") != counts}
    if wrong or set(ours) != set(theirs):
        raise SystemExit(f"queue_depth and the library disagree: {dict(list(wrong.items())[:3])} "
                         f"(queues: ours {len(ours)}, theirs {len(theirs)})")


# --- the report ----------------------------------------------------------------------------------

def verdict(ratio: float) -> str:
    return f"goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}"


def paired(times: dict[str, list[float]], library: str, variant: str) -> float:
    """Median of the per-round ratios variant / 1 queue: both ran in the same round, so load drift cancels."""
    return statistics.median(m / o for m, o in zip(times[f"{library} playbook {variant}"], times[f"{library} playbook 1"]))


def report(library: str, n: int, times: dict[str, list[float]], trips: dict[str, int], rounds: int, reps: int) -> None:
    med = medians(times)
    fixed = med["empty"]
    one, many, pattern = (med[f"{library} playbook {v}"] for v in VARIANTS)
    print(f"\n{library}: {n} queues against 1, medians ({rounds} rounds; in-process figures {rounds * reps} runs)")
    print(f"  playbook, 1 queue {one:.2f} s, {n} by name {many:.2f} s, {n} by pattern {pattern:.2f} s, "
          f"empty ansible-playbook {fixed:.2f} s")
    print(f"  ratio playbook {n} / 1: by name {many / one:.2f}x ({verdict(many / one)}); "
          f"by pattern {pattern / one:.2f}x ({verdict(pattern / one)})")
    print(f"  median of the per-round ratios: by name {paired(times, library, '50'):.2f}x, "
          f"by pattern {paired(times, library, '50*'):.2f}x")
    print(f"  over the empty run: 1 queue {one - fixed:.2f} s, {n} by name {many - fixed:.2f} s "
          f"({(many - fixed) / (one - fixed):.2f}x), {n} by pattern {pattern - fixed:.2f} s "
          f"({(pattern - fixed) / (one - fixed):.2f}x)")
    logic = [med[f"{library} module {v}"] * 1000 for v in VARIANTS]
    print(f"  module logic (connect, collect, evaluate): 1 queue {logic[0]:.1f} ms, {n} by name {logic[1]:.1f} ms "
          f"({logic[1] / logic[0]:.2f}x), {n} by pattern {logic[2]:.1f} ms ({logic[2] / logic[0]:.2f}x); "
          f"round trips {trips['1']}, {trips['50']}, {trips['50*']} (after connect)")
    pipe1, pipe50 = med[f"{library} raw pipeline 1"] * 1000, med[f"{library} raw pipeline 50"] * 1000
    loop1, loop50 = med[f"{library} raw loop 1"] * 1000, med[f"{library} raw loop 50"] * 1000
    print(f"  raw redis-py, the same commands in one pipeline: 1 queue {pipe1:.1f} ms, {n} {pipe50:.1f} ms "
          f"({pipe50 / pipe1:.2f}x)")
    print(f"  raw redis-py, one round trip per queue and state: 1 queue {loop1:.1f} ms, {n} {loop50:.1f} ms "
          f"({loop50 / loop1:.2f}x, {loop50 / pipe50:.1f}x the pipeline)")
    print(f"  share of the playbook ({n} by name) that is the module's own work: {logic[1] / 1000 / many:.1%}; "
          f"the 1-queue playbook plus the module's extra work would be {(one + (logic[1] - logic[0]) / 1000) / one:.3f}x "
          f"by name, {(one + (logic[2] - logic[0]) / 1000) / one:.3f}x by pattern")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queues", type=int, default=50, help="queues per library")
    parser.add_argument("--failed", type=int, default=200, help="failed jobs per queue, on top of populate's")
    parser.add_argument("--libraries", nargs="+", choices=("bullmq", "rq"), default=["bullmq", "rq"])
    parser.add_argument("--reps", type=int, default=10, help="in-process runs of each kind per round")
    parser.add_argument("--db", type=int, default=9, help="a Redis database nobody else uses")
    parser.add_argument("--setup-workers", type=int, default=8, help="fixture processes at a time while filling")
    args = parser.parse_args()

    # a SIGTERM (make bench interrupted) must still reach the cleanup in `finally`
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    harness.DB = args.db  # the fixtures and harness.client read it at call time
    env = sandbox_env()
    params = login_params(args.db)
    prefixes = {lib: harness.unique_prefix(f"bench{lib}") for lib in args.libraries}
    names = [f"bench-{i:02d}" for i in range(args.queues)]
    conn = harness.client(env)
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-depth-"))
    print(f"bench_queue_depth: queue_depth over {args.queues} queues against 1 on {HOST}, "
          f"{', '.join(args.libraries)}, Redis db {args.db}, prefixes {', '.join(prefixes.values())}", flush=True)
    try:
        start = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=args.setup_workers)
        try:
            jobs = [pool.submit(fill_queue, env, lib, prefixes[lib], q, args.failed)
                    for lib in args.libraries for q in names]
            for job in jobs:
                job.result()
        finally:  # on a failure or SIGTERM, let the running fixtures end and drop the queued ones, then clean up
            pool.shutdown(wait=True, cancel_futures=True)
        print(f"filled {len(jobs)} queues in {time.monotonic() - start:.0f} s; db {args.db} holds "
              f"{conn.dbsize()} keys", flush=True)

        steps: list[tuple[str, Callable[[], float]]] = []
        trips: dict[str, dict[str, int]] = {}
        with empty_playbook(HOST) as empty:
            steps.append(("empty", lambda: run([ANSIBLE_PLAYBOOK, "-i", str(ROOT / "inventories/sandbox"),
                                                str(empty)], ansible_env())[0]))
            for lib in args.libraries:
                prefix = prefixes[lib]
                queues = {"1": names[:1], "50": names, "50*": ["*"]}
                theirs = library_counts(env, lib, prefix, names)
                trips[lib] = {}
                for variant, requested in queues.items():
                    play = tmp / f"{lib}-{variant.replace('*', 'all')}.yml"
                    write_play(play, lib, prefix, requested, 1 if variant == "1" else args.queues)
                    # an absolute path: pathlib's / keeps it, so playbook_argv takes it as it is
                    argv = playbook_argv(str(play), {"runbook_redis_db": args.db})
                    if variant == "50":
                        check_playbook_counts(argv, theirs)
                    steps.append((f"{lib} playbook {variant}", lambda a=argv: run(a, ansible_env())[0]))
                    trips[lib][variant] = module_logic(params, lib, prefix, requested)["round_trips"]
                    steps.append((f"{lib} module {variant}",
                                  lambda r=requested, p=prefix, b=lib: clock(lambda: module_logic(params, b, p, r))))
                for variant in ("1", "50"):
                    count, loop = count_commands(lib, prefix, queues[variant]), loop_commands(lib, prefix, queues[variant])
                    steps.append((f"{lib} raw pipeline {variant}", lambda c=count: clock(lambda: raw_pipeline(params, c))))
                    steps.append((f"{lib} raw loop {variant}", lambda c=loop: clock(lambda: raw_loop(params, c))))
            print(f"counts equal the libraries' own for all {args.queues} queues of "
                  f"{', '.join(args.libraries)}; timing {len(steps)} steps, {args.rounds} rounds", flush=True)

            times: dict[str, list[float]] = {name: [] for name, _fn in steps}
            for n in range(args.rounds):
                turn = n % len(steps)
                for name, fn in steps[turn:] + steps[:turn]:
                    reps = 1 if name == "empty" or " playbook " in name else args.reps
                    times[name].extend(fn() for _r in range(reps))
                shown = ", ".join(f"{name} {times[name][-1]:.2f} s" for name, _fn in steps if "playbook" in name)
                print(f"round {n + 1}: empty {times['empty'][-1]:.2f} s, {shown}", flush=True)

        for lib in args.libraries:
            report(lib, args.queues, times, trips[lib], args.rounds, args.reps)
        print(f"\n{load_average()} at the end")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        gone = harness.delete_keys(conn, [f"{p}:*" for p in prefixes.values()])
        print(f"cleanup: deleted {gone} keys under {', '.join(prefixes.values())} in db {args.db}; "
              f"{conn.dbsize()} keys left in db {args.db}", flush=True)
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
