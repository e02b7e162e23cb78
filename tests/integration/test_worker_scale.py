# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.worker_scale through playbooks/scale_workers.yml, on real service managers.

- the sandbox's supervisord: demo-worker is a group of 4 processes of which
  demo-worker-0 runs normally; scaling starts and stops single processes, read
  back with `supervisorctl status`;
- the fleet's app1 (systemd): demo-worker@.service instances, read back with
  `systemctl is-active` / `is-enabled`.

Every test puts the normal state back (demo-worker-0 alone; demo-worker@1
alone) in a finalizer, also when it fails, because other sessions use the
shared workers.
"""
from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lib.fleet_units import on_host
from tests.lib.runner import ROOT, PlaybookResult, run_four_times, run_playbook

BOOK = "scale_workers.yml"
APP = "sandbox-app"
FLEET_APP = "app1"
GROUP = "demo-worker"
NORMAL = (f"{GROUP}:{GROUP}-0",)
FLEET_UNITS = [f"{GROUP}@{n}" for n in (1, 2, 3)]
PLAN = "Plan | one line for this host"
ACT = "Act | start"
RESULT = "Report | export the result for the caller"


# --- helpers ---------------------------------------------------------------------------------


def _ctl(sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    ctl = ROOT / ".venv" / "bin" / "supervisorctl"
    return subprocess.run([str(ctl), "-c", sandbox.env["SUPERVISOR_CONFIG"], *args], text=True,
                          capture_output=True, check=False, timeout=120)


def _workers(sandbox) -> dict[str, str]:
    """supervisord's state of each process of the demo-worker group."""
    lines = [line.split() for line in _ctl(sandbox, "status").stdout.splitlines() if line.strip()]
    return {f[0]: f[1] for f in lines if f[0].startswith(f"{GROUP}:")}


def _running(sandbox) -> tuple[str, ...]:
    return tuple(sorted(n for n, s in _workers(sandbox).items() if s in ("RUNNING", "STARTING")))


def _restore_sandbox(sandbox) -> None:
    names = sorted(_workers(sandbox))
    extra = [n for n in names if n not in NORMAL]
    if extra:
        _ctl(sandbox, "stop", *extra)
    _ctl(sandbox, "start", *NORMAL)


def _ok(result: PlaybookResult) -> PlaybookResult:
    assert result.rc == 0, result.stdout[-3000:]
    return result


def _fact(result: PlaybookResult, host: str) -> dict[str, Any]:
    found = [r["ansible_facts"]["worker_scale_result"] for r in result.host_results(host, RESULT)]
    assert len(found) == 1, result.stdout[-3000:]
    return found[0]


def _plan(result: PlaybookResult, host: str) -> str:
    found = [r["msg"] for r in result.host_results(host, PLAN)]
    assert len(found) == 1, result.stdout[-3000:]
    return found[0]


def _acted(result: PlaybookResult, host: str) -> list[str]:
    """The loop labels of the act task, in order ("start demo-worker:demo-worker-1", ...)."""
    return [item["_ansible_item_label"] for r in result.host_results(host, ACT) for item in r.get("results", [])]


