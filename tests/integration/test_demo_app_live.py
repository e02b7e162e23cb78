# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The demo app against a throwaway PostgreSQL 15 and redis-server on 127.0.0.1.

Everything is started here and torn down by fixture finalizers. Set
DEMO_TEST_PYTHON=/usr/bin/python3 to run the app itself under Debian's
interpreter and python3-psycopg/python3-redis instead of the venv.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
APP_PYTHON = os.environ.get("DEMO_TEST_PYTHON", sys.executable)
TOKEN = "s3cret-admin-token-for-tests"
QUEUE = "demo:queue:ingest"  # key prefix for DEMO_QUEUE=ingest
REDIS_PASSWORD = "redis-test-pw"
PG_PASSWORD = "demo-test-pw"


def _prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "needs root (runs PostgreSQL as the postgres user via runuser)"
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 not installed in {PG_BIN}"
    if not shutil.which("redis-server"):
        return "redis-server not installed"
    return None


if (_reason := _prerequisites()) is not None:
    pytest.skip(_reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except Exception:  # the service is still starting
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# -- services --------------------------------------------------------------------


@dataclass
class Postgres:
    port: int
    data: Path
    sockets: Path

    def as_postgres(self, *cmd: str) -> None:
        done = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=False,
                              capture_output=True, text=True, cwd="/", timeout=60)
        assert done.returncode == 0, f"{cmd[0]} failed:\n{done.stdout}\n{done.stderr}"

    def ctl(self, *args: str) -> None:
        self.as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args)

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c full_page_writes=off")
        self.ctl("-o", opts, "-l", str(self.sockets / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.ctl("-m", "immediate", "-w", "stop")

    def psql(self, sql: str) -> None:
        self.as_postgres(str(PG_BIN / "psql"), "-h", str(self.sockets), "-p", str(self.port),
                         "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql)

    @property
    def dsn(self) -> str:
        return f"postgresql://demo:{PG_PASSWORD}@127.0.0.1:{self.port}/demo"


@dataclass
class Redis:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--daemonize", "no", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--requirepass", REDIS_PASSWORD],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self.client().ping(), 10, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True, socket_connect_timeout=1)

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    # Not tmp_path: pytest's base dir is 0700 root, so postgres couldn't enter it.
    path = Path(tempfile.mkdtemp(prefix="demo-app-live-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(workdir: Path) -> Iterator[Postgres]:
    # Everything PostgreSQL writes (data, socket, log) lives in one dir it owns.
    home = workdir / "pg"
    home.mkdir()
    shutil.chown(home, "postgres", "postgres")
    pg = Postgres(port=free_port(), data=home / "data", sockets=home)
    pwfile = home / "pwfile"
    pwfile.write_text("unused-superuser-pw\n")
    shutil.chown(pwfile, "postgres", "postgres")
    pg.as_postgres(str(PG_BIN / "initdb"), "-D", str(pg.data), "-U", "postgres", "-E", "UTF8",
                   "--auth-local=trust", "--auth-host=scram-sha-256",
                   f"--pwfile={pwfile}", "--no-sync")
    pg.start()
    try:
        pg.psql(f"CREATE ROLE demo LOGIN PASSWORD '{PG_PASSWORD}'")
        pg.psql("CREATE DATABASE demo OWNER demo")
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def redis_server(workdir: Path) -> Iterator[Redis]:
    server = Redis(port=free_port(), workdir=workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class App:
    env: dict[str, str]
    port: int
    server_log: Path
    worker_log: Path
    server: subprocess.Popen[bytes] = field(init=False)
    worker: subprocess.Popen[bytes] = field(init=False)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)  # for teardown

    def http(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            code, raw = err.code, err.read()
        text = raw.decode()
        return code, (json.loads(text) if text.lstrip().startswith(("{", "[")) else text)

    def health(self) -> tuple[int, dict[str, Any]]:
        return self.http("GET", "/api/health")

    def start(self, module: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen([APP_PYTHON, "-m", module], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc


def app_env(pg: Postgres, rd: Redis, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")}
    env.update(
        PYTHONPATH=str(ROOT / "sandbox"),
        PYTHONUNBUFFERED="1",
        DEMO_PG_DSN=pg.dsn,
        DEMO_REDIS_URL=rd.url,
        DEMO_HTTP_HOST="127.0.0.1",
        DEMO_HTTP_PORT=str(port),
        DEMO_ADMIN_TOKEN=TOKEN,
        DEMO_QUEUE="ingest",
        DEMO_INGEST_STALE_HOURS="6",
        DEMO_VERSION="9.9.9-test",
    )
    return env


def run_module(env: dict[str, str], module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([APP_PYTHON, "-m", module], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture(scope="module")
def app(postgres: Postgres, redis_server: Redis, workdir: Path) -> Iterator[App]:
    port = free_port()
    env = app_env(postgres, redis_server, port)
    for attempt in (1, 2):  # the second run proves idempotency
        done = run_module(env, "demo_app.migrate")
        assert done.returncode == 0, f"migrate run {attempt} failed:\n{done.stderr}"
    running = App(env, port, workdir / "server.log", workdir / "worker.log")
    try:
        running.server = running.start("demo_app.server", running.server_log)
        running.worker = running.start("demo_app.worker", running.worker_log)
        wait_for(lambda: running.health()[0] == 200, 15, "server health 200")
        yield running
    finally:
        for proc in running.started:
            stop_process(proc)


def db_rows(pg: Postgres, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn, connect_timeout=2) as conn:
        return conn.execute(query).fetchall()


# -- tests -----------------------------------------------------------------------


def test_migrate_is_idempotent_and_seeds(app: App, postgres: Postgres) -> None:
    counts = db_rows(postgres, "SELECT (SELECT count(*) FROM tenders), (SELECT count(*) FROM events),"
                               " (SELECT count(*) FROM alembic_version)")[0]
    assert counts[0] >= 300 and counts[1] > 0 and counts[2] == 1
    flags = {r[0] for r in db_rows(postgres, "SELECT name FROM feature_flags")}
    assert {"new_search", "email_alerts"} <= flags
    again = run_module(app.env, "demo_app.migrate")
    assert again.returncode == 0 and "nothing seeded" in again.stderr


def test_health_is_ok(app: App) -> None:
    code, body = app.health()
    assert code == 200
    assert body["status"] == "ok" and body["database"] == "ok" and body["redis"] == "ok"
    assert body["version"] == "9.9.9-test" and body["last_ingest_time"]
    assert body["ingest_age_seconds"] < 3600 and body["queue_waiting"] == 0


def test_trigger_ingest_requires_token(app: App) -> None:
    assert app.http("POST", "/api/admin/trigger-ingest")[0] == 401
    assert app.http("POST", "/api/admin/trigger-ingest", token="wrong")[0] == 401


def test_ingest_job_advances_last_ingest(app: App, postgres: Postgres) -> None:
    before = app.health()[1]["last_ingest_time"]
    tenders_before = db_rows(postgres, "SELECT count(*) FROM tenders")[0][0]
    time.sleep(1.1)  # ISO timestamps have second precision in comparisons below
    code, body = app.http("POST", "/api/v1/admin/trigger-ingest", token=TOKEN)
    assert code == 202 and body["job_id"]
    after = wait_for(lambda: (t := app.health()[1]["last_ingest_time"]) != before and t,
                     10, "last_ingest_time to advance")
    assert after > before
    assert db_rows(postgres, "SELECT count(*) FROM tenders")[0][0] == tenders_before + 5
    runs = db_rows(postgres, f"SELECT status FROM ingest_runs WHERE job_id = '{body['job_id']}'")
    assert runs == [("success",)]


def failed_entry(client: redis.Redis, job_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        entries = (json.loads(raw) for raw in client.lrange(f"{QUEUE}:failed", 0, -1))
        return next((e for e in entries if e.get("id") == job_id), None)
    entry: dict[str, Any] = wait_for(find, 10, f"job {job_id} in the failed list")
    return entry


def test_fail_job_lands_in_failed_list(app: App, redis_server: Redis) -> None:
    code, body = app.http("POST", "/api/admin/trigger-ingest", token=TOKEN, body={"type": "fail"})
    assert code == 202
    client = redis_server.client()
    entry = failed_entry(client, body["job_id"])
    assert entry["type"] == "fail" and entry["attempts"] == 1 and "always fails" in entry["error"]
    assert client.llen(f"{QUEUE}:active") == 0
    # A raw LPUSH following the documented layout is consumed too.
    job = {"id": "raw-1", "type": "fail", "enqueued_at": "2025-01-01T00:00:00+00:00", "attempts": 0}
    client.lpush(f"{QUEUE}:waiting", json.dumps(job))
    assert failed_entry(client, "raw-1")["attempts"] == 1


def orphan(job_id: str) -> str:
    return json.dumps({"id": job_id, "type": "fail", "enqueued_at": "2025-01-01T00:00:00+00:00",
                       "attempts": 0})


def test_orphaned_active_jobs_are_requeued_only_without_live_workers(
        app: App, redis_server: Redis) -> None:
    client = redis_server.client()
    heartbeats = f"{QUEUE}:workers:*"
    assert len(list(client.scan_iter(match=heartbeats))) == 1
    app.worker.send_signal(signal.SIGTERM)
    assert app.worker.wait(10) == 0
    assert not list(client.scan_iter(match=heartbeats))  # a clean stop removes its heartbeat

    # As if a worker had been SIGKILLed mid-job: its replacement requeues the job.
    client.lpush(f"{QUEUE}:active", orphan("orphan-1"))
    app.worker = app.start("demo_app.worker", app.worker_log)
    assert failed_entry(client, "orphan-1")["attempts"] == 1

    # With a worker alive, a second one must not touch active: it may be in progress.
    client.lpush(f"{QUEUE}:active", orphan("orphan-2"))
    extra = app.start("demo_app.worker", app.worker_log)
    try:
        wait_for(lambda: len(list(client.scan_iter(match=heartbeats))) == 2, 10, "2nd heartbeat")
        time.sleep(1.5)
        assert client.lrange(f"{QUEUE}:active", 0, -1) == [orphan("orphan-2")]
    finally:
        assert stop_process(extra) == 0
        client.delete(f"{QUEUE}:active")


def test_feature_flags_and_metrics(app: App) -> None:
    code, flags = app.http("GET", "/api/feature-flags")
    assert code == 200
    by_name = {f["name"]: f for f in flags}
    assert by_name["new_search"]["rollout_percentage"] == 25
    assert by_name["bulk_export"]["kill_switch"] is True and by_name["bulk_export"]["active"] is False
    code, text = app.http("GET", "/metrics")
    assert code == 200
    assert "# TYPE demo_http_requests_total counter" in text
    assert 'demo_http_requests_total{code="200",path="/api/health"}' in text
    assert "demo_database_up 1" in text and "demo_redis_up 1" in text
    assert app.http("GET", "/nope")[0] == 404
    assert app.http("GET", "/api/admin/trigger-ingest")[0] == 405


def test_token_never_logged(app: App) -> None:
    app.http("POST", "/api/admin/trigger-ingest", token="wrong-token-value")
    time.sleep(0.2)
    log = app.server_log.read_text()
    assert '"POST /api/admin/trigger-ingest" 401' in log
    assert TOKEN not in log and "wrong-token-value" not in log
    assert TOKEN not in app.worker_log.read_text()


def test_outages_are_reported_and_survived(app: App, redis_server: Redis,
                                           postgres: Postgres) -> None:
    # Redis down: degraded, not hanging, and the worker waits instead of dying.
    redis_server.stop()
    started = time.monotonic()
    code, body = app.health()
    assert time.monotonic() - started < 5
    assert code == 503 and body["status"] == "degraded"
    assert body["redis"].startswith("error: ") and body["database"] == "ok"
    assert body["queue_waiting"] is None
    wait_for(lambda: "redis unavailable" in app.worker_log.read_text(), 10, "worker to log outage")
    assert app.worker.poll() is None

    # Redis back (empty): everything recovers without restarts.
    redis_server.start()
    wait_for(lambda: app.health()[0] == 200, 15, "health back to 200")
    wait_for(lambda: "redis reachable again" in app.worker_log.read_text(), 15, "worker reconnect")

    # PostgreSQL down: "down"; an ingest job is kept for later, not failed.
    postgres.stop()
    code, body = app.health()
    assert code == 503 and body["status"] == "down"
    assert body["database"].startswith("error: ") and body["redis"] == "ok"
    assert app.http("POST", "/api/admin/trigger-ingest", token=TOKEN)[0] == 202
    wait_for(lambda: "postgresql unavailable" in app.worker_log.read_text(), 10,
             "worker to log database outage")
    client = redis_server.client()
    wait_for(lambda: client.llen(f"{QUEUE}:waiting") == 1, 10, "job back in waiting")
    assert client.llen(f"{QUEUE}:failed") == 0
    assert app.worker.poll() is None

    # SIGTERM: both exit cleanly.
    for proc in (app.server, app.worker):
        proc.send_signal(signal.SIGTERM)
    assert app.server.wait(10) == 0
    assert app.worker.wait(10) == 0
    assert "worker stopped" in app.worker_log.read_text()
