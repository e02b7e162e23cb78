# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet's cache1 Redis from the controller, for tests that make real jobs there with the libraries' own
clients: the fleet publishes only its ssh ports on loopback, so through an ssh tunnel."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def cache1_redis(fleet: Any) -> Iterator[dict[str, str]]:
    """cache1's Redis on a local port, through ssh (the fleet publishes only its ssh ports on loopback): the
    harness's env for the real libraries' fixtures."""
    port, key = fleet.env.get("FLEET_SSH_PORT_CACHE1"), fleet.env.get("FLEET_SSH_KEY")
    if not port or not key:
        pytest.skip("the fleet has no cache1 (.fleet/env)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
    ssh = subprocess.Popen(["ssh", "-N", "-L", f"127.0.0.1:{local}:127.0.0.1:6379", "-i", key, "-p", port,
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o",
                            "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes",
                            "root@127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {"REDIS_PORT": str(local), "REDISCLI_AUTH": fleet.env["REDISCLI_AUTH"]}
        end = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=1):
                break
            assert ssh.poll() is None and time.monotonic() < end, "the ssh tunnel to cache1 did not come up"
            time.sleep(0.2)
        yield env
    finally:
        ssh.terminate()
        ssh.wait(timeout=30)
