# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the benchmarks in tests/bench: target environments, timed runs, medians."""
from __future__ import annotations

import contextlib
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")


def read_env(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of .sandbox/env or .fleet/env (what the conftest fixtures read)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


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
