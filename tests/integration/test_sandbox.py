# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The embedded sandbox is real: services answer, state is truthful, `up` is idempotent."""
from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.sandbox


def _get(url: str, cafile: str | None = None) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _ctl(sandbox, *args: str) -> str:
    return subprocess.run([str(ROOT / ".venv/bin/supervisorctl"), "-c", sandbox.env["SUPERVISOR_CONFIG"], *args],
                          text=True, capture_output=True, check=False).stdout


def _pids() -> dict[str, str]:
    files = {"postgres": ".sandbox/pg/data/postmaster.pid", "redis": ".sandbox/redis/redis.pid",
             "supervisord": ".sandbox/supervisor/supervisord.pid", "nginx": ".sandbox/nginx/nginx.pid"}
    return {name: (ROOT / f).read_text().split()[0] for name, f in files.items()}


def test_second_up_changes_nothing(sandbox):
    before = _pids()
    proc = subprocess.run([sys.executable, str(ROOT / "sandbox/sandbox.py"), "up"], text=True,
                          capture_output=True, check=True)
    assert _pids() == before
    assert "starting" not in proc.stdout


def test_health_through_nginx_tls_verifies_with_local_ca(sandbox):
    code, body = _get(sandbox.env["APP_PUBLIC_URL"] + "/api/health", cafile=sandbox.env["APP_CA_CERT"])
    assert code == 200
    assert body["status"] == "ok" and body["database"] == "ok" and body["redis"] == "ok"
    with pytest.raises(urllib.error.URLError):
        _get(sandbox.env["APP_PUBLIC_URL"] + "/api/health", cafile=None)  # system CAs don't know it


def test_logins_work_with_env_and_need_passwords(sandbox):
    env = sandbox.env
    with psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], dbname=env["PGDATABASE"],
                         user=env["RUNBOOK_PG_ADMIN_USER"], password=env["RUNBOOK_PG_ADMIN_PASSWORD"]) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("15")
        assert conn.execute("SELECT count(*) FROM tenders").fetchone()[0] > 0
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host=env["PGHOST"], port=env["PGPORT"], dbname="app", user="app", password="wrong")
    assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=int(env["REDIS_PORT"]), password="wrong").ping()
    info = redis.Redis.from_url(env["REDIS_URL"]).info("persistence")
    assert info["aof_enabled"] == 1


def test_secret_files_are_private(sandbox):
    for path in (ROOT / ".sandbox/env", sandbox.inventory / "hosts.yml", ROOT / ".sandbox/state.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_inventory_has_every_group_with_local_connection(sandbox):
    inv = yaml.safe_load((sandbox.inventory / "hosts.yml").read_text())["all"]
    assert inv["vars"]["ansible_connection"] == "local"
    assert set(inv["children"]) == {"postgres", "redis", "web", "app", "workers"}
    pg = inv["children"]["postgres"]["hosts"]["sandbox-db"]
    assert pg["runbook_pg_port"] == int(sandbox.env["PGPORT"])


def test_s3_bucket_exists(sandbox):
    import boto3

    s3 = boto3.client("s3", endpoint_url=sandbox.env["S3_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="sandbox", aws_secret_access_key=sandbox.env["AWS_SECRET_ACCESS_KEY"])
    s3.put_object(Bucket=sandbox.env["S3_BUCKET"], Key="probe.txt", Body=b"x")
    assert s3.get_object(Bucket=sandbox.env["S3_BUCKET"], Key="probe.txt")["Body"].read() == b"x"
    s3.delete_object(Bucket=sandbox.env["S3_BUCKET"], Key="probe.txt")


def test_app_restart_is_real_and_health_follows(sandbox):
    before = _ctl(sandbox, "pid", "demo-app").strip()
    _ctl(sandbox, "stop", "demo-app")
    with pytest.raises(urllib.error.URLError):
        _get(sandbox.env["APP_URL"] + "/api/health")
    _ctl(sandbox, "start", "demo-app")
    after = _ctl(sandbox, "pid", "demo-app").strip()
    assert after != before
    assert _get(sandbox.env["APP_URL"] + "/api/health")[0] == 200


def test_ingest_is_processed_by_the_worker(sandbox):
    url = sandbox.env["APP_URL"]
    assert _post(url + "/api/admin/trigger-ingest", token="wrong") == 401
    before = _get(url + "/api/health")[1]["last_ingest_time"]
    assert _post(url + "/api/admin/trigger-ingest", token=sandbox.env["ADMIN_TOKEN"]) == 202
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _get(url + "/api/health")[1]["last_ingest_time"] == before:
        time.sleep(0.3)
    assert _get(url + "/api/health")[1]["last_ingest_time"] != before


def _post(url: str, token: str) -> int:
    req = urllib.request.Request(url, method="POST", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