def _failure(result: PlaybookResult, host: str) -> str:
    failed = [r for r in result.host_results(host) if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, result.stdout[-3000:]
    return failed[0]["msg"]


@pytest.fixture
def sandbox_workers(sandbox) -> Iterator[Any]:
    """The sandbox in its normal worker state before and after the test, whatever the test did."""
    _restore_sandbox(sandbox)
    assert _running(sandbox) == NORMAL
    yield sandbox
    _restore_sandbox(sandbox)


# --- the sandbox: supervisord ----------------------------------------------------------------


@pytest.mark.sandbox
def test_sandbox_scale_up_to_3_and_back_to_1(sandbox_workers) -> None:
    sandbox = sandbox_workers
    up = run_four_times(BOOK, sandbox.inventory, read_state=lambda: _running(sandbox),
                        extravars={"worker_scale_count": 3})
    assert up.before == NORMAL
    assert up.after == (f"{GROUP}:{GROUP}-0", f"{GROUP}:{GROUP}-1", f"{GROUP}:{GROUP}-2")
    assert _workers(sandbox)[f"{GROUP}:{GROUP}-3"] == "STOPPED"
    assert _plan(up.check, APP).endswith(f"3 wanted: would start {GROUP}:{GROUP}-1, {GROUP}:{GROUP}-2")
    # single processes, lowest numbers first; the running demo-worker-0 is never touched
    assert _acted(up.real, APP) == [f"start {GROUP}:{GROUP}-1", f"start {GROUP}:{GROUP}-2"]
    fact = _fact(up.real, APP)
    assert fact["before"] == 1 and fact["after"] == 3 and fact["count"] == 3 and not fact["clamped"], fact
    assert fact["started"] == [f"{GROUP}:{GROUP}-1", f"{GROUP}:{GROUP}-2"] and fact["stopped"] == [], fact
    assert fact["changed"] is True
    assert _fact(up.real_again, APP)["changed"] is False
    assert _plan(up.real_again, APP).endswith("3 wanted: nothing to do")

    down = run_four_times(BOOK, sandbox.inventory, read_state=lambda: _running(sandbox),
                          extravars={"worker_scale_count": 1})
    assert down.after == NORMAL
    # highest first
    assert _acted(down.real, APP) == [f"stop {GROUP}:{GROUP}-2", f"stop {GROUP}:{GROUP}-1"]
    fact = _fact(down.real, APP)
    assert (fact["before"], fact["after"], fact["stopped"]) == (3, 1, [f"{GROUP}:{GROUP}-2", f"{GROUP}:{GROUP}-1"])


@pytest.mark.sandbox
def test_sandbox_count_is_clamped_and_said_so(sandbox_workers) -> None:
    sandbox = sandbox_workers
    # above worker_scale_max: runs the maximum
    high = _ok(run_playbook(BOOK, sandbox.inventory, extravars={"worker_scale_count": 9, "worker_scale_max": 2}))
    fact = _fact(high, APP)
    assert (fact["wanted"], fact["count"], fact["clamped"]) == (9, 2, True), fact
    assert fact["clamp_reason"] == "lowered to 2 (worker_scale_max)"
    assert "(asked 9, lowered to 2 (worker_scale_max))" in _plan(high, APP)
    assert _running(sandbox) == (f"{GROUP}:{GROUP}-0", f"{GROUP}:{GROUP}-1")

    # above the group's numprocs (4): check mode says so and changes nothing
    before = _running(sandbox)
    over = _ok(run_playbook(BOOK, sandbox.inventory, check=True,
                            extravars={"worker_scale_count": 6, "worker_scale_max": 6}))
    fact = _fact(over, APP)
    assert (fact["count"], fact["clamp_reason"]) == (4, f"lowered to 4 ({GROUP} has 4 processes: numprocs)"), fact
    assert fact["started"] == [f"{GROUP}:{GROUP}-2", f"{GROUP}:{GROUP}-3"], fact
    assert _running(sandbox) == before

    # below worker_scale_min, from the waiting jobs: 0 waiting still keeps one
    low = _ok(run_playbook(BOOK, sandbox.inventory, extravars={"worker_scale_waiting": 0}))
    fact = _fact(low, APP)
    assert (fact["wanted"], fact["count"], fact["clamp_reason"]) == (0, 1, "raised to 1 (worker_scale_min)"), fact
    assert fact["stopped"] == [f"{GROUP}:{GROUP}-1"]
    assert _running(sandbox) == NORMAL

    # ceil(25 / 10) = 3, in check mode
    waiting = _ok(run_playbook(BOOK, sandbox.inventory, check=True, extravars={"worker_scale_waiting": 25}))
    assert (_fact(waiting, APP)["count"], _fact(waiting, APP)["clamped"]) == (3, False)
    assert "3 wanted for 25 waiting jobs at 10 per worker" in _plan(waiting, APP)
    assert _running(sandbox) == NORMAL


@pytest.mark.sandbox
@pytest.mark.parametrize(("extravars", "message"), [
    ({"worker_scale_count": 2, "worker_scale_service": "nope"},
     f"{APP}: supervisord has no program group nope (it knows demo-app, {GROUP}:{GROUP}-0,"),
    ({"worker_scale_count": 2, "worker_scale_service": "demo-app"},
     f"{APP}: demo-app is a single supervisord process, not a group: [program:demo-app] needs process_name"),
    ({"worker_scale_count": 2, "worker_scale_waiting": 30}, f"{APP}: give worker_scale_count (instances to run)"),
    ({"worker_scale_count": 2, "worker_scale_min": 5, "worker_scale_max": 6},
     f"{APP}: worker_scale_min=5 but {GROUP} has 4 processes (numprocs)"),
])
def test_sandbox_refusals_change_nothing(sandbox_workers, extravars: dict[str, Any], message: str) -> None:
    sandbox = sandbox_workers
    result = run_playbook(BOOK, sandbox.inventory, extravars=extravars)
    assert result.rc != 0
    msg = _failure(result, APP)
    assert msg.startswith(message) and msg.endswith("Nothing was changed."), msg
    assert not result.host_results(APP, "Act |")
    assert _running(sandbox) == NORMAL


@pytest.mark.sandbox
def test_sandbox_writers_stop_and_start_every_running_worker(sandbox_workers, tmp_path: Path) -> None:
    """What restore does with the inventory's `demo-worker:`: a stop takes every running process of the scaled
    group, and the start brings back exactly those (not demo-worker-3)."""
    sandbox = sandbox_workers
    _ok(run_playbook(BOOK, sandbox.inventory, extravars={"worker_scale_count": 3}))
    scaled = _running(sandbox)
    assert len(scaled) == 3
    role = tmp_path / "roles" / "writers" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text(textwrap.dedent("""\
        - name: Writers | stop the workers of the inventory
          ansible.builtin.include_role:
            name: runbook.ops.service_control
          vars:
            service_control_services: "{{ runbook_worker_services }}"
            service_control_state: stopped
            service_control_wait_healthy: false
        - name: Writers | keep what ran
          ansible.builtin.set_fact:
            writers_was_running: "{{ service_control_was_running }}"
        - name: Writers | read the group while stopped
          ansible.builtin.command:
            argv: "{{ [runbook_supervisorctl_path, '-c', runbook_supervisord_config, 'status', 'demo-worker:'] }}"
          register: writers_stopped
          changed_when: false
          failed_when: false
        - name: Writers | start what ran
          ansible.builtin.include_role:
            name: runbook.ops.service_control
          vars:
            service_control_services: "{{ writers_was_running }}"
            service_control_state: started
            service_control_wait_healthy: false
        """))
    (tmp_path / "writers.yml").write_text(textwrap.dedent("""\
        - name: Writers | stop and start
          hosts: workers
          gather_facts: false
          roles:
            - role: writers
        """))
    result = _ok(run_playbook(str(tmp_path / "writers.yml"), sandbox.inventory))
    was = [r["ansible_facts"]["writers_was_running"] for r in result.host_results(APP, "Writers | keep what ran")]
    assert was == [list(scaled)]
    stopped = result.host_results(APP, "Writers | read the group while stopped")[0]["stdout"]
    assert [line.split()[1] for line in stopped.splitlines()] == ["STOPPED"] * 4, stopped
    assert _running(sandbox) == scaled


# --- the fleet: systemd template instances ---------------------------------------------------


def _units(fleet) -> tuple[tuple[str, str, str], ...]:
    """(unit, is-active, is-enabled) of demo-worker@1..3 on app1."""
    active = on_host(fleet, FLEET_APP, "systemctl", "is-active", *FLEET_UNITS).stdout.split()
    enabled = on_host(fleet, FLEET_APP, "systemctl", "is-enabled", *FLEET_UNITS).stdout.split()
    return tuple(zip(FLEET_UNITS, active, enabled))


@pytest.fixture
def fleet_workers(fleet) -> Iterator[Any]:
    """app1 with demo-worker@1 alone (the fleet's normal state) before and after the test."""
    on_host(fleet, FLEET_APP, "systemctl", "disable", "--now", *FLEET_UNITS[1:])
    on_host(fleet, FLEET_APP, "systemctl", "enable", "--now", FLEET_UNITS[0])
    yield fleet
    on_host(fleet, FLEET_APP, "systemctl", "disable", "--now", *FLEET_UNITS[1:])
    on_host(fleet, FLEET_APP, "systemctl", "enable", "--now", FLEET_UNITS[0])


NORMAL_FLEET = (("demo-worker@1", "active", "enabled"), ("demo-worker@2", "inactive", "disabled"),
                ("demo-worker@3", "inactive", "disabled"))


@pytest.mark.fleet
def test_fleet_scale_1_to_2_and_back(fleet_workers) -> None:
    fleet = fleet_workers
    up = run_four_times(BOOK, fleet.inventory, read_state=lambda: _units(fleet), limit=FLEET_APP,
                        extravars={"worker_scale_count": 2})
    assert up.before == NORMAL_FLEET
    assert up.after == (("demo-worker@1", "active", "enabled"), ("demo-worker@2", "active", "enabled"),
                        ("demo-worker@3", "inactive", "disabled"))
    assert _plan(up.check, FLEET_APP).endswith("2 wanted: would start demo-worker@2; would enable demo-worker@2")
    assert _acted(up.real, FLEET_APP) == ["start demo-worker@2"]
    fact = _fact(up.real, FLEET_APP)
    assert (fact["before"], fact["after"], fact["started"], fact["enabled"]) == (1, 2, ["demo-worker@2"],
                                                                                 ["demo-worker@2"]), fact

    down = run_four_times(BOOK, fleet.inventory, read_state=lambda: _units(fleet), limit=FLEET_APP,
                          extravars={"worker_scale_count": 1})
    assert down.after == NORMAL_FLEET
    assert _acted(down.real, FLEET_APP) == ["stop demo-worker@2"]
    fact = _fact(down.real, FLEET_APP)
    assert (fact["before"], fact["after"], fact["stopped"], fact["disabled"]) == (2, 1, ["demo-worker@2"],
                                                                                  ["demo-worker@2"]), fact


@pytest.mark.fleet
def test_fleet_unknown_template_changes_nothing(fleet_workers) -> None:
    fleet = fleet_workers
    result = run_playbook(BOOK, fleet.inventory, limit=FLEET_APP,
                          extravars={"worker_scale_count": 2, "worker_scale_service": "nope"})
    assert result.rc != 0
    msg = _failure(result, FLEET_APP)
    assert msg == ("app1: systemd has no template unit nope@.service (systemctl show nope@1: inactive (dead), "
                   "not-found, no unit file). Nothing was changed."), msg
    assert _units(fleet) == NORMAL_FLEET
