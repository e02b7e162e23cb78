# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/flush_cache.yml on throwaway redis-servers (never the shared sandbox Redis: it holds the demo's queues).

RQ jobs are made by the real RQ library (rq 3.0 in the venv). BullMQ, Celery and Sidekiq keys are written by hand
in the layouts those libraries document (their clients are not installed in this venv: Node's bullmq, celery and
Ruby's sidekiq), which is what the guard matches on.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from rq import Queue

import redis_throwaway
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

PLAYBOOK = "flush_cache.yml"
HOST = "throwaway-redis"
pytestmark = pytest.mark.integration


@pytest.fixture()
def server() -> Iterator[redis_throwaway.Throwaway]:
    with redis_throwaway.start() as srv:
        yield srv


def _fill_cache(srv: redis_throwaway.Throwaway, db: int, n: int = 200) -> None:
    pipe = srv.client(db).pipeline()
    for i in range(n):
        pipe.set(f"cache:page:{i}", "x" * 100, ex=3600)
    pipe.execute()


def _rq_jobs(srv: redis_throwaway.Throwaway, db: int) -> None:
    conn = redis.Redis(host="127.0.0.1", port=srv.port, password=srv.password, db=db)
    queue = Queue("emails", connection=conn)
    queue.enqueue("os.getcwd")
    queue.enqueue_in(timedelta(hours=1), "os.getcwd")


def _lines(result: PlaybookResult, task: str) -> list[str]:
    return [r["msg"] for r in result.host_results(HOST, task) if "msg" in r]


def _acted(result: PlaybookResult) -> bool:
    return any(r["event"] == "runner_on_ok" for r in result.host_results(HOST, "Act | flush the cache database"))


def test_four_runs_flush_the_cache_and_leave_the_queues(server, tmp_path):
    _fill_cache(server, 1)
    _rq_jobs(server, 0)
    queue_keys = sorted(server.client(0).keys("*"))
    inventory = server.inventory(tmp_path)

    def state():
        return server.client(1).dbsize(), sorted(server.client(0).keys("*"))

    runs = run_four_times(PLAYBOOK, inventory, read_state=state, extravars={"flush_cache_db": 1})
    assert runs.before == (200, queue_keys) and runs.after == (0, queue_keys)
    assert _lines(runs.check, "Report | the cache flush") == [f"{HOST}: would flush database 1: 200 keys"]
    assert _lines(runs.real, "Report | the cache flush") == [f"{HOST}: flushed database 1: 200 keys deleted"]
    assert _lines(runs.real_again, "Report | the cache flush") == [f"{HOST}: database 1 is empty: nothing to flush"]
    assert not _acted(runs.check_again) and not _acted(runs.real_again)


@pytest.mark.parametrize("layout", ["rq", "bullmq", "celery", "sidekiq"])
def test_a_queue_database_is_refused_in_check_and_real_runs(server, tmp_path, layout):
    db = 2
    client = server.client(db)
    if layout == "rq":
        _rq_jobs(server, db)
        first = "rq:"
    elif layout == "bullmq":  # BullMQ's documented layout, prefix "bull"
        client.hset("bull:campaign-emails:meta", mapping={"opts.maxLenEvents": 10000})
        client.lpush("bull:campaign-emails:wait", "1")
        client.hset("bull:campaign-emails:1", mapping={"name": "send", "data": "{}"})
        first = "bull:"
    elif layout == "celery":  # kombu's Redis transport: the queue list and the exchange binding set
        client.lpush("celery", '{"body": "", "headers": {"task": "app.send"}}')
        client.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
        first = ""
    else:  # Sidekiq's documented layout
        client.sadd("queues", "default")
        client.lpush("queue:default", '{"class": "HardWorker", "args": []}')
        first = ""
    _fill_cache(server, db, 50)
    before = sorted(client.keys("*"))
    inventory = server.inventory(tmp_path)
    for check in (True, False):
        result = run_playbook(PLAYBOOK, inventory, check=check, extravars={"flush_cache_db": db})
        assert result.rc != 0 and result.failed_hosts() == {HOST}, result.stdout[-3000:]
        assert f"refusing to flush database {db} at 127.0.0.1:{server.port}/{db}: it holds job-queue keys" in result.stdout
        assert f"(first found '{first}" in result.stdout
        assert not _acted(result)
    assert sorted(client.keys("*")) == before


def test_force_flushes_a_queue_database(server, tmp_path):
    _rq_jobs(server, 2)
    result = run_playbook(PLAYBOOK, server.inventory(tmp_path), extravars={"flush_cache_db": 2, "flush_cache_force": True})
    assert result.rc == 0, result.stdout[-3000:]
    assert server.client(2).dbsize() == 0
    line = _lines(result, "Report | the cache flush")[0]
    assert line.startswith(f"{HOST}: flushed database 2: ") and "(forced: queue key 'rq:" in line


def test_no_database_named_is_refused(server, tmp_path):
    _fill_cache(server, 0, 10)
    result = run_playbook(PLAYBOOK, server.inventory(tmp_path))
    assert result.rc != 0 and "flush_cache_db is required" in result.stdout
    assert server.client(0).dbsize() == 10


def test_the_inventory_cache_db_is_the_default_and_the_app_db_is_refused(server, tmp_path):
    _fill_cache(server, 3, 10)
    _fill_cache(server, 0, 10)  # cache keys only, but the inventory says db 0 is the application's
    inventory = server.inventory(tmp_path, runbook_redis_cache_db=3)
    result = run_playbook(PLAYBOOK, inventory)
    assert result.rc == 0, result.stdout[-3000:]
    assert server.client(3).dbsize() == 0
    refused = run_playbook(PLAYBOOK, inventory, extravars={"flush_cache_db": 0})
    assert refused.rc != 0 and "it is the inventory's runbook_redis_db" in refused.stdout
    assert server.client(0).dbsize() == 10


def test_async_flush(server, tmp_path):
    _fill_cache(server, 4, 500)
    result = run_playbook(PLAYBOOK, server.inventory(tmp_path), extravars={"flush_cache_db": 4, "flush_cache_async": True})
    assert result.rc == 0, result.stdout[-3000:]
    assert server.client(4).dbsize() == 0


def test_stopped_server_fails_with_a_clear_message(server, tmp_path):
    inventory = server.inventory(tmp_path)
    server.stop()
    result = run_playbook(PLAYBOOK, inventory, extravars={"flush_cache_db": 1})
    assert result.rc != 0
    assert f"cannot connect to Redis at 127.0.0.1:{server.port}/1: " in result.stdout
    assert "Traceback" not in result.stdout and server.password not in result.stdout
