# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/queues.yml on real jobs of the real libraries, scaling real service managers.

Jobs are made by BullMQ and RQ themselves (tests/queues: node/fixture.js, python/rq_fixture.py) in db 7 of the
sandbox Redis (the queue tests' database), under a key prefix of the test's own, deleted afterwards. The depth
report must equal the library's own counts; --check with queues_retry_failed and queues_scale_workers must leave
every key (DUMP) and every supervisord process as it was while listing the job ids and the processes; the real
run retries the failed jobs (the library then sees them waiting, and its own worker processes them) and scales
the sandbox's demo-worker group; the runs after that change nothing; below the threshold nothing scales.

The fleet test makes BullMQ jobs in db 7 of cache1's Redis through an ssh tunnel (the fleet's ports are only
published on loopback) and scales demo-worker@ template instances on app1.

The workers are shared with other sessions: every test puts them back to their normal state (demo-worker-0
alone; demo-worker@1 alone) before and after, also when it fails.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.lib.fleet_redis import cache1_redis
from tests.lib.fleet_units import on_host
from tests.lib.redis_fixtures import queue_context
from tests.lib.runner import ROOT, PlaybookResult, run_playbook
from tests.queues.harness import DB, delete_keys, node, python, unique_prefix

BOOK = "queues.yml"
CACHE, APP = "sandbox-cache", "sandbox-app"
GROUP = "demo-worker"
NORMAL = (f"{GROUP}:{GROUP}-0",)
FLEET_UNITS = [f"{GROUP}@{n}" for n in (1, 2, 3)]
REPORT = "Report | the fact for the workers play and the report"
WHY = "Scale | say why"
SCALED = "Report | export the result for the caller"  # worker_scale's fact


# --- helpers ---------------------------------------------------------------------------------


def _watch(prefix: str, *libraries: str, **extra: Any) -> dict[str, Any]:
    """Extra vars: one queues_watch entry per library, all in the test database under the test's prefix
    (RQ's prefix is `<prefix>:rq`, its own RQ_KEY_PREFIX)."""
    entries = [{"library": lib, "prefix": prefix if lib != "rq" else f"{prefix}:rq", "db": DB} for lib in libraries]
    return {"queues_watch": entries, **extra}


def _ok(result: PlaybookResult) -> PlaybookResult:
    assert result.rc == 0, result.stdout[-4000:]
    return result


def _changes(result: PlaybookResult) -> list[str]:
    """host: task of every result that reported a change, for the failure message."""
    return [f"{ev['event_data']['host']}: {ev['event_data']['task']}" for ev in result.events
            if ev.get("event") == "runner_on_ok" and ev["event_data"].get("res", {}).get("changed")]


def _report(result: PlaybookResult, host: str = CACHE) -> dict[str, Any]:
    found = [r["ansible_facts"]["queues_report"] for r in result.host_results(host, REPORT)]
    assert len(found) == 1, result.stdout[-4000:]
    return found[0]


def _message(result: PlaybookResult, host: str, task: str) -> str:
    found = [r["msg"] for r in result.host_results(host, task)]
    assert len(found) == 1, result.stdout[-4000:]
    return found[0]


def _entry(report: dict[str, Any], library: str) -> dict[str, Any]:
    return next(e for e in report["entries"] if e["library"] == library)


def _keys(env: dict[str, str], prefix: str) -> dict[bytes, bytes | None]:
    """Every key under the prefix in the test database, serialized (DUMP): any write by --check shows. But
    BullMQ's `stalled-check`, which the fixture's worker left with a TTL of its stalled interval: it expires."""
    raw = redis.Redis(host="127.0.0.1", port=int(env["REDIS_PORT"]), password=env["REDISCLI_AUTH"], db=DB)
    try:
        return {k: raw.dump(k) for k in sorted(raw.scan_iter(match=f"{prefix}:*", count=1000))
                if not k.endswith(b":stalled-check")}
    finally:
        raw.close()


def _supervisorctl(sandbox: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "supervisorctl"), "-c", sandbox.env["SUPERVISOR_CONFIG"],
                           *args], text=True, capture_output=True, check=False, timeout=120)


def _group(sandbox: Any) -> dict[str, str]:
    """supervisord's state of each process of the demo-worker group."""
    rows = [line.split() for line in _supervisorctl(sandbox, "status").stdout.splitlines()]
    return {row[0]: row[1] for row in rows if row and row[0].startswith(f"{GROUP}:")}


