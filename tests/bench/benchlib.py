# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the benchmarks in tests/bench: target environments, timed runs, medians."""
from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.lib.envfile import read_env  # noqa: E402  (the benchmarks run as scripts from tests/bench)

ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")


def sandbox_env() -> dict[str, str]:
    return read_env(ROOT / ".sandbox" / "env")


def ansible_env(**extra: str) -> dict[str, str]:
    """This checkout's ansible.cfg, no colours (output is parsed and logged)."""
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **extra}


def run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of argv run from the repository root; a failure ends the benchmark."""
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout


def attempt(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, exit code, stdout + stderr) of argv, for a benchmark that reports a failure and goes on."""
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    return time.monotonic() - start, proc.returncode, proc.stdout + proc.stderr


def timed(argv: list[str], env: dict[str, str]) -> float:
    return run(argv, env)[0]


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in times.items()}


@contextlib.contextmanager
def empty_playbook(hosts: str = "postgres") -> Iterator[Path]:
    """A play with no tasks: ansible-playbook's fixed cost (start-up, inventory, no connection)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as empty:
        empty.write(f"- name: Empty\n  hosts: {hosts}\n  gather_facts: false\n  tasks: []\n")
    try:
        yield Path(empty.name)
    finally:
        os.unlink(empty.name)


# --- added for bench_backup.py; shared by any benchmark of the sandbox's PostgreSQL ---------------------------

SANDBOX_INVENTORY = ROOT / "inventories" / "sandbox"


def sandbox_host_vars(host: str = "sandbox-db") -> dict[str, Any]:
    """One host's variables in the sandbox inventory (what `make sandbox-up` wrote), e.g. runbook_pg_bindir."""
    inventory = yaml.safe_load((SANDBOX_INVENTORY / "hosts.yml").read_text())["all"]
    # a host may sit in several groups (sandbox-app: app and workers), each with some of its variables
    groups = [g for g in inventory.get("children", {}).values() if host in (g.get("hosts") or {})]
    if not groups:
        raise SystemExit(f"the sandbox inventory has no host {host}")
    found = dict(inventory.get("vars", {}))
    for group in groups:
        found.update({**(group.get("vars") or {}), **(group["hosts"][host] or {})})
    return found


def pg_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of the raw PostgreSQL tools: the admin login, its password in PGPASSWORD only (never argv)."""
    return {**os.environ, "PGHOST": env["PGHOST"], "PGPORT": env["PGPORT"], "PGUSER": env["RUNBOOK_PG_ADMIN_USER"],
            "PGPASSWORD": env["RUNBOOK_PG_ADMIN_PASSWORD"]}


def playbook_argv(playbook: str, extra_vars: dict[str, Any] | None = None,
                  inventory: Path = SANDBOX_INVENTORY) -> list[str]:
    """ansible-playbook of playbooks/<playbook>; the extra vars as one JSON -e, so that types survive."""
    argv = [ANSIBLE_PLAYBOOK, "-i", str(inventory), str(ROOT / "playbooks" / playbook)]
    return [*argv, "-e", json.dumps(extra_vars)] if extra_vars else argv


def timed_all(argvs: list[list[str]], env: dict[str, str]) -> float:
    """Wall seconds of several commands run one after the other, timed as one step (e.g. createdb + pg_restore)."""
    return sum(timed(argv, env) for argv in argvs)


def load_average() -> str:
    """The machine may be shared (other test runs): say how busy it was, to read the numbers by."""
    return f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"


PROFILE_TASK_LINE = re.compile(r"^(.+?) -{2,} (\d+\.\d+)s$")


def profile_tasks(argv: list[str], runs: int = 1) -> dict[str, float]:
    """Median seconds of every task (run order kept) over runs runs with ansible.posix.profile_tasks (untimed)."""
    env = ansible_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PROFILE_TASKS_SORT_ORDER="none",
                      PROFILE_TASKS_TASK_OUTPUT_LIMIT="all")
    tasks: dict[str, list[float]] = {}
    for _n in range(runs):
        _elapsed, stdout = run(argv, env)
        recap = stdout.rpartition("TASKS RECAP")[2]
        for found in filter(None, map(PROFILE_TASK_LINE.match, recap.splitlines())):
            tasks.setdefault(found.group(1).strip(), []).append(float(found.group(2)))
    return medians(tasks)
