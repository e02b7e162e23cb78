# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.service_control on real service managers, and runbook.ops.run_lock in real use.

The role is internal, so the playbooks generated here include it from roles
of their own (caller, cycle, rescuer), as the restore and restart roles will.

Three targets:
- a private supervisord started here (a web program with a health endpoint, a
  two-process worker group, a sidecar), which nothing else touches: the four
  runs of the standard test, the failing health wait, the exact start of what
  ran, the restart, the refusals, run_lock's cases;
- the sandbox's demo-app: a failed restore and its rescue in a single run,
  because other sessions stop and start it too (their restore tests, and
  `sandbox.py up`, which starts every stopped program but the spare workers): the stopped state
  cannot be held across runs, and supervisord's log is the witness of the stop;
- the fleet's app1 (systemd, demo-app and demo-worker@ instances): the stop,
  the second stop and the start in a single run, so that the shared units
  are down for seconds; the restore's own stop and start of app1
  (roles/restore/tasks/writers.yml, from db1) with the inventory's
  demo-worker@* while app1 runs three workers, as scale_workers.yml leaves
  it; patterns that match nothing, unknown units and refused names.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.lib.fleet_units import on_host
from tests.lib.runner import ROOT, PlaybookResult, run_playbook

BIN = ROOT / ".venv" / "bin"
PRIVATE = "private-app"
APP = "sandbox-app"
FLEET_APP = "app1"
FLEET_DB = "db1"
# demo-worker@9 is an instance of the fleet's template that nothing runs: a start brings back what ran, not it
FLEET_UNITS = ["demo-app", "demo-worker@1", "demo-worker@9"]
# as scale_workers.yml leaves app1 at three workers (enabled, running), and one instance enabled but stopped:
# loaded, so the inventory's demo-worker@* matches it, and a restore must not start it
SCALED = ["demo-worker@2", "demo-worker@3"]
IDLE = "demo-worker@4"
WRITERS = ["demo-app", "demo-worker@1", *SCALED, IDLE]

PLAN = "Plan | one line per service"
WAS_RUNNING = "Plan | the services to act on, the state before acting, and what was running before a stop"
ACT = "Act | "
HEALTH_POLL = "Health | poll the health endpoint until it answers 200"
HEALTH_OK = "Health | the endpoint answered 200"
VERIFY = "Verify | each service is in the state asked"

ROLES = {
    "caller": """\
        - name: Caller | control the services
          ansible.builtin.include_role:
            name: runbook.ops.service_control
        """,
    # stop, read, stop again, start what ran: in one run, so that shared services are down for seconds only.
    # cycle_* names: extra vars would override the include's vars.
    "cycle": """\
        - name: Cycle | stop the services
          ansible.builtin.include_role:
            name: runbook.ops.service_control
          vars:
            service_control_services: "{{ cycle_services }}"
            service_control_state: stopped
        - name: Cycle | keep what was running (a second stop records again)
          ansible.builtin.set_fact:
            cycle_was_running: "{{ service_control_was_running }}"
        - name: Cycle | read the state while stopped
          ansible.builtin.command:
            argv: "{{ cycle_read_argv }}"
          changed_when: false
          failed_when: false
        - name: Cycle | stop them again
          ansible.builtin.include_role:
            name: runbook.ops.service_control
          vars:
            service_control_services: "{{ cycle_services }}"
            service_control_state: stopped
        - name: Cycle | start again what was running
          ansible.builtin.include_role:
            name: runbook.ops.service_control
          vars:
            service_control_services: "{{ cycle_was_running }}"
            service_control_state: started
        """,
    # the shape of a restore: lock, stop, work that fails, rescue by starting exactly what ran, release
    "rescuer": """\
        - name: Rescuer | take the restore lock
          runbook.ops.run_lock:
            path: "{{ rescuer_lock }}"
            owner: "rescuer.yml {{ inventory_hostname }}"
          register: rescuer_lock_taken
        - name: Rescuer | stop, restore, and start again what ran when the restore fails
          block:
            - name: Rescuer | stop the services
              ansible.builtin.import_role:
                name: runbook.ops.service_control
              vars:
                service_control_services: "{{ rescuer_services }}"
                service_control_state: stopped
            - name: Rescuer | a second restore of this target is refused meanwhile
              runbook.ops.run_lock:
                path: "{{ rescuer_lock }}"
                owner: "rescuer.yml {{ inventory_hostname }} (second run)"
              ignore_errors: true
            - name: Rescuer | the restore fails
              ansible.builtin.fail:
                msg: simulated restore failure
          rescue:
            - name: Rescuer | start again what was running
              ansible.builtin.include_role:
                name: runbook.ops.service_control
              vars:
                service_control_services: "{{ service_control_was_running }}"
                service_control_state: started
          always:
            - name: Rescuer | release the restore lock
              runbook.ops.run_lock:
                path: "{{ rescuer_lock }}"
                state: absent
                token: "{{ rescuer_lock_taken.token }}"
        """,
    # restore's own stop and start of one writer host (roles/restore/tasks/writers.yml), run from db1 and
    # delegated to app1 as the restore runs it, for the writers the restore takes from the inventory by default
    "restorer": """\
        - name: Restorer | app1's writers, as the restore takes them from the inventory
          ansible.builtin.set_fact:
            restorer_writer:
              host: app1
              services: "{{ hostvars['app1'].runbook_app_services + hostvars['app1'].runbook_worker_services }}"
        - name: Restorer | stop the writers
          ansible.builtin.include_role:
            name: runbook.ops.restore
            tasks_from: writers.yml
          vars:
            __restore_writer: "{{ restorer_writer }}"
            __restore_writer_state: stopped
        - name: Restorer | read the units while stopped
          ansible.builtin.command:
            argv: "{{ ['systemctl', 'is-active'] + restorer_units }}"
          delegate_to: app1
          changed_when: false
          failed_when: false
          check_mode: false
        - name: Restorer | start the writers that were running
          ansible.builtin.include_role:
            name: runbook.ops.restore
            tasks_from: writers.yml
          vars:
            __restore_writer: "{{ restorer_writer }}"
            __restore_writer_state: started
        """,
}

