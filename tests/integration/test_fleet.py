# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The podman fleet is real: systemd hosts over ssh, real services, a bucket, idempotent up, clean down.

Brought up once per session by the `fleet` fixture (tests/conftest.py); a fleet that is
already up is reused. The last test takes it down and brings it back, so later tests
still find the same fleet (same ports and secrets).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".fleet"
FLEET = [sys.executable, str(ROOT / "sandbox" / "fleet.py")]
pytestmark = [pytest.mark.fleet, pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root podman")]

EXPECTED_UNITS = {
    "db1": ["postgresql@15-main.service"],
    "cache1": ["redis-server.service"],
    "web1": ["nginx.service"],
    "app1": ["demo-app.service", "demo-worker@1.service"],
    "db2": ["postgresql@15-main.service"],
}
# Inventory groups: db2 (cross-host restore drills) is in drill only, so plays on postgres still run on db1 alone.
EXPECTED_GROUPS = {"postgres": ["db1"], "redis": ["cache1"], "web": ["web1"], "app": ["app1"], "workers": ["app1"],
                   "drill": ["db2"]}
DEMO_APP = (ROOT / "sandbox" / "demo_app" / "__init__.py").is_file()


def _state() -> dict:
    return json.loads((STATE / "state.json").read_text())


def _ssh(host: str, *command: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    port = _state()["hosts"][host]["ssh_port"]
    argv = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-i", str(STATE / "ssh" / "id_ed25519"), "-p", str(port), "root@127.0.0.1",
            " ".join(shlex.quote(arg) for arg in command)]  # ssh hands the remote shell one string
    return subprocess.run(argv, text=True, capture_output=True, check=check, timeout=60, input=stdin)


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEET, *args], text=True, capture_output=True, check=False, timeout=900)


def _ours(kind: str) -> list[str]:
    """Names of our podman containers or networks (label set by fleet.py)."""
    env = {**os.environ, "CONTAINERS_CONF": str(STATE / "containers.conf")}
    project = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]  # as sandbox/fleet.py labels them
    argv = {"container": ["podman", "ps", "-a", "--format", "{{.Names}}"],
            "network": ["podman", "network", "ls", "--format", "{{.Name}}"]}[kind]
    out = subprocess.run([*argv, "--filter", f"label=io.runbook.fleet={project}"], env=env, text=True,
                         capture_output=True, check=True).stdout
    return out.split()


def test_ansible_ping_reaches_every_host(fleet):
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_DEPRECATION_WARNINGS": "False"}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible"), "all", "-i", str(fleet.inventory),
                           "-m", "ansible.builtin.ping"], cwd=ROOT, env=env, text=True, capture_output=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in EXPECTED_UNITS:
        assert re.search(rf"^{host} \| SUCCESS", proc.stdout, re.M), proc.stdout


@pytest.mark.parametrize("host", list(EXPECTED_UNITS))
def test_systemd_runs_the_role_units(fleet, host):
    assert _ssh(host, "hostname").stdout.strip() == host
    system = _ssh(host, "systemctl", "is-system-running", check=False).stdout.strip()
    failed = _ssh(host, "systemctl", "--failed", "--no-legend", "--plain").stdout
    assert system in ("running", "degraded"), failed
    units = ["ssh.service", *EXPECTED_UNITS[host]]
    if host == "app1" and not DEMO_APP:
        units = ["ssh.service"]
    proc = _ssh(host, "systemctl", "is-active", *units, check=False)
    assert proc.stdout.split() == ["active"] * len(units), proc.stdout


def _inventory(fleet) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", str(fleet.inventory), "--list"],
                          env=env, text=True, capture_output=True, check=True, timeout=120)
    return json.loads(proc.stdout)


def test_inventory_groups_and_the_postgres_variables(fleet):
    inventory = _inventory(fleet)
    assert {g: sorted(inventory[g]["hosts"]) for g in EXPECTED_GROUPS} == EXPECTED_GROUPS
    assert sorted(inventory["_meta"]["hostvars"]) == sorted(EXPECTED_UNITS)
    db1, db2 = inventory["_meta"]["hostvars"]["db1"], inventory["_meta"]["hostvars"]["db2"]
    pg_vars = sorted(k for k in db1 if k.startswith(("runbook_pg_", "runbook_backup_")))
    assert {"runbook_pg_bindir", "runbook_backup_dir", "runbook_pg_password"} <= set(pg_vars)
    assert {k: db2.get(k) for k in pg_vars} == {k: db1[k] for k in pg_vars}
    s3 = {k: v for k, v in db1.items() if k.startswith("runbook_s3_")}
    assert sorted(s3) == ["runbook_s3_access_key", "runbook_s3_bucket", "runbook_s3_endpoint_url",
                          "runbook_s3_region", "runbook_s3_secret_key"]
    assert all(s3.values())
    # secrets stay in the 0600 files
    for path in [fleet.inventory / "hosts.yml", *sorted((fleet.inventory / "group_vars").iterdir()), STATE / "env"]:
        assert path.stat().st_mode & 0o077 == 0, path


def _pg_facts(host: str) -> list[str]:
    return _ssh(host, "runuser", "-u", "postgres", "--", "psql", "-XAtc",
                "select system_identifier from pg_control_system()", "-c",
                "select pg_get_userbyid(datdba) from pg_database where datname = 'app'", "-c",
                "select rolsuper from pg_roles where rolname = 'runbook_admin'").stdout.split()


