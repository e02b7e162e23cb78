# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/redis_health.yml against real Redis servers.

The sandbox's Redis and cache1 are shared with the demo app and other tests: against them the run is read-only
and only the shape of the report is checked. An evicting policy, a full maxmemory, a wrong password and a stopped
server happen on throwaway redis-servers of our own.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import redis_throwaway
from tests.lib.runner import PlaybookResult, run_playbook

PLAYBOOK = "redis_health.yml"
REPORT_TASK = "Summary | Redis health report, one line per host"
HOST_TASK = "Report | compose this host's verdict and line"
HOST = "throwaway-redis"


def _host_report(result: PlaybookResult, host: str) -> dict[str, Any]:
    return result.host_fact(host, HOST_TASK, "redis_health_report")


@pytest.fixture()
def server() -> Iterator[redis_throwaway.Throwaway]:
    with redis_throwaway.start() as srv:
        yield srv


# --- sandbox and fleet: read-only, shared --------------------------------------------------


@pytest.mark.sandbox
def test_sandbox_check_mode_reports_and_writes_json(sandbox, tmp_path):
    result = run_playbook(PLAYBOOK, sandbox.inventory, check=True,
                          extravars={"redis_health_report_dir": str(tmp_path), "redis_health_fail_on": "never"})
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed() == 0
    lines = result.run_once_msg(REPORT_TASK)
    assert lines[-1].startswith("redis_health: 1 host: "), lines
    report = _host_report(result, "sandbox-cache")
    res = report["result"]
    assert res["is_available"] is True and res["redis_version"].startswith("7.")
    # the sandbox holds the demo app's queues: it is configured noeviction, with RDB + AOF
    assert res["memory"]["maxmemory_policy"] == "noeviction" and res["memory"]["evicting_policy"] is False
    assert res["persistence"]["aof_enabled"] is True and res["replication"]["role"] == "master"
    assert res["clients"]["connected"] >= 1 and res["clients"]["maxclients"] > 0
    if report["verdict"] == "ok":
        assert lines[0].startswith("sandbox-cache: ok (Redis 7."), lines[0]
    files = list(tmp_path.glob("redis_health_*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["check_mode"] is True and data["hosts"][0]["host"] == "sandbox-cache"
    password = sandbox.env["REDISCLI_AUTH"]
    assert password not in result.stdout and password not in files[0].read_text()


@pytest.mark.fleet
def test_fleet_cache1_is_available(fleet):
    result = run_playbook(PLAYBOOK, fleet.inventory, extravars={"redis_health_fail_on": "never"})
    assert result.rc == 0, result.stdout[-3000:]
    report = _host_report(result, "cache1")
    res = report["result"]
    assert res["is_available"] is True, report
    assert res["redis_version"].startswith("7.") and res["persistence"]["aof_enabled"] is True
    assert result.run_once_msg(REPORT_TASK)[0].startswith("cache1: ")


# --- throwaway servers: evicting policy, memory, wrong password, stopped server --------------


@pytest.mark.integration
def test_healthy_throwaway_is_ok_with_keyspace(server, tmp_path):
    server.client(0).set("a", 1)
    server.client(3).set("b", 2, ex=600)
    result = run_playbook(PLAYBOOK, server.inventory(tmp_path))
    assert result.rc == 0, result.stdout[-3000:]
    report = _host_report(result, HOST)
    assert report["verdict"] == "ok", report
    assert report["result"]["keyspace"] == [
        {"db": 0, "keys": 1, "expires": 0, "avg_ttl": 0},
        {"db": 3, "keys": 1, "expires": 1, "avg_ttl": report["result"]["keyspace"][1]["avg_ttl"]}]
    assert report["line"].startswith(f"{HOST}: ok (Redis 7.") and report["line"].endswith(", 2 keys)")


@pytest.mark.integration
def test_allkeys_lru_is_flagged_and_fails_on_warning(tmp_path):
    with redis_throwaway.start("maxmemory 64mb", "maxmemory-policy allkeys-lru") as srv:
        inventory = srv.inventory(tmp_path)
        result = run_playbook(PLAYBOOK, inventory)
        assert result.rc == 0, result.stdout[-3000:]  # a warning does not fail by default
        report = _host_report(result, HOST)
        assert report["verdict"] == "warning"
        assert report["reasons"] == ["maxmemory-policy allkeys-lru evicts keys: job queues in this Redis can lose "
                                     "jobs silently (use noeviction)"]
        assert report["result"]["memory"]["limit_basis"] == "maxmemory"
        assert report["result"]["memory"]["maxmemory"] == 64 * 1048576

        strict = run_playbook(PLAYBOOK, inventory, extravars={"redis_health_fail_on": "warning"})
        assert strict.rc != 0 and strict.failed_hosts() == {HOST}
        cache_only = run_playbook(PLAYBOOK, inventory, extravars={"redis_health_evicting_policy_verdict": "ok"})
        assert _host_report(cache_only, HOST)["verdict"] == "ok"


@pytest.mark.integration
def test_memory_near_maxmemory_is_critical(tmp_path):
    with redis_throwaway.start("maxmemory 8mb", "maxmemory-policy noeviction") as srv:
        client = srv.client()
        # fill to 92 % of maxmemory or more with 16 KiB values (noeviction refuses writes beyond 100 %)
        i = 0
        while int(client.info("memory")["used_memory"]) < 0.92 * 8 * 1048576:
            try:
                client.set(f"fill:{i}", "x" * 16384)
            except redis.exceptions.OutOfMemoryError:
                break
            i += 1
        result = run_playbook(PLAYBOOK, srv.inventory(tmp_path))
        assert result.rc != 0 and result.failed_hosts() == {HOST}, result.stdout[-3000:]
        report = _host_report(result, HOST)
        assert report["verdict"] == "critical"
        assert report["reasons"][0].startswith("memory ") and "of maxmemory 8.0 MiB (critical at 90%)" in report["reasons"][0]


@pytest.mark.integration
def test_wrong_password_is_critical_without_the_password(server, tmp_path):
    inventory = server.inventory(tmp_path, runbook_redis_password="not-the-password-4711")
    result = run_playbook(PLAYBOOK, inventory)
    assert result.rc != 0 and result.failed_hosts() == {HOST}
    report = _host_report(result, HOST)
    assert report["verdict"] == "critical" and report["result"]["is_available"] is False
    assert report["reasons"] == [f"cannot connect to Redis at 127.0.0.1:{server.port}/0: invalid username-password "
                                 "pair or user is disabled."]
    assert "not-the-password-4711" not in result.stdout and server.password not in result.stdout


@pytest.mark.integration
def test_stopped_server_is_unavailable_not_a_traceback(server, tmp_path):
    inventory = server.inventory(tmp_path)
    server.stop()
    result = run_playbook(PLAYBOOK, inventory, check=True)
    assert result.rc != 0 and result.failed_hosts() == {HOST}
    report = _host_report(result, HOST)
    assert report["verdict"] == "critical" and report["result"]["is_available"] is False
    assert report["reasons"][0].startswith(f"cannot connect to Redis at 127.0.0.1:{server.port}/0: ")
    assert "Connection refused" in report["reasons"][0]
    assert "Traceback" not in result.stdout
    assert report["line"].startswith(f"{HOST}: CRITICAL cannot connect to Redis")


@pytest.mark.integration
def test_an_acl_user_without_config_is_still_checked(server, tmp_path):
    # a monitoring login that may not run CONFIG: everything but the RDB save schedule is still read
    server.client().acl_setuser("monitor", enabled=True, passwords=["+monitor-pw-0815"], commands=["+@all", "-config"],
                                keys=["~*"])
    inventory = server.inventory(tmp_path, runbook_redis_user="monitor", runbook_redis_password="monitor-pw-0815")
    result = run_playbook(PLAYBOOK, inventory)
    assert result.rc == 0, result.stdout[-3000:]
    report = _host_report(result, HOST)
    assert report["verdict"] == "ok", report
    res = report["result"]
    assert res["persistence"]["rdb_save_config"] is None
    assert res["errors"]["rdb_save_config"].startswith("CONFIG GET save refused: ")
    assert res["memory"]["maxmemory_policy"] == "noeviction" and res["clients"]["maxclients"] > 0
    assert "monitor-pw-0815" not in result.stdout
