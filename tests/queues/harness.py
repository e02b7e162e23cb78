# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the queue tests share: a Redis database of their own, unique key prefixes, the real libraries' fixtures.

The sandbox Redis is shared (the demo app uses db 0), so the queue tests use db 7 (RUNBOOK_QUEUE_TEST_DB),
a key prefix no one else has, and delete exactly their own keys afterwards (SCAN + UNLINK, never FLUSHDB).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import redis
import yaml

from tests.lib.runner import PlaybookResult, run_playbook

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "queues" / "node"
PY_DIR = ROOT / "tests" / "queues" / "python"
HOST = "sandbox-cache"
DB = int(os.environ.get("RUNBOOK_QUEUE_TEST_DB", "7"))


def unique_prefix(tag: str) -> str:
    return f"rbq{tag}{secrets.token_hex(3)}"


def client(env: dict[str, str]) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=int(env["REDIS_PORT"]), password=env["REDISCLI_AUTH"], db=DB,
                       decode_responses=True)


def delete_keys(conn: redis.Redis, patterns: Iterable[str]) -> int:
    """UNLINK every key matching the patterns (our prefixes only)."""
    gone = 0
    for pattern in patterns:
        assert pattern.startswith("rbq"), f"refusing to delete keys outside the test prefixes: {pattern}"
        batch = list(conn.scan_iter(match=pattern, count=1000))
        for i in range(0, len(batch), 500):
            gone += conn.unlink(*batch[i:i + 500])
    return gone


def redis_url(env: dict[str, str]) -> str:
    return f"redis://:{env['REDISCLI_AUTH']}@127.0.0.1:{env['REDIS_PORT']}/{DB}"


# --- the real libraries -------------------------------------------------------------------------

def node_ready() -> None:
    """npm ci into the git-ignored node_modules when make setup has not done it yet."""
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir() or not (NODE_DIR / "node_modules" / "bull").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is missing: run make setup (scripts/setup.sh installs Node and the queue fixtures)"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True)


def node(env: dict[str, str], *args: str, timeout: float = 120) -> Any:
    """node fixture.js <args>: the JSON it prints."""
    node_ready()
    proc_env = {**os.environ, "QUEUE_REDIS_PORT": env["REDIS_PORT"], "QUEUE_REDIS_PASSWORD": env["REDISCLI_AUTH"],
                "QUEUE_REDIS_DB": str(DB)}
    proc = subprocess.run(["node", "fixture.js", *args], cwd=NODE_DIR, env=proc_env, text=True, capture_output=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"node fixture.js {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def python_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {**os.environ, "QUEUE_REDIS_URL": redis_url(env), "PYTHONPATH": str(PY_DIR), **extra}


def python(env: dict[str, str], script: str, *args: str, timeout: float = 120, **extra: str) -> Any:
    """A fixture script of tests/queues/python with the venv's Python (rq, celery): the JSON it prints."""
    proc = subprocess.run([sys.executable, script, *args], cwd=PY_DIR, env=python_env(env, **extra), text=True,
                          capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{script} {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for(check, what: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


# --- our modules, through ansible-playbook (ansible-runner) ------------------------------------

def run_tasks(env: dict[str, str], inventory: Path, tasks: list[dict[str, Any]]) -> PlaybookResult:
    """One play on sandbox-cache: the inventory's Redis login, in the test database, then the tasks."""
    play = [{
        "name": "Queue test",
        "hosts": HOST,
        "gather_facts": False,
        "module_defaults": {"group/runbook.ops.redis": {
            "login_host": "{{ runbook_redis_host }}", "login_port": "{{ runbook_redis_port }}",
            "login_password": "{{ runbook_redis_password }}", "login_db": DB}},
        "tasks": tasks,
    }]
    with tempfile.TemporaryDirectory(prefix="runbook-queue-test-") as tmp:
        path = Path(tmp) / "play.yml"
        path.write_text(yaml.safe_dump(play, sort_keys=False))
        run = run_playbook(str(path), inventory)
    assert run.rc == 0, f"playbook failed (rc={run.rc}):\n{run.stdout[-4000:]}"
    return run


def task_result(run: PlaybookResult, name: str) -> dict[str, Any]:
    found = [r for r in run.host_results(HOST, name) if r["task"] == name]
    assert found, f"no task {name!r} in the run:\n{run.stdout[-3000:]}"
    return found[-1]


def depth_task(name: str, library: str, prefix: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "runbook.ops.queue_depth": {"library": library, "prefix": prefix, **options}}


def jobs_task(name: str, library: str, prefix: str, check: bool = False, **options: Any) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "runbook.ops.queue_jobs": {"library": library, "prefix": prefix, **options}}
    if check:
        task["check_mode"] = True
    return task


def four_runs(library: str, prefix: str, tag: str = "", **options: Any) -> list[dict[str, Any]]:
    """check, real, check again, real again of one queue_jobs action, with a depth read after each.

    Tasks are named `<tag>jobs <step>` and `<tag>depth after <step>`."""
    tasks: list[dict[str, Any]] = []
    for step, check in (("check", True), ("real", False), ("check again", True), ("real again", False)):
        tasks.append(jobs_task(f"{tag}jobs {step}", library, prefix, check=check, **options))
        tasks.append(depth_task(f"{tag}depth after {step}", library, prefix, queues=options["queues"]))
    return tasks
