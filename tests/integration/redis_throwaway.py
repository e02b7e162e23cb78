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
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.lib.throwaway import Server, free_port, local_inventory


@dataclass(kw_only=True)
class Throwaway(Server):
    """A running throwaway Redis; the default user with self.password."""

    password: str

    @property
    def pidfile(self) -> Path:
        return self.base / "redis.pid"

    def client(self, db: int = 0) -> Any:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, db=db, decode_responses=True)

    def inventory(self, directory: Path, host: str = "throwaway-redis", **hostvars: Any) -> Path:
        """An inventory with one host in group redis whose runbook_redis_* point at this server."""
        return local_inventory(directory, "redis", host, {
            "runbook_redis_host": "127.0.0.1", "runbook_redis_port": self.port,
            "runbook_redis_password": self.password, "runbook_redis_db": 0, **hostvars})

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


def start(*config: str) -> Throwaway:
    """redis-server with extra config lines such as 'maxmemory-policy allkeys-lru' or 'save 3600 1'.

    As a context manager (`with start() as server:`) it is destroyed on the way out, whatever happened.
    """
    base = Path(tempfile.mkdtemp(prefix="runbook-redistest-", dir="/tmp"))
    port, password = free_port(), secrets.token_urlsafe(16)
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
