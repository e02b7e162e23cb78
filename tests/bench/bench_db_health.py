# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: playbooks/db_health.yml on one fleet host against the same playbook on four fleet hosts.

Not a pytest test (performance is never asserted). Run from the repository root; it brings the podman
fleet up itself (sandbox/fleet.py up, a no-op of a few seconds when it is already up):

    .venv/bin/python tests/bench/bench_db_health.py [--rounds 5] [--profile-runs 3]

Only db1 runs PostgreSQL in the fleet, and db_health's module runs on the inventoried host and connects to
runbook_pg_host from there. So "four hosts" is a temporary inventory (a 0700 temp dir, files 0600, removed
at the end) that puts db1, cache1, web1 and app1 in the postgres group, each with runbook_pg_host: db1: four
real hosts, each running the real pg_health module over ssh and reading db1's PostgreSQL over the fleet's
podman network, as four database servers would be checked. The one-host inventory is db1 alone with the
same variables (db1 reaches itself under its podman name too), so that the host count is the only
difference. Starting PostgreSQL on the other hosts instead would change the fleet, which other tests share.
Traffic: ssh to 127.0.0.1 and PostgreSQL on the fleet network only.

Before timing it checks the four hosts (preflight.yml, tags preflight_python and preflight_services: psycopg
importable, PostgreSQL answers the login; it does not install anything), then runs the four-host playbook
once untimed with a JSON report and requires every host to have reached PostgreSQL. That run also opens the
ssh connections that every later run reuses (ControlPersist), as repeated runs do. Each round times one
host, four hosts and an empty ansible-playbook (its fixed cost), and requires every host's verdict to be
ok or warning. It prints the medians, the ratio four / one, the ratio after subtracting the empty run, the
cost of each extra host, and then, from --profile-runs more runs of each with ansible.posix.profile_tasks
(not timed: the callback has its own cost), the median time of every task, to show where each host's cost
goes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchlib import ANSIBLE_PLAYBOOK, ROOT, ansible_env, empty_playbook, medians, run, timed

FLEET_INVENTORY = ROOT / "inventories" / "fleet"
FOUR = ("db1", "cache1", "web1", "app1")
SUMMARY = re.compile(r"db_health: (\d+) hosts?: (\d+) ok, (\d+) warning, (\d+) critical, (\d+) unreachable")
PROFILE_LINE = re.compile(r"^(.+?) -{2,} (\d+\.\d+)s$")


def fleet_up() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "sandbox" / "fleet.py"), "up"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"sandbox/fleet.py up failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    print((proc.stdout.strip().splitlines() or ["fleet: up"])[-1], flush=True)


def fleet_inventory() -> tuple[dict[str, Any], dict[str, int], str, dict[str, Any]]:
    """What the fleet wrote: common vars, ssh port per host, the PostgreSQL host and the postgres group vars."""
    hosts_yml = yaml.safe_load((FLEET_INVENTORY / "hosts.yml").read_text())["all"]
    group_vars = {name: yaml.safe_load((FLEET_INVENTORY / "group_vars" / f"{name}.yml").read_text()) or {}
                  for name in ("all", "postgres")}
    ports = {host: hvars["ansible_port"] for group in hosts_yml["children"].values()
             for host, hvars in (group.get("hosts") or {}).items()}
    missing = [h for h in FOUR if h not in ports]
    if missing:
        raise SystemExit(f"the fleet inventory lacks {', '.join(missing)}")
    pg_hosts = list(hosts_yml["children"]["postgres"]["hosts"])
    return {**hosts_yml["vars"], **group_vars["all"]}, ports, pg_hosts[0], group_vars["postgres"]


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@contextlib.contextmanager
def inventories() -> Iterator[dict[str, Path]]:
    """one.yml (db1) and four.yml (db1, cache1, web1, app1): every host checks db1's PostgreSQL."""
    common, ports, db_host, pg_vars = fleet_inventory()
    # the fleet's own value is 127.0.0.1 (modules run on db1); from any host, db1 is its podman name
    pg_vars = {**pg_vars, "runbook_pg_host": db_host}
    tmp = Path(tempfile.mkdtemp(prefix="bench-db-health-"))  # 0700
    try:
        paths = {}
        for name, hosts in (("one", FOUR[:1]), ("four", FOUR)):
            inv = {"all": {"vars": common, "children": {"postgres": {
                "vars": pg_vars, "hosts": {h: {"ansible_port": ports[h]} for h in hosts}}}}}
            paths[name] = tmp / f"{name}.yml"
            write_private(paths[name], "# bench_db_health: temporary, TEST SECRET inside\n"
                          + yaml.safe_dump(inv, sort_keys=False))
        paths["dir"] = tmp
        yield paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_verdicts(stdout: str, hosts: int) -> None:
    """Every host did a real check: its verdict is ok or warning, none critical or unreachable."""
    found = SUMMARY.search(stdout)
    if not found:
        raise SystemExit(f"no db_health summary line in the output:\n{stdout[-3000:]}")
    total, ok, warning, _critical, _unreachable = (int(g) for g in found.groups())
    if total != hosts or ok + warning != hosts:
        raise SystemExit(f"expected {hosts} hosts ok or warning, got: {found.group(0)}")