ALONE = """\
    - name: The role on its own
      hosts: all
      gather_facts: false
      tasks:
        - name: Include it straight from a play
          ansible.builtin.include_role:
            name: runbook.ops.service_control
    """

LOCKS = """\
    - name: run_lock, every case on one host
      hosts: all
      gather_facts: false
      vars:
        lock: "{{ lock_dir }}/restore.lock"
      tasks:
        - name: Lock | check mode on a free lock
          runbook.ops.run_lock: {path: "{{ lock_dir }}/free.lock", owner: restore.yml app@db1}
          check_mode: true
        - name: Lock | acquire
          runbook.ops.run_lock: {path: "{{ lock }}", owner: restore.yml app@db1, user: tester}
          register: taken
        - name: Lock | re-enter with the same token
          runbook.ops.run_lock: {path: "{{ lock }}", owner: restore.yml app@db1, token: "{{ taken.token }}"}
        - name: Lock | another run is refused
          runbook.ops.run_lock: {path: "{{ lock }}", owner: restore.yml app@db1 (second), break_after: 1h}
          ignore_errors: true
        - name: Lock | release with another token is refused
          runbook.ops.run_lock: {path: "{{ lock }}", state: absent, token: not-the-token}
          ignore_errors: true
        - name: Lock | release
          runbook.ops.run_lock: {path: "{{ lock }}", state: absent, token: "{{ taken.token }}"}
        - name: Lock | release again
          runbook.ops.run_lock: {path: "{{ lock }}", state: absent, token: "{{ taken.token }}"}
        - name: Lock | a lock to keep
          runbook.ops.run_lock: {path: "{{ lock_dir }}/held.lock", owner: restore.yml app@db2, user: tester}
          register: held
        - name: Lock | check mode release
          runbook.ops.run_lock: {path: "{{ lock_dir }}/held.lock", state: absent, token: "{{ held.token }}"}
          check_mode: true
        - name: Lock | a stale lock is broken
          runbook.ops.run_lock: {path: "{{ lock_dir }}/stale.lock", owner: restore.yml app@db1, break_after: 1h}
        - name: Lock | a fresh lock is not
          runbook.ops.run_lock: {path: "{{ lock_dir }}/fresh.lock", owner: restore.yml app@db1, break_after: 1h}
          ignore_errors: true
    """


