# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the real test targets: the embedded sandbox and the podman fleet."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".collections"))
sys.path.insert(0, str(ROOT))
from tests.lib.envfile import read_env  # noqa: E402  (needs ROOT on sys.path)
# ansible-runner looks ansible-playbook up on PATH
os.environ["PATH"] = f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"


@dataclass(frozen=True)
class Target:
    """An inventory to run playbooks against, and the environment that describes it."""

    inventory: Path
    # holds the targets' secrets: never in a failure's repr
    env: dict[str, str] = field(repr=False)


def _bring_up(script: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "sandbox" / script), "up"], text=True,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{script} up failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)


def _app_health(env: dict[str, str]) -> dict:
    """The demo app's health answer ({} when there is none): 200 and 503 both carry it."""
    try:
        with urllib.request.urlopen(f"{env['APP_URL']}/api/health", timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        body = err.read()
    except OSError:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        return {}


def _ingest_if_stale(env: dict[str, str]) -> None:
    """A sandbox up for longer than the demo app's DEMO_INGEST_STALE_HOURS (6 h) answers 503 "ingest stale", and
    every test that waits for the app's health after a restart would fail for that alone. Ask the real worker for an
    ingest through the admin endpoint, as an operator would, and give it a moment to land."""
    reasons = _app_health(env).get("reasons") or []
    if not reasons or not all(r.startswith("ingest stale") for r in reasons):
        return
    request = urllib.request.Request(f"{env['APP_URL']}/api/admin/trigger-ingest", method="POST",
                                     headers={"Authorization": f"Bearer {env['ADMIN_TOKEN']}"})
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except OSError:
        return  # no ingest: the tests that need the app's health say so themselves
    deadline = time.monotonic() + 30
    while _app_health(env).get("status") != "ok" and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture(scope="session")
def sandbox() -> Target:
    """The embedded sandbox, brought up once per session (a no-op when already up), its demo app's ingest fresh."""
    _bring_up("sandbox.py")
    target = Target(inventory=ROOT / "inventories" / "sandbox", env=read_env(ROOT / ".sandbox" / "env"))
    _ingest_if_stale(target.env)
    return target


@pytest.fixture(scope="session")
def fleet() -> Target:
    """The podman fleet (db1, cache1, web1, app1, db2), brought up once per session."""
    _bring_up("fleet.py")
    env_file = ROOT / ".fleet" / "env"
    return Target(inventory=ROOT / "inventories" / "fleet", env=read_env(env_file) if env_file.exists() else {})


# `pytest -n 2 --dist loadgroup` (scripts/test.sh) runs one group of tests at a time on each worker. These files
# work only in things of their own on the shared sandbox (databases named for the test, a key prefix, a throwaway
# server, a temporary directory) and never stop a sandbox service, so each may run beside any other. Everything
# else on the sandbox stops, starts or checks the shared writers, the demo app or the whole stack, so it runs in
# one serial group; the fleet's tests are another (one of them takes the fleet down and up). A new file is serial
# until it is listed here.
ISOLATED = frozenset({
    "test_backup", "test_backup_upload", "test_db_health", "test_flush_cache", "test_kill_queries",
    "test_pg_backup_modules", "test_pg_restore_modules", "test_pg_sessions_filters", "test_queue_bullmq",
    "test_queue_celery", "test_queue_rq", "test_queue_sidekiq", "test_redis_health", "test_redis_snapshot",
    "test_restore_drill", "test_slow_queries", "test_vacuum",
})


def xdist_group_of(item: pytest.Item) -> str:
    """The group an item runs in under --dist loadgroup."""
    if item.get_closest_marker("fleet"):
        return "fleet"
    if "unit" in item.path.parts or item.path.stem in ISOLATED:
        return item.path.stem
    return "sandbox-shared"


def pytest_itemcollected(item: pytest.Item) -> None:
    # marked as collected: xdist reads the marks into the node ids in its pytest_collection_modifyitems
    item.add_marker(pytest.mark.xdist_group(xdist_group_of(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    # xdist groups by a suffix it writes into the node ids; were that to stop working (pytest 9 with xdist 3.8
    # ignores it), tests sharing state would run side by side and fail in ways that look like bugs
    if getattr(session.config.option, "loadgroup", False) and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError("--dist loadgroup did not group the tests: see requirements.txt on pytest's pin")
