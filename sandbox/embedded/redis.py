# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Redis 7 with a password and persistence (RDB + AOF), daemonized under .sandbox/redis."""
from __future__ import annotations

import os
import signal
import time

from .common import STATE_DIR, State, log, pid_alive, port_open, run, wait_for, which_or_fail, write_private

BASE = STATE_DIR / "redis"
PIDFILE = BASE / "redis.pid"


def running() -> bool:
    return pid_alive(PIDFILE) is not None


def up(state: State) -> None:
    port = state.port("redis", running())
    (BASE / "data").mkdir(parents=True, exist_ok=True)
    conf = "\n".join([
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"requirepass {state.secret('redis_password')}",
        f"dir {BASE / 'data'}",
        "appendonly yes",
        "save 900 1 300 10 60 10000",
        # queues live here: an evicting policy would drop jobs silently
        "maxmemory-policy noeviction",
        "daemonize yes",
        f"pidfile {PIDFILE}",
        f"logfile {BASE / 'redis.log'}",
        "",
    ])
    changed = write_private(BASE / "redis.conf", conf)
    if changed and running():
        down()
    if not running():
        log(f"redis: starting on 127.0.0.1:{port}")
        run([which_or_fail("redis-server", "redis-server"), str(BASE / "redis.conf")])
    wait_for("redis", lambda: port_open(port))


def down() -> None:
    pid = pid_alive(PIDFILE)
    if pid is None:
        return
    log("redis: stopping")
    # SIGTERM makes redis save and exit cleanly; no password needed on argv
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and pid_alive(PIDFILE) == pid:
        time.sleep(0.1)