def _running(sandbox: Any) -> tuple[str, ...]:
    return tuple(sorted(n for n, state in _group(sandbox).items() if state in ("RUNNING", "STARTING")))


def _normal_sandbox(sandbox: Any) -> None:
    others = [name for name in _group(sandbox) if name not in NORMAL]
    if others:
        _supervisorctl(sandbox, "stop", *others)
    _supervisorctl(sandbox, "start", *NORMAL)


@pytest.fixture
def jobs(sandbox) -> Iterator[dict[str, Any]]:
    """A prefix of the test's own in db 7 (deleted after) and the sandbox's workers back to normal around it."""
    prefix = unique_prefix("qbook")
    _normal_sandbox(sandbox)
    assert _running(sandbox) == NORMAL
    try:
        with queue_context(sandbox, prefix, f"{prefix}:*", target=sandbox) as ctx:
            yield ctx
    finally:
        _normal_sandbox(sandbox)


# --- the sandbox: BullMQ and RQ, supervisord ---------------------------------------------------


@pytest.mark.sandbox
def test_depth_equals_the_libraries_counts(jobs: dict[str, Any]) -> None:
    prefix, env = jobs["prefix"], jobs["env"]
    node(env, "bullmq", "populate", prefix, "emails")
    python(env, "rq_fixture.py", "populate", "alerts", RQ_KEY_PREFIX=f"{prefix}:rq")
    result = _ok(run_playbook(BOOK, jobs["inventory"], extravars={**_watch(prefix, "bullmq", "rq"),
                                                                  "queues_fail_on": "never"}))
    report = _report(result)
    # the libraries count after queue_depth: RQ's own count cleans its registries up
    theirs_bullmq = node(env, "bullmq", "counts", prefix, "emails")["emails"]["counts"]
    theirs_rq = python(env, "rq_fixture.py", "counts", "alerts", RQ_KEY_PREFIX=f"{prefix}:rq")["alerts"]
    bullmq, rq = _entry(report, "bullmq"), _entry(report, "rq")
    assert bullmq["queues"]["emails"]["counts"] == theirs_bullmq
    assert {s: n for s, n in rq["queues"]["alerts"]["counts"].items() if s in theirs_rq} == theirs_rq
    assert all(n > 0 for s, n in theirs_bullmq.items() if s != "paused"), theirs_bullmq  # every state is compared
    # one line per queue with every state, then the host's verdict (3 failed BullMQ jobs: a warning)
    lines = report["lines"]
    emails = next(line for line in lines if f"bullmq {prefix}:emails db {DB}:" in line)
    assert emails.startswith(f"{CACHE}: bullmq {prefix}:emails db {DB}: WARNING waiting 4, paused 0, active 1,")
    assert all(f"{state} {n}" in emails for state, n in theirs_bullmq.items())
    assert any(f"rq {prefix}:rq:alerts db {DB}:" in line for line in lines)
    # waiting for the workers: the ready jobs of both libraries (BullMQ waiting + prioritized, RQ waiting)
    ready = theirs_bullmq["waiting"] + theirs_bullmq["prioritized"] + theirs_rq["waiting"]
    assert report["waiting"] == ready
    assert lines[-1].startswith(f"{CACHE}: WARNING 2 queues, {ready} jobs waiting for the workers")
    assert report["verdict"] == "warning" and report["retried"] == []
    assert result.changed() == 0
    assert jobs["env"]["REDISCLI_AUTH"] not in result.stdout, "the Redis password is in the output"


