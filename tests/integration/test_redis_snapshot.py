# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/redis_snapshot.yml on throwaway redis-servers, and once on the fleet's cache1.

The sandbox's Redis is never snapshotted here (the demo app uses it); cache1 is, once with force and once more to
see changed=0, because a BGSAVE there changes no data.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redis_throwaway
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

PLAYBOOK = "redis_snapshot.yml"
HOST = "throwaway-redis"
ACT = "Act | BGSAVE and wait until it has finished"


@pytest.fixture()
def server() -> Iterator[redis_throwaway.Throwaway]:
    with redis_throwaway.start() as srv:
        yield srv


def _persistence(srv: redis_throwaway.Throwaway) -> dict[str, Any]:
    return srv.client().info("persistence")


def _act(result: PlaybookResult, host: str = HOST) -> dict[str, Any]:
    found = [r for r in result.host_results(host, ACT) if r["event"] != "runner_on_skipped"]
    assert found, result.stdout[-3000:]
    return found[-1]


def _report(result: PlaybookResult, host: str = HOST) -> str:
    return result.host_results(host, "Report | the snapshot on this host")[-1]["msg"]


@pytest.mark.integration
def test_four_runs_take_one_snapshot(server, tmp_path):
    server.client().mset({f"k{i}": i for i in range(100)})

    def state():
        p = _persistence(server)
        return p["rdb_saves"], p["rdb_last_bgsave_status"]

    runs = run_four_times(PLAYBOOK, server.inventory(tmp_path), read_state=state,
                          extravars={"redis_snapshot_max_age": 0})
    assert runs.before == (0, "ok") and runs.after == (1, "ok")
    assert (server.base / "dump.rdb").stat().st_size > 0
    assert _report(runs.check).startswith(f"{HOST}: would BGSAVE: 100 changes since the last save ")
    assert _report(runs.real).startswith(f"{HOST}: BGSAVE done: saved at ")
    assert "(100 changes since the previous save)" in _report(runs.real)
    assert _report(runs.real_again).startswith(f"{HOST}: nothing written since the last save ")


@pytest.mark.integration
def test_a_recent_save_is_enough_unless_forced(server, tmp_path):
    inventory = server.inventory(tmp_path)
    forced = run_playbook(PLAYBOOK, inventory, extravars={"redis_snapshot_force": True})
    assert forced.rc == 0 and forced.changed() == 1, forced.stdout[-3000:]
    server.client().set("written-after", 1)
    recent = run_playbook(PLAYBOOK, inventory, extravars={"redis_snapshot_max_age": "1h"})
    assert recent.rc == 0 and recent.changed() == 0, recent.stdout[-3000:]
    assert "is younger than max_age 1h00m: no snapshot needed" in _report(recent)
    assert _persistence(server)["rdb_saves"] == 1


def _bgsave_child(srv: redis_throwaway.Throwaway) -> int:
    """The pid of the server's forked save child (our own server's only child)."""
    pid = int(srv.pidfile.read_text().strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("no BGSAVE child process")


def _waiting_client(srv: redis_throwaway.Throwaway) -> bool:
    """A runbook.ops connection older than 1 s: the plan's lives milliseconds, only the act's wait lasts."""
    return any(c.get("name") == "runbook.ops" and int(c.get("age", 0)) >= 1 for c in srv.client().client_list())


@pytest.mark.integration
def test_a_bgsave_in_progress_is_waited_for(server, tmp_path):
    client = server.client()
    client.mset({f"k{i}": i for i in range(100)})
    client.bgsave()
    child = _bgsave_child(server)
    os.kill(child, signal.SIGSTOP)  # the save stays in progress until the playbook is seen waiting for it
    box: dict[str, PlaybookResult] = {}
    runner = threading.Thread(target=lambda: box.update(r=run_playbook(PLAYBOOK, server.inventory(tmp_path),
                                                                      extravars={"redis_snapshot_max_age": 0})))
    runner.start()
    try:
        deadline = time.monotonic() + 120
        while not _waiting_client(server) and runner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        client.set("written-during-the-save", 1)  # not in the first save: the run must take its own after it
    finally:
        os.kill(child, signal.SIGCONT)
        runner.join()
    result = box["r"]
    assert result.rc == 0, result.stdout[-3000:]
    act = _act(result)
    assert act["waited_for_running"] is True and act["bgsave_started"] is True, act
    p = _persistence(server)
    assert p["rdb_saves"] == 2 and p["rdb_last_bgsave_status"] == "ok" and p["rdb_changes_since_last_save"] == 0


@pytest.mark.integration
def test_a_failed_bgsave_fails_the_host(server, tmp_path):
    server.client().set("k", 1)
    (server.base / "dump.rdb").mkdir()  # the rename of the temporary file onto dump.rdb fails: EISDIR
    result = run_playbook(PLAYBOOK, server.inventory(tmp_path), extravars={"redis_snapshot_force": True})
    assert result.rc != 0 and result.failed_hosts() == {HOST}
    assert "BGSAVE failed: rdb_last_bgsave_status err" in result.stdout
    assert _persistence(server)["rdb_last_bgsave_status"] == "err"


@pytest.mark.fleet
def test_fleet_cache1_snapshot_then_changed_0(fleet):
    forced = run_playbook(PLAYBOOK, fleet.inventory, extravars={"redis_snapshot_force": True})
    assert forced.rc == 0 and forced.changed("cache1") == 1, forced.stdout[-3000:]
    act = _act(forced, "cache1")
    assert act["bgsave_started"] is True and act["rdb_last_bgsave_status"] == "ok"
    assert act["rdb_last_save_time"] >= act["previous_save_time"] and act["rdb_saves"] >= 1
    again = run_playbook(PLAYBOOK, fleet.inventory, extravars={"redis_snapshot_max_age": "1h"})
    assert again.rc == 0 and again.changed("cache1") == 0, again.stdout[-3000:]
    assert "no snapshot needed" in _report(again, "cache1")
