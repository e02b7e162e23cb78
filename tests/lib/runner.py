# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a playbook through ansible-runner and hand back per-host results.

Every integration test goes through run_playbook(), so that tests drive the
collection the way AWX and the CLI do, with this checkout's ansible.cfg.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ansible_runner

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class PlaybookResult:
    rc: int
    status: str
    stats: dict[str, dict[str, int]]
    events: list[dict[str, Any]] = field(repr=False)
    stdout: str = field(repr=False)

    def changed(self, host: str | None = None) -> int:
        """Changed count for one host, or summed over all hosts."""
        if host is not None:
            return self.stats.get(host, {}).get("changed", 0)
        return sum(s.get("changed", 0) for s in self.stats.values())

    def host_results(self, host: str, task: str = "") -> list[dict[str, Any]]:
        """Results of the tasks on host whose name contains `task` (all when empty)."""
        found = []
        for ev in self.events:
            data = ev.get("event_data", {})
            if (ev.get("event", "").startswith("runner_on_") and data.get("host") == host
                    and task in (data.get("task") or "") and "res" in data):
                found.append({"event": ev["event"], "task": data.get("task"), **data["res"]})
        return found

    def run_once_msg(self, task: str) -> list[str]:
        """The msg of the first ok result of a task whose name contains `task` (a run_once report), as a list."""
        for ev in self.events:
            data = ev.get("event_data", {})
            if ev.get("event") == "runner_on_ok" and task in (data.get("task") or ""):
                return list(data["res"]["msg"])
        raise AssertionError(f"no {task!r} in the run (rc={self.rc}):\n{self.stdout[-3000:]}")

    def host_fact(self, host: str, task: str, fact: str) -> Any:
        """The fact that host's last result of `task` set (set_fact's ansible_facts)."""
        found = self.host_results(host, task)
        assert found, f"no {task!r} on {host} (rc={self.rc}):\n{self.stdout[-3000:]}"
        return found[-1]["ansible_facts"][fact]

    def failed_hosts(self) -> set[str]:
        return {h for h, s in self.stats.items() if s.get("failures") or s.get("unreachable")}


def _stats(events: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per-host counters from the playbook_on_stats event."""
    for ev in reversed(events):
        if ev.get("event") == "playbook_on_stats":
            data = ev["event_data"]
            keys = {"ok": "ok", "changed": "changed", "failures": "failures", "dark": "unreachable",
                    "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
            hosts: dict[str, dict[str, int]] = {}
            for src, dst in keys.items():
                for host, n in (data.get(src) or {}).items():
                    hosts.setdefault(host, {v: 0 for v in keys.values()})[dst] = n
            return hosts
    return {}


def run_playbook(playbook: str, inventory: Path | str, *, extravars: dict[str, Any] | None = None,
                 check: bool = False, limit: str | None = None, tags: str | None = None,
                 diff: bool = False, envvars: dict[str, str] | None = None) -> PlaybookResult:
    """Run playbooks/<playbook> (or an absolute path) against inventory."""
    path = Path(playbook)
    if not path.is_absolute():
        path = ROOT / "playbooks" / playbook
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")
    if tags:
        cmdline += ["--tags", tags]
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        **(envvars or {}),
    }
    with tempfile.TemporaryDirectory(prefix="runbook-runner-") as tmp:
        r = ansible_runner.run(
            private_data_dir=tmp,
            playbook=str(path),
            inventory=str(inventory),
            extravars=extravars or {},
            limit=limit,
            cmdline=" ".join(cmdline) or None,
            envvars=env,
            project_dir=str(ROOT),
            quiet=True,
            suppress_env_files=True,
            timeout=int(os.environ.get("RUNBOOK_TEST_PLAYBOOK_TIMEOUT", "900")),
        )
        events = list(r.events)
        stdout = r.stdout.read()
    return PlaybookResult(rc=r.rc, status=r.status, stats=_stats(events), events=events, stdout=stdout)


@dataclass
class FourRuns:
    """The standard test of anything that changes state: check, real, check, real."""

    before: Any
    after: Any
    check: PlaybookResult
    real: PlaybookResult
    check_again: PlaybookResult
    real_again: PlaybookResult


def run_four_times(playbook: str, inventory: Path | str, *, read_state: Callable[[], Any],
                   **kwargs: Any) -> FourRuns:
    """Run check, real, check, real, asserting what each must show.

    read_state reads the real state the playbook changes (SQL, HTTP, a
    file...): --check must report a change and leave it untouched, the real
    run must change it, and both runs after that must report changed=0.
    """
    before = read_state()
    check = run_playbook(playbook, inventory, check=True, **kwargs)
    assert check.rc == 0, check.stdout[-3000:]
    assert check.changed() > 0, "--check reported no change, but the state needs one"
    assert read_state() == before, "--check changed the real state"
    real = run_playbook(playbook, inventory, **kwargs)
    assert real.rc == 0, real.stdout[-3000:]
    assert real.changed() > 0, "the real run reported no change"
    after = read_state()
    assert after != before, "the real run reported a change but the state is the same"
    check_again = run_playbook(playbook, inventory, check=True, **kwargs)
    assert check_again.rc == 0 and check_again.changed() == 0, check_again.stdout[-3000:]
    real_again = run_playbook(playbook, inventory, **kwargs)
    assert real_again.rc == 0 and real_again.changed() == 0, real_again.stdout[-3000:]
    assert read_state() == after
    return FourRuns(before, after, check, real, check_again, real_again)