@pytest.mark.sandbox
def test_retry_and_scale_check_real_and_again(jobs: dict[str, Any]) -> None:
    prefix, env, conn, sandbox = jobs["prefix"], jobs["env"], jobs["redis"], jobs["target"]
    node(env, "bullmq", "populate", prefix, "emails")  # 4 waiting, 2 prioritized, 3 failed, ...
    # 9 ready once the 3 failed are retried: ceil(9 / 3) = 3 workers
    extravars = _watch(prefix, "bullmq", queues_retry_failed=True, queues_scale_workers=True,
                       queues_scale_threshold=5, worker_scale_jobs_per_worker=3)
    keys = _keys(env, prefix)
    failed_ids = sorted(conn.zrange(f"{prefix}:emails:failed", 0, -1), key=int)
    assert len(failed_ids) == 3

    check = _ok(run_playbook(BOOK, jobs["inventory"], check=True, extravars=extravars))
    assert _keys(env, prefix) == keys, "--check wrote to Redis"
    assert _running(sandbox) == NORMAL, "--check changed the workers"
    report = _report(check)
    assert report["retried"] == failed_ids and report["waiting"] == 9
    assert f"would retry 3 failed ({', '.join(failed_ids)})" in report["lines"][0]
    assert "(3 of them would be retried)" in report["lines"][-1]
    assert _message(check, APP, "Plan | one line for this host").endswith(
        f"3 wanted for 9 waiting jobs at 3 per worker: would start {GROUP}:{GROUP}-1, {GROUP}:{GROUP}-2")
    assert check.changed(CACHE) > 0 and check.changed(APP) > 0

    real = _ok(run_playbook(BOOK, jobs["inventory"], extravars=extravars))
    assert _report(real)["retried"] == failed_ids and _report(real)["waiting"] == 9
    counts = node(env, "bullmq", "counts", prefix, "emails")["emails"]["counts"]
    assert counts["failed"] == 0 and counts["waiting"] == 7, counts  # the library sees them waiting again
    assert _running(sandbox) == (f"{GROUP}:{GROUP}-0", f"{GROUP}:{GROUP}-1", f"{GROUP}:{GROUP}-2")
    scaled = [r["ansible_facts"]["worker_scale_result"] for r in real.host_results(APP, SCALED)]
    assert scaled and scaled[0]["started"] == [f"{GROUP}:{GROUP}-1", f"{GROUP}:{GROUP}-2"], scaled
    assert env["REDISCLI_AUTH"] not in check.stdout + real.stdout, "the Redis password is in the output"

    after = _keys(env, prefix)
    for again in (run_playbook(BOOK, jobs["inventory"], check=True, extravars=extravars),
                  run_playbook(BOOK, jobs["inventory"], extravars=extravars)):
        assert _ok(again).changed() == 0, _changes(again)
        assert _report(again)["retried"] == [] and _report(again)["waiting"] == 9
    assert _keys(env, prefix) == after
    assert len(_running(sandbox)) == 3

    # up only: 9 waiting at 100 per worker wants 1, and the 3 running all stay
    up_only = _ok(run_playbook(BOOK, jobs["inventory"], extravars={**extravars, "worker_scale_jobs_per_worker": 100}))
    assert up_only.changed() == 0 and len(_running(sandbox)) == 3, (_changes(up_only), up_only.stdout[-3000:])
    fact = up_only.host_results(APP, SCALED)[0]["ansible_facts"]["worker_scale_result"]
    assert fact["stopped"] == [] and fact["clamp_reason"] == "kept 3 running (worker_scale_up_only)", fact

    # the library's own worker runs the retried jobs (and the other ready ones)
    done = node(env, "bullmq", "work", prefix, "emails", "9")
    assert set(failed_ids) <= set(done["processed"])


@pytest.mark.sandbox
def test_below_the_threshold_nothing_scales(jobs: dict[str, Any]) -> None:
    prefix, env, sandbox = jobs["prefix"], jobs["env"], jobs["target"]
    node(env, "bullmq", "populate", prefix, "emails")
    keys = _keys(env, prefix)
    result = _ok(run_playbook(BOOK, jobs["inventory"], extravars=_watch(
        prefix, "bullmq", queues_scale_workers=True, queues_scale_threshold=1000, worker_scale_jobs_per_worker=1)))
    assert _message(result, APP, WHY) == (
        f"{APP}: 6 jobs waiting on {CACHE}, below queues_scale_threshold 1000: not scaled")
    assert not result.host_results(APP, SCALED) and result.changed() == 0
    assert _running(sandbox) == NORMAL and _keys(env, prefix) == keys


