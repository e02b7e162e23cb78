# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A throwaway redis-server of the tests' own, for what the shared sandbox Redis must never go through.

An evicting maxmemory-policy, a stopped server, FLUSHDB and BGSAVE would disturb the demo app and the other
tests that use the sandbox's Redis, so the tests that need them start this one: redis-server daemonized in a
temporary directory under /tmp, on 127.0.0.1 and a free port, with a password, no persistence unless asked.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Throwaway:
    """A running throwaway Redis; the default user with self.password."""

    base: Path
    port: int
    password: str
    running: bool = True

    @property
    def pidfile(self) -> Path:
        return self.base / "redis.pid"

    def client(self, db: int = 0) -> Any:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, db=db, decode_responses=True)

    def inventory(self, directory: Path, host: str = "throwaway-redis", **hostvars: Any) -> Path:
        """An inventory with one host in group redis whose runbook_redis_* point at this server."""
        path = directory / "hosts.yml"
        path.write_text(yaml.safe_dump({"all": {"children": {"redis": {"hosts": {host: {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python"),
            "runbook_redis_host": "127.0.0.1",
            "runbook_redis_port": self.port,
            "runbook_redis_password": self.password,
            "runbook_redis_db": 0,
            **hostvars,
        }}}}}}))
        return path

    def stop(self) -> None:
        """SIGKILL: no final save, like a crash; our own pid from our own pidfile, nothing else."""
        if not self.running:
            return
        pid = int(self.pidfile.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.running = False

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def start(*config: str) -> Throwaway:
    """redis-server with extra config lines such as 'maxmemory-policy allkeys-lru' or 'save 3600 1'."""
    base = Path(tempfile.mkdtemp(prefix="runbook-redistest-", dir="/tmp"))
    port, password = _free_port(), secrets.token_urlsafe(16)
    lines = [f"port {port}", "bind 127.0.0.1", f"requirepass {password}", f"dir {base}", 'save ""',
             "appendonly no", "daemonize yes", f"pidfile {base / 'redis.pid'}", f"logfile {base / 'redis.log'}",
             *config, ""]
    conf = base / "redis.conf"
    conf.write_text("\n".join(lines))
    conf.chmod(0o600)
    subprocess.run(["redis-server", str(conf)], check=True, capture_output=True, text=True)
    server = Throwaway(base=base, port=port, password=password)
    deadline = time.monotonic() + 15
    while True:
        try:
            server.client().ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                server.running = server.pidfile.exists()
                server.destroy()
                raise
            time.sleep(0.05)