def test_db2_is_a_server_of_its_own_provisioned_like_db1(fleet):
    (id1, owner1, super1), (id2, owner2, super2) = _pg_facts("db1"), _pg_facts("db2")
    # each host made its own cluster: a backup of db1 is another server's on db2 (the restore tells them apart)
    assert id1 != id2
    assert (owner1, super1) == (owner2, super2) == ("app", "t")
    for host in ("db1", "db2"):
        assert _ssh(host, "stat", "-c", "%F %a %U", "/var/backups/postgresql").stdout == "directory 700 root\n"


def _s3_listeners(port: int) -> list[str]:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], text=True, capture_output=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()]


def _exited(pid: int) -> bool:
    """No such process, or a zombie that init has yet to reap."""
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_bucket_is_on_the_fleet_bridge_only_and_reachable_from_the_hosts(fleet):
    url = fleet.env["S3_ENDPOINT_URL"]
    address, port = url.removeprefix("http://").rsplit(":", 1)
    assert address == _state()["s3"]["address"] and not address.startswith("127.")
    assert _s3_listeners(int(port)) == [f"{address}:{port}"]  # not 0.0.0.0, not loopback
    # from the hosts, with the image's boto3 (the amazon.aws modules run there), signed like any client
    script = ("import boto3, sys; c = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',"
              " aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.stdin.read().strip());"
              " print(sorted(b['Name'] for b in c.list_buckets()['Buckets']))")
    for host in ("db1", "db2"):
        proc = _ssh(host, "python3", "-c", script, url, fleet.env["AWS_ACCESS_KEY_ID"],
                    stdin=fleet.env["AWS_SECRET_ACCESS_KEY"] + "\n")
        assert fleet.env["S3_BUCKET"] in proc.stdout, proc.stdout + proc.stderr


def test_logins_need_passwords(fleet):
    # Over TCP the database wants a password (scram), with it the admin login works.
    no_pw = _ssh("db1", "psql", "-h", "127.0.0.1", "-U", "app", "-w", "-d", "app", "-c", "select 1", check=False)
    assert no_pw.returncode != 0 and "password" in no_pw.stderr
    # the password goes over stdin, never into an argv
    admin = _ssh("db1", "sh", "-c", "read -r PGPASSWORD; export PGPASSWORD; exec psql -h 127.0.0.1 -U runbook_admin"
                 " -d app -Atc 'select rolsuper from pg_roles where rolname = current_user'",
                 stdin=fleet.env["RUNBOOK_PG_ADMIN_PASSWORD"] + "\n")
    assert admin.stdout.strip() == "t"
    owner = _ssh("db1", "runuser", "-u", "postgres", "--", "psql", "-Atc",
                 "select pg_get_userbyid(datdba) from pg_database where datname = 'app'")
    assert owner.stdout.strip() == "app"
    # app1 reaches redis on cache1 only with the password; AOF is on.
    noauth = _ssh("app1", "redis-cli", "-h", "cache1", "ping", check=False)
    assert "NOAUTH" in noauth.stdout + noauth.stderr
    aof = _ssh("app1", "env", f"REDISCLI_AUTH={fleet.env['REDISCLI_AUTH']}", "redis-cli", "-h", "cache1",
               "config", "get", "appendonly")
    assert aof.stdout.split() == ["appendonly", "yes"]


@pytest.mark.skipif(not DEMO_APP, reason="sandbox/demo_app is not there yet")
def test_app_health_on_app1(fleet):
    proc = _ssh("app1", "curl", "-sS", "-o", "/dev/stderr", "-w", "%{http_code}",
                "http://127.0.0.1:8080/api/health", check=False)
    assert proc.stdout == "200", proc.stderr
    assert json.loads(proc.stderr)["status"] == "ok"


def test_web_tls_verifies_against_the_fleet_ca(fleet):
    url = fleet.env["APP_PUBLIC_URL"] + "/api/health"
    ctx = ssl.create_default_context(cafile=fleet.env["APP_CA_CERT"])
    try:
        with urllib.request.urlopen(url, timeout=10, context=ctx) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:  # TLS verified; the app behind may be missing
        status = err.code
    assert status == 200 or not DEMO_APP
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, timeout=10, context=ssl.create_default_context())
    # And on web1 itself, with the CA path the inventory gives.
    _ssh("web1", "curl", "-sS", "-o", "/dev/null", "--cacert",
         "/usr/local/share/ca-certificates/runbook-fleet-ca.crt", "https://127.0.0.1:443/")


def test_second_up_is_a_noop(fleet):
    before = (_state(), _ours("container"))
    started = time.monotonic()
    proc = _fleet("up")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert not re.search(r"started|provisioned|recreating|restarted|wrote|created", proc.stdout), proc.stdout
    assert (_state(), _ours("container")) == before
    assert elapsed < 20, f"second up took {elapsed:.1f}s"


def test_down_removes_everything_and_up_restores(fleet):
    ports = {name: h["ssh_port"] for name, h in _state()["hosts"].items()}
    s3_port = _state()["s3"]["port"]
    moto_pid = int((STATE / "s3" / "moto.pid").read_text())
    proc = _fleet("down")
    assert proc.returncode == 0, proc.stderr
    assert "s3: stopped moto_server" in proc.stdout, proc.stdout
    assert _ours("container") == [] and _ours("network") == []
    assert not (fleet.inventory / "hosts.yml").exists()
    assert _s3_listeners(s3_port) == [] and _exited(moto_pid)
    assert _fleet("status").returncode != 0
    # Bring it back for whatever runs next: same ports (they were just freed), secrets and bucket.
    proc = _fleet("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {name: h["ssh_port"] for name, h in _state()["hosts"].items()} == ports
    assert _state()["s3"]["port"] == s3_port and "s3: created bucket runbook-backups" in proc.stdout
