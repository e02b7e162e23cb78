# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/preflight.yml against real hosts: the embedded sandbox and the podman fleet.

Each test reads the report the playbook prints (one line per host, then a count) from the
ansible-runner events and checks it against the inventory, the run's rc and the recap.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lib.runner import PlaybookResult, run_playbook

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = "preflight.yml"
REPORT_TASK = "Summary | preflight report, one line per host"
SSH_OPTS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o ConnectTimeout=5"


def _ansible_inventory(inventory: Path, *args: str) -> Any:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run([str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(inventory), *args], text=True,
                          capture_output=True, check=True, env=env)
    return json.loads(proc.stdout)


def _inventory_hosts(inventory: Path) -> list[str]:
    return sorted(_ansible_inventory(inventory, "--list")["_meta"]["hostvars"])


def _report(result: PlaybookResult) -> list[str]:
    """The lines of the preflight report: one per host, then the count."""
    return result.run_once_msg(REPORT_TASK)


def _lines_by_host(result: PlaybookResult, hosts: list[str]) -> dict[str, str]:
    lines = _report(result)
    assert lines[-1].startswith(f"preflight: {len(hosts)} host"), lines[-1]
    by_host: dict[str, str] = {}
    for line in lines[:-1]:
        host, sep, _rest = line.partition(": ")
        assert sep and host not in by_host, f"malformed or repeated report line: {line!r}"
        by_host[host] = line
    assert sorted(by_host) == sorted(hosts)
    return by_host


def _copy_inventory(src: Path, dest: Path, extra_hosts: dict[str, Any]) -> Path:
    """A copy of an inventory directory plus one more file of hosts (inventory YAML)."""
    shutil.copytree(src, dest)
    (dest / "zz-preflight-test.yml").write_text(yaml.safe_dump(extra_hosts))
    return dest


# --- sandbox ----------------------------------------------------------------


@pytest.mark.sandbox
def test_sandbox_passes_with_one_line_per_host(sandbox):
    hosts = _inventory_hosts(sandbox.inventory)
    result = run_playbook(PLAYBOOK, sandbox.inventory)
    lines = _lines_by_host(result, hosts)
    assert result.rc == 0, result.stdout[-3000:]
    for host, line in lines.items():
        assert line == f"{host}: ok" or line.startswith(f"{host}: WARNING "), line
        assert result.stdout.count(f"{host}: ") == 1, f"{host} is reported more than once"
        assert result.stats[host]["failures"] == 0 and result.stats[host]["unreachable"] == 0
    assert result.changed() == 0, "preflight without preflight_fix must change nothing"
    assert _report(result)[-1].endswith(", 0 critical, 0 unreachable")


@pytest.mark.sandbox
def test_disk_threshold_of_one_percent_is_critical_and_names_the_mount(sandbox):
    hosts = _inventory_hosts(sandbox.inventory)
    result = run_playbook(PLAYBOOK, sandbox.inventory,
                          extravars={"preflight_disk_warning_pct": 1, "preflight_disk_critical_pct": 1})
    assert result.rc != 0
    for host, line in _lines_by_host(result, hosts).items():
        assert line.startswith(f"{host}: CRITICAL "), line
        assert "disk / " in line and "% used (critical at 1%)" in line, line
        assert result.stats[host]["failures"] == 1
    assert f"{len(hosts)} critical" in _report(result)[-1]


@pytest.mark.sandbox
@pytest.mark.parametrize(("fail_on_warning", "expect_rc_zero"), [(False, True), (True, False)])
def test_warnings_fail_the_run_only_when_asked(sandbox, fail_on_warning: bool, expect_rc_zero: bool):
    host = _inventory_hosts(sandbox.inventory)[0]
    result = run_playbook(PLAYBOOK, sandbox.inventory, limit=host,
                          extravars={"preflight_memory_warning_pct": 0.1, "preflight_memory_critical_pct": 100,
                                     "preflight_fail_on_warning": fail_on_warning})
    line = _lines_by_host(result, [host])[host]
    assert line.startswith(f"{host}: WARNING ") and "memory " in line and "(warning at 0.1%)" in line, line
    assert (result.rc == 0) is expect_rc_zero


@pytest.mark.sandbox
def test_unreachable_host_is_named_while_the_others_still_report(sandbox, tmp_path):
    lost = "preflight-lost"
    inventory = _copy_inventory(sandbox.inventory, tmp_path / "inventory", {"web": {"hosts": {lost: {
        "ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root",
        "ansible_ssh_common_args": SSH_OPTS}}}})
    hosts = _inventory_hosts(inventory)
    assert lost in hosts
    result = run_playbook(PLAYBOOK, inventory)
    lines = _lines_by_host(result, hosts)
    assert result.rc != 0
    assert lines[lost].startswith(f"{lost}: UNREACHABLE "), lines[lost]
    assert "port 1" in lines[lost], lines[lost]
    assert _report(result)[-1].endswith(", 1 unreachable")
    assert result.stats[lost]["failures"] == 1
    for host in hosts:
        if host != lost:
            assert lines[host] == f"{host}: ok" or lines[host].startswith(f"{host}: WARNING "), lines[host]
            assert result.stats[host]["failures"] == 0