@pytest.mark.sandbox
def test_unreachable_redis_and_bad_entries_give_one_clear_error(jobs: dict[str, Any]) -> None:
    sandbox = jobs["target"]
    nowhere = _watch(jobs["prefix"], "bullmq", queues_scale_workers=True, queues_scale_threshold=0,
                     runbook_redis_port=1)
    result = run_playbook(BOOK, jobs["inventory"], extravars=nowhere)
    assert result.rc != 0 and result.failed_hosts() == {CACHE}  # the workers play is not a second error
    report = _report(result)
    assert report["verdict"] == "critical" and not report["available"]
    assert report["lines"][0].startswith(f"{CACHE}: bullmq db {DB}: CRITICAL cannot connect to Redis")
    assert _message(result, APP, WHY).endswith("but some of its queues could not be read: not scaled")
    failed = [r["msg"] for r in result.host_results(CACHE) if r["event"] == "runner_on_failed"]
    assert len(failed) == 1 and failed[0].startswith(f"{CACHE}: queues critical (queues_fail_on is critical)")
    assert jobs["env"]["REDISCLI_AUTH"] not in result.stdout, "the Redis password is in the output"
    assert _running(sandbox) == NORMAL

    bad = run_playbook(BOOK, jobs["inventory"], extravars={"queues_watch": [{"library": "bullmqq"},
                                                                            {"library": "rq", "queue": "x"}]})
    failed = [r["msg"] for r in bad.host_results(CACHE) if r["event"] == "runner_on_failed"]
    assert bad.rc != 0 and failed == [
        f'{CACHE}: queues_watch[0] has library "bullmqq", not one of bullmq, bull, rq, celery, sidekiq; '
        "queues_watch[1] has unknown keys queue (known: library, queues, prefix, db, thresholds, scale). "
        "Nothing was read."]
    assert not bad.host_results(CACHE, "Depth |")


# --- the fleet: cache1's Redis, systemd template instances on app1 ------------------------------


def _units(fleet: Any) -> tuple[tuple[str, str, str], ...]:
    """(unit, is-active, is-enabled) of demo-worker@1..3 on app1."""
    active = on_host(fleet, "app1", "systemctl", "is-active", *FLEET_UNITS).stdout.split()
    enabled = on_host(fleet, "app1", "systemctl", "is-enabled", *FLEET_UNITS).stdout.split()
    return tuple(zip(FLEET_UNITS, active, enabled))


def _set_units(fleet: Any, state: tuple[tuple[str, str, str], ...]) -> None:
    """Put demo-worker@1..3 back as _units() read them."""
    for unit, active, enabled in state:
        on_host(fleet, "app1", "systemctl", "start" if active == "active" else "stop", unit)
        on_host(fleet, "app1", "systemctl", "enable" if enabled == "enabled" else "disable", unit)


NORMAL_FLEET = (("demo-worker@1", "active", "enabled"), ("demo-worker@2", "inactive", "disabled"),
                ("demo-worker@3", "inactive", "disabled"))


@pytest.mark.fleet
def test_fleet_scales_app1_from_cache1(fleet) -> None:
    prefix = unique_prefix("qfleet")
    extravars = _watch(prefix, "bullmq", queues_scale_workers=True, queues_scale_threshold=5,
                       worker_scale_jobs_per_worker=3, worker_scale_max=3)
    with cache1_redis(fleet) as env:
        conn = redis.Redis(host="127.0.0.1", port=int(env["REDIS_PORT"]), password=env["REDISCLI_AUTH"], db=DB,
                           decode_responses=True)
        previous = _units(fleet)
        try:
            _set_units(fleet, NORMAL_FLEET)
            before = _units(fleet)
            assert before == NORMAL_FLEET, before
            node(env, "bullmq", "populate", prefix, "emails")  # 6 ready: ceil(6 / 3) = 2 instances
            check = _ok(run_playbook(BOOK, fleet.inventory, check=True, extravars=extravars))
            assert _units(fleet) == before
            assert _report(check, "cache1")["waiting"] == 6
            assert _message(check, "app1", "Plan | one line for this host").endswith(
                "2 wanted for 6 waiting jobs at 3 per worker: would start demo-worker@2; would enable demo-worker@2")
            real = _ok(run_playbook(BOOK, fleet.inventory, extravars=extravars))
            assert real.changed("app1") > 0
            assert _units(fleet) == (("demo-worker@1", "active", "enabled"), ("demo-worker@2", "active", "enabled"),
                                     ("demo-worker@3", "inactive", "disabled"))
            again = _ok(run_playbook(BOOK, fleet.inventory, extravars=extravars))
            assert again.changed() == 0, again.stdout[-4000:]
            assert fleet.env["REDISCLI_AUTH"] not in check.stdout + real.stdout + again.stdout, "password in the output"
        finally:
            delete_keys(conn, [f"{prefix}:*"])
            conn.close()
            _set_units(fleet, previous)
