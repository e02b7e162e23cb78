# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the real test targets: the embedded sandbox and the podman fleet."""
from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def sandbox() -> Target:
    """The embedded sandbox, brought up once per session (a no-op when already up)."""
    _bring_up("sandbox.py")
    return Target(inventory=ROOT / "inventories" / "sandbox", env=read_env(ROOT / ".sandbox" / "env"))


@pytest.fixture(scope="session")
def fleet() -> Target:
    """The podman fleet (db1, cache1, web1, app1, db2), brought up once per session."""
    _bring_up("fleet.py")
    env_file = ROOT / ".fleet" / "env"
    return Target(inventory=ROOT / "inventories" / "fleet", env=read_env(env_file) if env_file.exists() else {})