@pytest.mark.sandbox
@pytest.mark.slow
def test_fix_installs_a_missing_library_into_a_venv_interpreter(sandbox, tmp_path):
    """check, real, check again, real again: a redis host whose interpreter is a venv without redis.

    Also: the same check run without preflight_fix reports the host critical and changes nothing.
    """
    host = "preflight-venv"
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    hostvars = _ansible_inventory(sandbox.inventory, "--list")["_meta"]["hostvars"]
    redis_host = next(h for h in sorted(hostvars) if "runbook_redis_port" in hostvars[h])
    redis_vars = {k: v for k, v in hostvars[redis_host].items() if k.startswith("runbook_redis_")}
    inventory = _copy_inventory(sandbox.inventory, tmp_path / "inventory", {"redis": {"hosts": {host: {
        "ansible_connection": "local", "ansible_python_interpreter": str(python), **redis_vars}}}})

    def imports_redis() -> bool:
        return subprocess.run([str(python), "-c", "import redis"], capture_output=True, check=False).returncode == 0

    assert not imports_redis()
    fix = {"preflight_fix": True}

    check = run_playbook(PLAYBOOK, inventory, limit=host, extravars=fix, check=True)
    line = _lines_by_host(check, [host])[host]
    # The verdict is the one the real run would reach; the line says what it would install, and why.
    assert "would install: redis (redis missing)" in line and "CRITICAL" not in line, line
    assert check.changed(host) >= 1
    assert check.rc == 0, check.stdout[-3000:]
    assert not imports_redis(), "check mode installed something"

    without_fix = run_playbook(PLAYBOOK, inventory, limit=host, check=True)
    line = _lines_by_host(without_fix, [host])[host]
    assert line.startswith(f"{host}: CRITICAL ") and "redis missing" in line and "install" not in line, line
    assert without_fix.rc != 0 and without_fix.changed(host) == 0

    real = run_playbook(PLAYBOOK, inventory, limit=host, extravars=fix)
    line = _lines_by_host(real, [host])[host]
    assert "installed: redis" in line and "CRITICAL" not in line, line
    assert real.changed(host) >= 1
    assert real.rc == 0, real.stdout[-3000:]
    assert imports_redis()

    for again in (run_playbook(PLAYBOOK, inventory, limit=host, extravars=fix, check=True),
                  run_playbook(PLAYBOOK, inventory, limit=host, extravars=fix)):
        line = _lines_by_host(again, [host])[host]
        assert "install" not in line, line
        assert again.changed(host) == 0
        assert again.rc == 0


# --- fleet ------------------------------------------------------------------


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / ".fleet" / "containers.conf")}
    return subprocess.run(["podman", *args], text=True, capture_output=True, check=False, env=env, timeout=120)


def _container(host: str) -> str:
    state = json.loads((ROOT / ".fleet" / "state.json").read_text())
    return state["hosts"][host]["container"]


@pytest.mark.fleet
def test_fleet_passes_with_one_line_per_host(fleet):
    hosts = _inventory_hosts(fleet.inventory)
    result = run_playbook(PLAYBOOK, fleet.inventory)
    for host, line in _lines_by_host(result, hosts).items():
        assert line == f"{host}: ok" or line.startswith(f"{host}: WARNING "), line
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed() == 0


@pytest.mark.fleet
def test_fleet_stopped_host_is_named_while_the_others_still_report(fleet):
    hosts = _inventory_hosts(fleet.inventory)
    stopped = "web1" if "web1" in hosts else hosts[-1]
    container = _container(stopped)
    proc = _podman("stop", "--time", "5", container)
    assert proc.returncode == 0, proc.stderr
    try:
        result = run_playbook(PLAYBOOK, fleet.inventory)
        lines = _lines_by_host(result, hosts)
        assert result.rc != 0
        assert lines[stopped].startswith(f"{stopped}: UNREACHABLE "), lines[stopped]
        assert _report(result)[-1].endswith(", 1 unreachable")
        for host in hosts:
            if host != stopped:
                assert lines[host] == f"{host}: ok" or lines[host].startswith(f"{host}: WARNING "), lines[host]
                assert result.stats[host]["failures"] == 0
    finally:
        _podman("start", container)
        # fleet.py up waits until the host is back (systemd running, services up), same ports.
        restored = subprocess.run([sys.executable, str(ROOT / "sandbox" / "fleet.py"), "up"], text=True,
                                  capture_output=True, check=False, timeout=900)
    assert restored.returncode == 0, f"fleet.py up after restarting {container}:\n{restored.stdout}\n{restored.stderr}"
