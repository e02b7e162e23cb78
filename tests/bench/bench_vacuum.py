# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: playbooks/vacuum.yml (vacuum_jobs=2) against `vacuumdb --analyze -j2` on the same dirty data.

Not a pytest test (performance is never asserted). Run from the repository root with the sandbox up:

    .venv/bin/python tests/bench/bench_vacuum.py [--tables 10] [--rows 200000] [--rounds 5]

It creates the scratch database vacuum_bench (dropped at the end), with --tables tables of --rows rows
and autovacuum off, and runs one untimed round (dirty, vacuumdb) so that every timed contender meets
tables in the same state (the first UPDATE after the load doubles a packed table; later ones reuse the
space VACUUM freed). Each round re-dirties every table (an UPDATE of every row: --rows dead tuples
each) before timing each contender, in an order that rotates from round to round. It prints each
round with the load average, the medians, the module's own phases (from the playbook's report line:
reads, statements, re-read), the plain ratio, the ratio after subtracting the fixed cost of an empty
ansible-playbook run, and the goal (at most 1.05x plus at most 2 s), met or not.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time

import psycopg
from psycopg import sql

from benchlib import ANSIBLE_PLAYBOOK, ROOT, ansible_env, empty_playbook, load_average, medians, run, sandbox_env, timed

DB = "vacuum_bench"
CONTENDERS = ("playbook", "vacuumdb", "empty")
# the module's phases, from the report line "<db>: timings: ..." (the yaml output wraps it: read with
# whitespace collapsed)
TIMINGS = re.compile(r"timings: connect ([\d.]+) s, read ([\d.]+) s, statements ([\d.]+) s in \d+ session\(s\), "
                     r"re-read ([\d.]+) s")
PHASES = ("connect", "read", "statements", "re-read")


def connect(env: dict[str, str], dbname: str) -> psycopg.Connection:
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True,
                           application_name="runbook.ops-bench")


def create(env: dict[str, str], tables: int, rows: int) -> None:
    with connect(env, "postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    with connect(env, DB) as conn:
        for i in range(tables):
            t = sql.Identifier(f"bench_{i:02d}")
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text, n int) "
                                 "WITH (autovacuum_enabled = false)").format(t))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, md5(g::text), 0 FROM generate_series(1, %s) g").format(t),
                         (rows,))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(t))


def dirty(env: dict[str, str], tables: int, rows: int) -> None:
    """Every row updated once: rows dead tuples per table, then wait until the statistics show them."""
    with connect(env, DB) as conn:
        for i in range(tables):
            conn.execute(sql.SQL("UPDATE {} SET n = n + 1").format(sql.Identifier(f"bench_{i:02d}")))
        conn.execute("CHECKPOINT")  # each contender starts with no dirty buffers of the update to write
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with connect(env, DB) as conn:
            low = conn.execute("SELECT count(*) FROM pg_stat_user_tables WHERE n_dead_tup < %s", (rows,)).fetchone()[0]
        if low == 0:
            return
        time.sleep(0.2)
    raise SystemExit("the statistics never showed the dead tuples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--rows", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    env = sandbox_env()
    bindir = "/usr/lib/postgresql/15/bin"
    pg_env = {**os.environ, "PGHOST": env["PGHOST"], "PGPORT": env["PGPORT"], "PGUSER": env["RUNBOOK_PG_ADMIN_USER"],
              "PGPASSWORD": env["RUNBOOK_PG_ADMIN_PASSWORD"]}
    playbook = [ANSIBLE_PLAYBOOK, "-i", str(ROOT / "inventories/sandbox"),
                str(ROOT / "playbooks/vacuum.yml"), "-e", json.dumps({"vacuum_databases": [DB], "vacuum_jobs": 2})]
    vacuumdb = [f"{bindir}/vacuumdb", "--analyze", "-j2", "-d", DB]

    print(f"bench_vacuum: {args.tables} tables x {args.rows} rows, {args.rows} dead tuples each per round, "
          f"{args.rounds} rounds", flush=True)
    create(env, args.tables, args.rows)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    try:
        with empty_playbook() as empty:
            empty_play = [ANSIBLE_PLAYBOOK, "-i", str(ROOT / "inventories/sandbox"), str(empty)]
            dirty(env, args.tables, args.rows)
            timed(vacuumdb, pg_env)  # untimed round: the tables reach the state every later round starts from
            for n in range(args.rounds):
                order = CONTENDERS[n % 3:] + CONTENDERS[:n % 3]
                for name in order:
                    if name == "empty":
                        times["empty"].append(timed(empty_play, ansible_env()))
                        continue
                    dirty(env, args.tables, args.rows)
                    if name == "vacuumdb":
                        times["vacuumdb"].append(timed(vacuumdb, pg_env))
                        continue
                    elapsed, stdout = run(playbook, ansible_env())
                    times["playbook"].append(elapsed)
                    if f"vacuum: {args.tables} table(s) processed" not in stdout:
                        raise SystemExit(f"the playbook did not vacuum the {args.tables} tables:\n{stdout[-3000:]}")
                    found = TIMINGS.search(" ".join(stdout.split()))
                    if found:
                        for phase, value in zip(PHASES, found.groups()):
                            phases[phase].append(float(value))
                print(f"round {n + 1} ({', '.join(order)}): playbook {times['playbook'][-1]:.2f} s, "
                      f"vacuumdb {times['vacuumdb'][-1]:.2f} s, "
                      f"empty ansible-playbook {times['empty'][-1]:.2f} s; {load_average()}", flush=True)
    finally:
        with connect(env, "postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))

    med = medians(times)
    fixed = med["empty"]
    print(f"median: playbook {med['playbook']:.2f} s, vacuumdb --analyze -j2 {med['vacuumdb']:.2f} s, "
          f"empty ansible-playbook {fixed:.2f} s")
    if phases["statements"]:
        inside = {phase: statistics.median(values) for phase, values in phases.items()}
        print("median phases inside the module: " + ", ".join(f"{phase} {value:.2f} s" for phase, value in inside.items())
              + f" (the rest of the playbook: {med['playbook'] - sum(inside.values()):.2f} s)")
    print(f"ratio playbook / vacuumdb: {med['playbook'] / med['vacuumdb']:.2f}x")
    print(f"ratio after subtracting the empty run: {(med['playbook'] - fixed) / med['vacuumdb']:.2f}x")
    print(f"playbook overhead over vacuumdb: {med['playbook'] - med['vacuumdb']:.2f} s "
          f"(goal: at most 1.05x plus at most 2 s, i.e. <= {1.05 * med['vacuumdb'] + 2:.2f} s: "
          f"{'met' if med['playbook'] <= 1.05 * med['vacuumdb'] + 2 else 'NOT met'})")
    print(load_average())


if __name__ == "__main__":
    sys.exit(main())