def preflight(inventory: Path) -> None:
    argv = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(ROOT / "playbooks/preflight.yml"),
            "--tags", "preflight_python,preflight_services"]
    proc = subprocess.run(argv, env=ansible_env(), cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            "preflight of the four hosts failed (psycopg missing or PostgreSQL not answering from them):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}\n"
            "psycopg comes with the fleet image (sandbox/fleet/image/packages.txt); on a host that lacks it, "
            "playbooks/preflight.yml -e preflight_fix=true installs python3-psycopg")


def warm_up(playbook: list[str], report_dir: Path) -> None:
    """Untimed: each of the four hosts must have reached PostgreSQL (is_available in the JSON report)."""
    run([*playbook, "-e", json.dumps({"db_health_report_dir": str(report_dir)})], ansible_env())
    report = json.loads(next(report_dir.glob("db_health_*.json")).read_text())
    available = {h["host"] for h in report["hosts"] if h["result"].get("is_available")}
    if available != set(FOUR):
        reasons = {h["host"]: h["reasons"] for h in report["hosts"] if h["host"] not in available}
        raise SystemExit(f"only {sorted(available)} of {list(FOUR)} reached PostgreSQL: {reasons}")


def profile(playbook: list[str], runs: int) -> dict[str, float]:
    """Median seconds of every task (run order kept) over runs runs with ansible.posix.profile_tasks."""
    env = ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_SORT_ORDER="none",
                      PROFILE_TASKS_TASK_OUTPUT_LIMIT="all")
    tasks: dict[str, list[float]] = {}
    for _n in range(runs):
        _elapsed, stdout = run(playbook, env)
        recap = stdout.rpartition("TASKS RECAP")[2]
        for found in filter(None, map(PROFILE_LINE.match, recap.splitlines())):
            tasks.setdefault(found.group(1).strip(), []).append(float(found.group(2)))
    return medians(tasks)


def print_profile(one: dict[str, float], four: dict[str, float], runs: int) -> None:
    print(f"per task, median of {runs} profiled runs each (s): 1 host, 4 hosts, each extra host")
    extra = len(FOUR) - 1
    for task, secs in one.items():
        more = four.get(task, secs)
        print(f"  {secs:5.2f} {more:5.2f} {(more - secs) / extra:+6.2f}  {task}")
    total_one, total_four = sum(one.values()), sum(four.values())
    print(f"  {total_one:5.2f} {total_four:5.2f} {(total_four - total_one) / extra:+6.2f}  all tasks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile-runs", type=int, default=3,
                        help="runs of each with ansible.posix.profile_tasks after the rounds (0: none)")
    args = parser.parse_args()

    fleet_up()
    print(f"bench_db_health: playbooks/db_health.yml on {FOUR[0]} against {', '.join(FOUR)} "
          f"(each checking {FOUR[0]}'s PostgreSQL), {args.rounds} rounds", flush=True)
    times: dict[str, list[float]] = {"one": [], "four": [], "empty": []}
    with inventories() as inv, empty_playbook() as empty:
        playbook = {n: [ANSIBLE_PLAYBOOK, "-i", str(inv[n]), str(ROOT / "playbooks/db_health.yml")]
                    for n in ("one", "four")}
        empty_play = [ANSIBLE_PLAYBOOK, "-i", str(inv["four"]), str(empty)]
        preflight(inv["four"])
        warm_up(playbook["four"], inv["dir"] / "report")
        for n in range(args.rounds):
            for name, hosts in (("one", 1), ("four", len(FOUR))):
                elapsed, stdout = run(playbook[name], ansible_env())
                check_verdicts(stdout, hosts)
                times[name].append(elapsed)
            times["empty"].append(timed(empty_play, ansible_env()))
            print(f"round {n + 1}: 1 host {times['one'][-1]:.2f} s, 4 hosts {times['four'][-1]:.2f} s, "
                  f"empty ansible-playbook {times['empty'][-1]:.2f} s", flush=True)
        profiled = [profile(playbook[n], args.profile_runs) for n in ("one", "four")] if args.profile_runs else []

    med = medians(times)
    fixed = med["empty"]
    print(f"median: 1 host {med['one']:.2f} s, 4 hosts {med['four']:.2f} s, empty ansible-playbook {fixed:.2f} s")
    print(f"ratio 4 hosts / 1 host: {med['four'] / med['one']:.2f}x")
    print(f"ratio after subtracting the empty run: {(med['four'] - fixed) / (med['one'] - fixed):.2f}x")
    print(f"each extra host: {(med['four'] - med['one']) / (len(FOUR) - 1):.2f} s "
          f"(the first host: {med['one'] - fixed:.2f} s over the empty run)")
    if profiled:
        print_profile(*profiled, args.profile_runs)
    # the machine may be shared (other test runs): say how busy it was, to read the numbers by
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    sys.exit(main())
