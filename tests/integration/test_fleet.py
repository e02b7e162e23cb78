# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The podman fleet is real: systemd hosts over ssh, real services, idempotent up, clean down.

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
}
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
    assert not re.search(r"started|provisioned|recreating|restarted|wrote", proc.stdout), proc.stdout
    assert (_state(), _ours("container")) == before
    assert elapsed < 20, f"second up took {elapsed:.1f}s"


def test_down_removes_everything_and_up_restores(fleet):
    ports = {name: h["ssh_port"] for name, h in _state()["hosts"].items()}
    proc = _fleet("down")
    assert proc.returncode == 0, proc.stderr
    assert _ours("container") == [] and _ours("network") == []
    assert not (fleet.inventory / "hosts.yml").exists()
    assert _fleet("status").returncode != 0
    # Bring it back for whatever runs next: same ports (they were just freed) and secrets.
    proc = _fleet("up")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {name: h["ssh_port"] for name, h in _state()["hosts"].items()} == ports
