# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The built collection installs with ansible-galaxy and its playbooks run by FQCN."""
from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    return next(out.glob("runbook-ops-*.tar.gz"))


def test_tarball_ships_the_collection_and_nothing_of_the_workbench(tarball):
    names = set(tarfile.open(tarball).getnames())
    assert {"galaxy.yml", "MANIFEST.json"} & names == {"MANIFEST.json"}
    assert "playbooks/preflight.yml" in names
    assert "roles/preflight/meta/argument_specs.yml" in names
    leaked = [n for n in names if n.split("/")[0] in {".sandbox", ".venv", ".fleet", "sandbox", "scripts", ".ansible"}
              or n.startswith(("tests/integration", "inventories/sandbox"))]
    assert leaked == []


def test_installed_collection_runs_preflight_by_fqcn(tarball, sandbox, tmp_path):
    collections = tmp_path / "collections"
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text(f"[defaults]\ncollections_path = {collections}\n")
    # a fresh directory and config: nothing of the checkout is on the path
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    install = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (collections / "ansible_collections/runbook/ops/MANIFEST.json").exists()
    run = subprocess.run([str(BIN / "ansible-playbook"), "runbook.ops.preflight", "-i", str(sandbox.inventory)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert str(collections) in subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "list", "runbook.ops"], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=False).stdout
    for host in ("sandbox-db", "sandbox-cache", "sandbox-web", "sandbox-app"):
        assert f"{host} " in run.stdout