@pytest.fixture(scope="module")
def books(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated playbooks, each next to the roles/ it uses."""
    root = tmp_path_factory.mktemp("service_control")
    for role, tasks in ROLES.items():
        (root / "roles" / role / "tasks").mkdir(parents=True)
        (root / "roles" / role / "tasks" / "main.yml").write_text("---\n" + textwrap.dedent(tasks))
        (root / f"{role}.yml").write_text(
            f"---\n- name: {role}\n  hosts: all\n  gather_facts: false\n  roles: [{role}]\n")
    (root / "alone.yml").write_text("---\n" + textwrap.dedent(ALONE))
    (root / "locks.yml").write_text("---\n" + textwrap.dedent(LOCKS))
    return root


def _run(books: Path, book: str, inventory: Path, host: str, check: bool = False, **extravars: Any) -> PlaybookResult:
    return run_playbook(str(books / f"{book}.yml"), inventory, extravars=extravars, check=check, limit=host)


def _control(books: Path, inventory: Path, host: str, services: list[str], state: str, check: bool = False,
             **extra: Any) -> PlaybookResult:
    return _run(books, "caller", inventory, host, check=check, service_control_services=services,
                service_control_state=state, **extra)


def _ok(result: PlaybookResult) -> PlaybookResult:
    assert result.rc == 0, result.stdout[-3000:]
    return result


def _all(result: PlaybookResult, host: str, task: str) -> list[dict[str, Any]]:
    """Results of the tasks named exactly task, in order (host_results matches a part of the name)."""
    return [r for r in result.host_results(host, task) if r["task"] == task]


def _one(result: PlaybookResult, host: str, task: str) -> dict[str, Any]:
    found = [r for r in _all(result, host, task) if r["event"] != "runner_on_skipped"]
    assert len(found) == 1, (task, found)
    return found[0]


def _failed(result: PlaybookResult, host: str) -> list[dict[str, Any]]:
    return [r for r in result.host_results(host) if r["event"] == "runner_on_failed"]


def _was_running(result: PlaybookResult, host: str) -> list[list[str]]:
    """service_control_was_running as each stop in the run recorded it (a start leaves it alone)."""
    return [r["ansible_facts"]["service_control_was_running"] for r in _all(result, host, WAS_RUNNING)
            if r["event"] == "runner_on_ok" and "service_control_was_running" in r["ansible_facts"]]


def _changed_by(res: dict[str, Any]) -> list[str] | None:
    """The services one act task changed, in order: the changed items of a loop (systemd), or the processes
    supervisorctl said it stopped or started, in the order the task named them (one supervisorctl per process,
    all at once: they answer in any order); None for a task that did not act (skipped)."""
    if "results" in res:
        return [item["item"]["name"] for item in res["results"] if item.get("changed")]
    if "stdout_lines" in res:
        done = {line.rsplit(": ", 1)[0] for line in res["stdout_lines"] if line.endswith((": stopped", ": started"))}
        return [name for name in res["cmd"] if name in done]
    return None


def _acted(result: PlaybookResult, host: str) -> list[list[str]]:
    """For each act task that had services to act on, those it changed, in order (a task with nothing to do is
    skipped)."""
    found = [_changed_by(r) for r in result.host_results(host, ACT)]
    return [names for names in found if names is not None]


def _supervisorctl(config: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "supervisorctl"), "-c", str(config), *args], text=True, capture_output=True,
                          check=False, timeout=60)


def _states(config: Path | str) -> dict[str, str]:
    """supervisorctl status: process name -> state."""
    lines = _supervisorctl(config, "status").stdout.splitlines()
    return {f[0]: f[1] for f in (line.split() for line in lines) if len(f) > 1}


def _pid(config: Path | str, name: str) -> int:
    return int(_supervisorctl(config, "pid", name).stdout.strip() or 0)


def _spawned_at(pid: int) -> float:
    """When a process started, in seconds since boot (/proc/<pid>/stat, field 22, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _health(url: str) -> int | None:
    """The status code of url, None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


# --- a private supervisord -----------------------------------------------------------------


@dataclass(frozen=True)
class Private:
    inventory: Path
    config: Path
    health_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    """supervisord with web (serves /api/health), worker:worker-0 running, worker:worker-1 stopped, sidecar."""
    d = tmp_path_factory.mktemp("supervisor")
    (d / "www" / "api").mkdir(parents=True)
    (d / "www" / "api" / "health").write_text('{"status": "ok"}\n')
    port = _free_port()
    config = d / "supervisord.conf"
    config.write_text(textwrap.dedent(f"""\
        [unix_http_server]
        file = {d}/supervisor.sock
        chmod = 0700
        [supervisord]
        pidfile = {d}/supervisord.pid
        logfile = {d}/supervisord.log
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [supervisorctl]
        serverurl = unix://{d}/supervisor.sock
        [program:web]
        command = {sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {d}/www
        startsecs = 1
        stopwaitsecs = 5
        [program:worker]
        command = /bin/sleep 3600
        process_name = %(program_name)s-%(process_num)d
        numprocs = 2
        startsecs = 0
        stopwaitsecs = 5
        [program:sidecar]
        command = /bin/sleep 3600
        startsecs = 0
        """))
    (d / "hosts.yml").write_text(json.dumps({"all": {"hosts": {PRIVATE: {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable,
        "runbook_service_manager": "supervisord", "runbook_supervisorctl_path": str(BIN / "supervisorctl"),
        "runbook_supervisord_config": str(config), "runbook_app_url": f"http://127.0.0.1:{port}",
        "runbook_app_health_path": "/api/health"}}}}))
    subprocess.run([str(BIN / "supervisord"), "-c", str(config)], check=True, timeout=30)
    try:
        deadline = time.monotonic() + 30
        while set(_states(config).values()) != {"RUNNING"} or len(_states(config)) != 4:
            assert time.monotonic() < deadline, _supervisorctl(config, "status").stdout
            time.sleep(0.2)
        _supervisorctl(config, "stop", "worker:worker-1")
        yield Private(inventory=d / "hosts.yml", config=config, health_url=f"http://127.0.0.1:{port}/api/health")
    finally:
        _supervisorctl(config, "shutdown")


@pytest.fixture
def baseline(private: Private) -> Iterator[Private]:
    """Each test starts from web, worker-0 and sidecar running and worker-1 stopped, whatever the last one left."""
    _supervisorctl(private.config, "start", "web", "worker:worker-0", "sidecar")
    _supervisorctl(private.config, "stop", "worker:worker-1")
    yield private


@pytest.mark.integration
def test_supervisord_four_runs_health_wait_and_exact_restart(baseline: Private, books: Path) -> None:
    private = baseline
    inv, cfg = private.inventory, private.config
    services = ["web", "worker:"]  # a group: its processes one by one
    before = _states(cfg)
    assert before == {"web": "RUNNING", "worker:worker-0": "RUNNING", "worker:worker-1": "STOPPED",
                      "sidecar": "RUNNING"}
    pids = {name: _pid(cfg, name) for name in ("web", "worker:worker-0")}

    check = _ok(_control(books, inv, PRIVATE, services, "stopped", check=True))
    assert check.changed(PRIVATE) > 0
    assert _one(check, PRIVATE, PLAN)["msg"] == [
        "worker:worker-1: STOPPED, already stopped", "worker:worker-0: RUNNING -> would stop",
        "web: RUNNING -> would stop"]
    assert _states(cfg) == before and {name: _pid(cfg, name) for name in pids} == pids
    assert _health(private.health_url) == 200

    stop = _ok(_control(books, inv, PRIVATE, services, "stopped"))
    assert stop.changed(PRIVATE) > 0
    # supervisorctl said "<name>: stopped" for each, once it had exited: nothing is read back
    assert not _all(stop, PRIVATE, VERIFY)
    assert _acted(stop, PRIVATE) == [["worker:worker-0", "web"]]  # last first
    assert _was_running(stop, PRIVATE) == [["web", "worker:worker-0"]]
    assert _states(cfg) == {**before, "web": "STOPPED", "worker:worker-0": "STOPPED"}
    assert _health(private.health_url) is None  # nothing listens any more

    for check_mode in (True, False):
        again = _ok(_control(books, inv, PRIVATE, services, "stopped", check=check_mode))
        assert again.changed(PRIVATE) == 0, again.stdout[-3000:]
        assert _was_running(again, PRIVATE) == [[]]
        assert _one(again, PRIVATE, PLAN)["msg"][-1] == "web: STOPPED, already stopped"

    # the health wait fails clearly while the app stays down: the sidecar is running already (no change),
    # then the wait polls the stopped web's endpoint
    waited = _control(books, inv, PRIVATE, ["sidecar"], "started", service_control_health_retries=2,
                      service_control_health_delay=1)
    assert waited.rc != 0
    failed = _failed(waited, PRIVATE)
    assert [r["task"] for r in failed] == [HEALTH_OK]
    assert failed[0]["msg"].startswith(f"{PRIVATE}: {private.health_url} did not answer 200 after 2 attempts 1 s apart:"
                                       " last status -1: ")
    assert "Connection refused" in failed[0]["msg"]
    assert _states(cfg)["web"] == "STOPPED"

    # what a rescue does: start exactly what was running
    was_running = _was_running(stop, PRIVATE)[0]
    check_start = _ok(_control(books, inv, PRIVATE, was_running, "started", check=True))
    assert check_start.changed(PRIVATE) > 0
    assert _one(check_start, PRIVATE, PLAN)["msg"] == ["web: STOPPED -> would start",
                                                      "worker:worker-0: STOPPED -> would start"]
    assert not _all(check_start, PRIVATE, HEALTH_POLL)
    assert _states(cfg)["web"] == "STOPPED"

    start = _ok(_control(books, inv, PRIVATE, was_running, "started"))
    assert _acted(start, PRIVATE) == [["web", "worker:worker-0"]]
    # started together: the worker did not wait for web's startsecs (1 s) as `supervisorctl start web worker` would
    spawned = {name: _spawned_at(_pid(cfg, name)) for name in ("web", "worker:worker-0")}
    assert abs(spawned["worker:worker-0"] - spawned["web"]) < 1, spawned
    assert not _all(start, PRIVATE, VERIFY)  # "<name>: started" for each, after its startsecs
    assert _one(start, PRIVATE, HEALTH_POLL)["status"] == 200
    assert _states(cfg) == before  # worker:worker-1, stopped before, is stopped still
    assert _health(private.health_url) == 200

    again = _ok(_control(books, inv, PRIVATE, was_running, "started"))
    assert again.changed(PRIVATE) == 0
    assert _one(again, PRIVATE, PLAN)["msg"] == ["web: RUNNING, already started",
                                                "worker:worker-0: RUNNING, already started"]

    web = _pid(cfg, "web")
    restart = _ok(_control(books, inv, PRIVATE, ["web"], "restarted"))
    assert _acted(restart, PRIVATE) == [["web"], ["web"]]  # a stop, then a start
    assert _was_running(restart, PRIVATE) == [["web"]]
    assert _pid(cfg, "web") not in (0, web)
    assert _one(restart, PRIVATE, HEALTH_POLL)["status"] == 200


@pytest.mark.integration
def test_refused_on_its_own_and_for_an_unknown_service(baseline: Private, books: Path) -> None:
    private = baseline
    before = _states(private.config)
    alone = _run(books, "alone", private.inventory, PRIVATE, service_control_services=["web"],
                 service_control_state="stopped")
    assert alone.rc != 0
    failed = _failed(alone, PRIVATE)
    assert [r["task"] for r in failed] == ["Refuse to run on its own"]
    assert failed[0]["msg"].startswith("runbook.ops.service_control is an internal role: include it from a role")

    unknown = _control(books, private.inventory, PRIVATE, ["web", "wbe", "worker:worker-7"], "stopped")
    assert unknown.rc != 0
    failed = _failed(unknown, PRIVATE)
    assert [r["task"] for r in failed] == ["Probe | every service is known to the service manager"]
    assert failed[0]["msg"] == (f"{PRIVATE}: unknown to supervisord: wbe, worker:worker-7. supervisord knows "
                                "sidecar, web, worker:worker-0, worker:worker-1 (a group is written group:). "
                                "Nothing was changed.")
    assert _acted(unknown, PRIVATE) == []
    assert _states(private.config) == before

    # supervisorctl cannot answer: the same check says so, with supervisorctl's own words
    missing = f"{private.config}.missing"
    broken = _control(books, private.inventory, PRIVATE, ["web"], "stopped", runbook_supervisord_config=missing)
    assert broken.rc != 0
    failed = _failed(broken, PRIVATE)
    assert [r["task"] for r in failed] == ["Probe | every service is known to the service manager"]
    assert failed[0]["msg"].startswith(f"{PRIVATE}: {BIN}/supervisorctl -c {missing} status failed (rc 2): Error: "
                                       f"could not find config file {missing}")
    assert failed[0]["msg"].endswith(". Nothing was changed.") and "unknown to" not in failed[0]["msg"]
    assert _states(private.config) == before


# --- the sandbox's demo-app -----------------------------------------------------------------


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(0.5)


@pytest.mark.sandbox
def test_sandbox_failed_restore_rescued_demo_app_back_healthy(sandbox, books: Path, tmp_path: Path) -> None:
    """The restore shape on the sandbox's demo-app: the lock is taken and keeps a second restore out, demo-app
    stops, the restore fails, the rescue starts what ran and waits for health, the lock is released.

    Other sessions stop and start the shared demo-app too (restore tests, `sandbox.py up`). A run counts when
    demo-app was running before it and this run's stop is the one that stopped it; a disturbed run is run again,
    three times at most (a fault of the role fails all three)."""
    config = sandbox.env["SUPERVISOR_CONFIG"]
    log = Path(config).with_name("supervisord.log")
    lock = tmp_path / "restore.lock"
    for _attempt in range(3):
        lock.unlink(missing_ok=True)  # an attempt that died before its release
        _wait_for(lambda: _states(config).get("demo-app") == "RUNNING", 120,
                  "demo-app to run (another session stopped it)")
        seen = log.stat().st_size
        try:
            result = _run(books, "rescuer", sandbox.inventory, APP, rescuer_services=["demo-app"],
                          rescuer_lock=str(lock))
        finally:
            if _states(config).get("demo-app") == "STOPPED":
                _supervisorctl(config, "start", "demo-app")
        with log.open("rb") as fh:
            fh.seek(seen)
            logged = fh.read()
        if _was_running(result, APP) == [["demo-app"]] and _acted(result, APP)[:1] == [["demo-app"]]:
            break
    assert result.rc == 0, result.stdout[-3000:]
    assert result.stats[APP]["rescued"] == 1
    assert [r["task"] for r in _failed(result, APP)] == [
        "Rescuer | a second restore of this target is refused meanwhile", "Rescuer | the restore fails"]
    refused = _one(result, APP, "Rescuer | a second restore of this target is refused meanwhile")
    assert refused["msg"].startswith(f"{lock} is held by rescuer.yml {APP} (user ")
    assert _was_running(result, APP) == [["demo-app"]]
    assert _acted(result, APP)[0] == ["demo-app"]
    assert b"stopped: demo-app (exit status" in logged  # it really stopped
    assert _one(result, APP, HEALTH_POLL)["status"] == 200  # and answered again, from the host
    assert not lock.exists()


# --- the fleet: systemd ----------------------------------------------------------------------


def _active(fleet, units: list[str] = FLEET_UNITS) -> dict[str, str]:
    return dict(zip(units, on_host(fleet, FLEET_APP, "systemctl", "is-active", *units).stdout.split()))


@pytest.mark.fleet
def test_fleet_systemd_stop_twice_and_start_what_ran(fleet, books: Path) -> None:
    # another session may be restarting app1's units
    _wait_for(lambda: list(_active(fleet).values())[:2] == ["active", "active"], 120,
              "demo-app and demo-worker@1 on app1")
    before = _active(fleet)
    assert before == {"demo-app": "active", "demo-worker@1": "active", "demo-worker@9": "inactive"}, before

    check = _ok(_control(books, fleet.inventory, FLEET_APP, FLEET_UNITS, "stopped", check=True))
    assert check.changed(FLEET_APP) > 0
    assert _one(check, FLEET_APP, PLAN)["msg"] == [
        "demo-worker@9: inactive (dead), already stopped", "demo-worker@1: active (running) -> would stop",
        "demo-app: active (running) -> would stop"]
    assert _active(fleet) == before

    try:
        cycle = _run(books, "cycle", fleet.inventory, FLEET_APP, cycle_services=FLEET_UNITS,
                     cycle_read_argv=["systemctl", "is-active", *FLEET_UNITS])
    finally:
        down = [u for u in ("demo-app", "demo-worker@1") if _active(fleet).get(u) != "active"]
        if down:
            on_host(fleet, FLEET_APP, "systemctl", "start", *down)
    assert cycle.rc == 0, cycle.stdout[-3000:]
    assert _one(cycle, FLEET_APP, "Cycle | read the state while stopped")["stdout"].split() == ["inactive"] * 3
    # stop (last first); the second stop has nothing to do; start exactly what ran (not demo-worker@9)
    assert _acted(cycle, FLEET_APP) == [["demo-worker@1", "demo-app"], ["demo-app", "demo-worker@1"]]
    assert _was_running(cycle, FLEET_APP) == [["demo-app", "demo-worker@1"], []]
    assert _one(cycle, FLEET_APP, HEALTH_POLL)["status"] == 200
    assert _active(fleet) == before


def _writers(fleet) -> dict[str, tuple[str, str]]:
    """unit -> (ActiveState, InvocationID) of app1's writers: a new invocation id is a real restart."""
    shown = on_host(fleet, FLEET_APP, "systemctl", "show", "--property=ActiveState,InvocationID", *WRITERS).stdout
    blocks = [dict(line.split("=", 1) for line in block.splitlines()) for block in shown.strip().split("\n\n")]
    return {unit: (b["ActiveState"], b["InvocationID"]) for unit, b in zip(WRITERS, blocks)}


def _states_of(units: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {unit: state for unit, (state, _invocation) in units.items()}


NORMAL_WRITERS = {"demo-app": "active", "demo-worker@1": "active", "demo-worker@2": "inactive",
                  "demo-worker@3": "inactive", IDLE: "inactive"}
SCALED_WRITERS = {**NORMAL_WRITERS, **{unit: "active" for unit in SCALED}}


@pytest.fixture
def scaled_app1(fleet) -> Iterator[Any]:
    """app1 scaled to demo-worker@1..3 (enabled and running, as scale_workers.yml starts them) and demo-worker@4
    enabled but stopped; afterwards the fleet's own state again (demo-app and demo-worker@1 alone), also when the
    test fails."""
    # another session may be restarting app1's units or scaling its workers: start from the fleet's own state
    _wait_for(lambda: _states_of(_writers(fleet)) == NORMAL_WRITERS, 120,
              f"app1 as the fleet runs it: {NORMAL_WRITERS}")
    try:
        on_host(fleet, FLEET_APP, "systemctl", "enable", "--now", *SCALED)
        on_host(fleet, FLEET_APP, "systemctl", "enable", IDLE)
        # another session's worker_scale test may be stopping demo-worker@1 for a moment
        _wait_for(lambda: _states_of(_writers(fleet)) == SCALED_WRITERS, 120, f"app1 scaled: {SCALED_WRITERS}")
        yield fleet
    finally:
        on_host(fleet, FLEET_APP, "systemctl", "disable", "--now", *SCALED, IDLE)
        on_host(fleet, FLEET_APP, "systemctl", "start", "demo-app", "demo-worker@1")
        assert _states_of(_writers(fleet)) == NORMAL_WRITERS


def _plans(result: PlaybookResult, host: str) -> list[list[str]]:
    return [r["msg"] for r in _all(result, host, PLAN) if r["event"] == "runner_on_ok"]


@pytest.mark.fleet
def test_fleet_restore_stops_every_worker_instance_and_starts_exactly_those(scaled_app1, books: Path) -> None:
    """The inventory names the workers demo-worker@*: the restore's stop takes every running instance (and the
    plan in --check names them, stopping nothing), the start brings back exactly those, not demo-worker@4."""
    fleet = scaled_app1
    before = _writers(fleet)
    running = ["demo-app", "demo-worker@1", *SCALED]
    assert _states_of(before) == SCALED_WRITERS, before
    # what the pattern stands for on the host: the loaded instances, as systemctl list-units --all lists them
    listed = on_host(fleet, FLEET_APP, "systemctl", "list-units", "--all", "--plain", "--no-legend", "--full",
                     "demo-worker@*.service").stdout.split("\n")
    assert sorted(line.split()[0] for line in listed if line.strip()) == [f"{u}.service" for u in WRITERS[1:]]
    stop_plan = ["demo-worker@4: inactive (dead), already stopped", "demo-worker@3: active (running) -> would stop",
                 "demo-worker@2: active (running) -> would stop", "demo-worker@1: active (running) -> would stop",
                 "demo-app: active (running) -> would stop"]

    check = _ok(_run(books, "restorer", fleet.inventory, FLEET_DB, check=True, restorer_units=WRITERS))
    writer = _one(check, FLEET_DB, "Restorer | app1's writers, as the restore takes them from the inventory")
    assert writer["ansible_facts"]["restorer_writer"]["services"] == ["demo-app", "demo-worker@*"]
    assert check.changed(FLEET_DB) > 0
    assert _plans(check, FLEET_DB) == [stop_plan, [f"{unit}: active (running), already started" for unit in running]]
    assert _was_running(check, FLEET_DB) == [running]
    assert _acted(check, FLEET_DB) == []
    assert _writers(fleet) == before  # the same invocations: nothing was stopped, even for a moment

    real = _run(books, "restorer", fleet.inventory, FLEET_DB, restorer_units=WRITERS)
    after = _writers(fleet)
    assert real.rc == 0, real.stdout[-3000:]
    assert _one(real, FLEET_DB, "Restorer | read the units while stopped")["stdout"].split() == ["inactive"] * 5
    assert _plans(real, FLEET_DB)[0] == [line.replace("would stop", "stop") for line in stop_plan]
    # the workers last first, then the app; started in list order, the same units
    assert _acted(real, FLEET_DB) == [running[::-1], running]
    assert _was_running(real, FLEET_DB) == [running]
    assert _one(real, FLEET_DB, HEALTH_POLL)["status"] == 200
    report = [r["msg"] for r in _all(real, FLEET_DB, "Report | one line for this host")]
    # the lines name app1, where the writers run, not db1, where the restore runs
    assert report[0] == f"{FLEET_APP}: stopped {', '.join(running[::-1])}; was running: {', '.join(running)}"
    assert report[1].startswith(f"{FLEET_APP}: started {', '.join(running)}; health: ") and len(report) == 2
    # each running writer really restarted (a new invocation), demo-worker@4 was not started
    assert _states_of(after) == _states_of(before)
    assert all(after[unit][1] != before[unit][1] for unit in running), (before, after)


@pytest.mark.fleet
def test_fleet_pattern_matching_nothing_is_fine_unknown_or_invalid_units_fail(fleet, books: Path) -> None:
    inv = fleet.inventory
    _wait_for(lambda: _active(fleet, ["demo-app"]) == {"demo-app": "active"}, 120, "demo-app on app1")
    check = _ok(_control(books, inv, FLEET_APP, ["demo-app", "nope@*"], "stopped", check=True))
    assert _one(check, FLEET_APP, PLAN)["msg"] == ["demo-app: active (running) -> would stop"]

    # for real: nothing to stop, nothing changed
    nothing = _ok(_control(books, inv, FLEET_APP, ["nope@*"], "stopped"))
    assert nothing.changed(FLEET_APP) == 0
    assert _one(nothing, FLEET_APP, PLAN)["msg"] == ["no service to stop"]
    assert _was_running(nothing, FLEET_APP) == [[]]

    unknown = _control(books, inv, FLEET_APP, ["demo-app", "nope@1", "nope@*"], "stopped", check=True)
    assert unknown.rc != 0
    failed = _failed(unknown, FLEET_APP)
    assert [r["task"] for r in failed] == ["Probe | every service is known to the service manager"]
    assert failed[0]["msg"] == f"{FLEET_APP}: unknown to systemd: nope@1. Nothing was changed."

    # systemctl refuses the name: the same check says so, in systemctl's words
    invalid = _control(books, inv, FLEET_APP, ["demo-app", "@x", "nope@*"], "stopped", check=True)
    assert invalid.rc != 0
    failed = _failed(invalid, FLEET_APP)
    assert [r["task"] for r in failed] == ["Probe | every service is known to the service manager"]
    assert failed[0]["msg"].startswith(
        f"{FLEET_APP}: systemctl show demo-app @x nope@*.service failed (rc 1): Failed to get properties: Unit name "
        "@x.service is neither a valid invocation ID nor unit name."), failed[0]["msg"]
    assert failed[0]["msg"].endswith(". Nothing was changed.") and "unknown to" not in failed[0]["msg"]

    refused = _control(books, inv, FLEET_APP, ["demo-worker@", "*@*", "demo-*"], "stopped", check=True)
    assert refused.rc != 0
    failed = _failed(refused, FLEET_APP)
    assert [r["task"] for r in failed] == ["Guards | the service manager, the names and the health wait"]
    assert failed[0]["msg"].startswith(f"{FLEET_APP}: cannot control demo-worker@, *@*, demo-* through systemd: ")
    assert _active(fleet, ["demo-app"]) == {"demo-app": "active"}


# --- run_lock --------------------------------------------------------------------------------


def _since(age: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat(timespec="seconds")


@pytest.fixture(scope="module")
def locks(private: Private, books: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[PlaybookResult, Path]:
    """One run of every run_lock case, on lock files in a directory of our own."""
    lock_dir = tmp_path_factory.mktemp("locks")
    for name, age in (("stale", 7200), ("fresh", 60)):
        (lock_dir / f"{name}.lock").write_text(json.dumps({"owner": f"restore.yml ({name})", "user": "bob",
                                                           "host": "db1", "token": name, "since": _since(age)}))
    result = _run(books, "locks", private.inventory, PRIVATE, lock_dir=str(lock_dir))
    assert result.rc == 0, result.stdout[-3000:]
    return result, lock_dir


@pytest.mark.integration
def test_run_lock_acquire_reenter_refuse_release(locks) -> None:
    result, lock_dir = locks
    lock = lock_dir / "restore.lock"
    taken = _one(result, PRIVATE, "Lock | acquire")
    assert taken["changed"] and taken["acquired"] and len(taken["token"]) == 32

    reenter = _one(result, PRIVATE, "Lock | re-enter with the same token")
    assert (reenter["changed"], reenter["acquired"], reenter["token"]) == (False, True, taken["token"])

    other = _one(result, PRIVATE, "Lock | another run is refused")
    assert other["event"] == "runner_on_failed"
    assert other["msg"].startswith(
        f"{lock} is held by restore.yml app@db1 (user tester, on {os.uname().nodename}), since ")
    assert other["msg"].endswith(" ago); it counts as stale after break_after=1h")
    assert other["token"] != taken["token"] and taken["token"] not in json.dumps(other["holder"])

    wrong = _one(result, PRIVATE, "Lock | release with another token is refused")
    assert wrong["event"] == "runner_on_failed" and "with another token: not released" in wrong["msg"]
    released = _one(result, PRIVATE, "Lock | release")
    assert (released["changed"], released["released"]) == (True, True)
    again = _one(result, PRIVATE, "Lock | release again")
    assert (again["changed"], again["released"]) == (False, False)
    assert not lock.exists()

    # the lock kept: what a lock file holds
    held = lock_dir / "held.lock"
    assert stat.S_IMODE(held.stat().st_mode) == 0o600
    record = json.loads(held.read_text())
    kept = _one(result, PRIVATE, "Lock | a lock to keep")["token"]
    assert {k: record[k] for k in ("owner", "user", "token")} == {"owner": "restore.yml app@db2", "user": "tester",
                                                                  "token": kept}
    assert abs(datetime.fromisoformat(record["since"]).timestamp() - time.time()) < 600


@pytest.mark.integration
def test_run_lock_check_mode_changes_nothing(locks) -> None:
    result, lock_dir = locks
    would = _one(result, PRIVATE, "Lock | check mode on a free lock")
    assert (would["changed"], would["would_acquire"]) == (True, True)
    assert not (lock_dir / "free.lock").exists()
    would_release = _one(result, PRIVATE, "Lock | check mode release")
    assert (would_release["changed"], would_release["would_release"]) == (True, True)
    kept = _one(result, PRIVATE, "Lock | a lock to keep")["token"]
    assert json.loads((lock_dir / "held.lock").read_text())["token"] == kept  # check mode released nothing


@pytest.mark.integration
def test_run_lock_breaks_only_a_stale_lock(locks) -> None:
    result, lock_dir = locks
    broke = _one(result, PRIVATE, "Lock | a stale lock is broken")
    assert broke["changed"] and broke["stale"] and broke["broken"]["owner"] == "restore.yml (stale)"
    assert broke["msg"].startswith("broke the stale lock of restore.yml (stale) (user bob, on db1), since ")
    assert json.loads((lock_dir / "stale.lock").read_text())["token"] == broke["token"]
    kept = _one(result, PRIVATE, "Lock | a fresh lock is not")
    assert kept["event"] == "runner_on_failed" and "is held by restore.yml (fresh)" in kept["msg"]
    assert json.loads((lock_dir / "fresh.lock").read_text())["token"] == "fresh"
