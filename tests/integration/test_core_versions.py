# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""meta/runtime.yml promises ansible-core 2.17 to 2.19: every playbook runs on the oldest and middle ones too.

The main venv carries 2.19 with the community collections; each older core
gets a small venv of its own (cached in .venv-compat/) and borrows those
collections, so that only ansible-core differs.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
pytestmark = pytest.mark.sandbox


def _venv(core: str) -> Path:
    venv = ROOT / ".venv-compat" / core
    if not (venv / "bin" / "ansible-playbook").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"ansible-core=={core}"], check=True, capture_output=True)
    return venv


@pytest.mark.parametrize("core", ["2.17.14", "2.18.19"])
def test_playbooks_run_on_older_ansible_core(core, sandbox):
    venv = _venv(core)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.collections'}:{SITE}", "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    version = subprocess.run([str(venv / "bin" / "ansible"), "--version"], env=env, capture_output=True, text=True,
                             check=True).stdout
    assert f"core {core}]" in version
    for playbook in sorted((ROOT / "playbooks").glob("*.yml")):
        syntax = subprocess.run([str(venv / "bin" / "ansible-playbook"), "--syntax-check", "-i",
                                 str(ROOT / "inventories" / "example"), str(playbook)], env=env, capture_output=True,
                                text=True, check=False)
        assert syntax.returncode == 0, f"{playbook.name} on {core}: {syntax.stderr[-2000:]}"
    run = subprocess.run([str(venv / "bin" / "ansible-playbook"), str(ROOT / "playbooks" / "preflight.yml"),
                          "-i", str(sandbox.inventory)], env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "preflight: 4 hosts: 4 ok" in run.stdout
