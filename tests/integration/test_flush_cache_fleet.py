# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""flush_cache.yml on the fleet's cache1 (Redis under systemd in a podman host), with real RQ jobs.

Through an ssh tunnel to cache1's Redis, RQ's own client makes jobs in every state under RQ's default prefix
(rq:) in db 12, and db 13 gets cache keys. Flushing db 12 is refused in --check and in the real run, with
every key kept; db 13 is flushed by the four runs (check, real, check, real: the last two change nothing).
Both databases must be empty before the test (it never flushes what it did not make) and are emptied after.
"""
from __future__ import annotations

import pytest
import redis

from tests.lib.fleet_redis import cache1_redis
from tests.lib.runner import run_playbook
from tests.queues.harness import python

pytestmark = pytest.mark.fleet

PLAYBOOK = "flush_cache.yml"
HOST = "cache1"
QUEUE_DB, CACHE_DB = 12, 13


def _lines(result, task: str) -> list[str]:
    return [r["msg"] for r in result.host_results(HOST, task)]


def test_cache1_refuses_the_rq_database_and_flushes_the_cache(fleet) -> None:
    with cache1_redis(fleet) as env:
        login = {"host": "127.0.0.1", "port": int(env["REDIS_PORT"]), "password": env["REDISCLI_AUTH"]}
        queues, cache = redis.Redis(db=QUEUE_DB, **login), redis.Redis(db=CACHE_DB, **login)
        try:
            assert queues.dbsize() == 0 and cache.dbsize() == 0, "cache1's db 12 or 13 holds keys not ours"
            url = f"redis://:{env['REDISCLI_AUTH']}@127.0.0.1:{env['REDIS_PORT']}/{QUEUE_DB}"
            python(env, "rq_fixture.py", "populate", "emails", QUEUE_REDIS_URL=url)
            jobs = sorted(queues.keys("rq:*"))
            assert any(k.startswith(b"rq:job:") for k in jobs) and b"rq:queues" in jobs, jobs
            cache.mset({f"page:{i}": "<html>" for i in range(40)})

            outputs = []
            for check in (True, False):
                refused = run_playbook(PLAYBOOK, fleet.inventory, check=check, limit=HOST,
                                       extravars={"flush_cache_db": QUEUE_DB})
                outputs.append(refused.stdout)
                assert refused.rc != 0 and refused.failed_hosts() == {HOST}, refused.stdout[-3000:]
                assert f"refusing to flush database {QUEUE_DB}" in refused.stdout
                assert "it holds job-queue keys" in refused.stdout and "(first found 'rq:" in refused.stdout
                assert sorted(queues.keys("rq:*")) == jobs

            check = run_playbook(PLAYBOOK, fleet.inventory, check=True, limit=HOST,
                                 extravars={"flush_cache_db": CACHE_DB})
            assert check.rc == 0 and check.changed(HOST) > 0, check.stdout[-3000:]
            assert cache.dbsize() == 40
            real = run_playbook(PLAYBOOK, fleet.inventory, limit=HOST, extravars={"flush_cache_db": CACHE_DB})
            assert real.rc == 0, real.stdout[-3000:]
            assert _lines(real, "Report | the cache flush") == [
                f"{HOST}: flushed database {CACHE_DB}: 40 keys deleted"]
            assert cache.dbsize() == 0 and sorted(queues.keys("rq:*")) == jobs
            for again in (run_playbook(PLAYBOOK, fleet.inventory, check=True, limit=HOST,
                                       extravars={"flush_cache_db": CACHE_DB}),
                          run_playbook(PLAYBOOK, fleet.inventory, limit=HOST, extravars={"flush_cache_db": CACHE_DB})):
                assert again.rc == 0 and again.changed(HOST) == 0, again.stdout[-3000:]
                outputs.append(again.stdout)
            outputs += [check.stdout, real.stdout]
            assert not any(env["REDISCLI_AUTH"] in out for out in outputs), "the Redis password is in the output"
        finally:
            queues.flushdb()
            cache.flushdb()
            queues.close()
            cache.close()
