#!/usr/bin/env python3
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The embedded sandbox: `up`, `down [--purge]`, `status`.

Everything listens on 127.0.0.1 and lives under .sandbox/. It never touches
the machine's own PostgreSQL, Redis or nginx services.
"""
from __future__ import annotations

import argparse
import sys

from embedded import inventory, nginx, postgres, redis, supervisor
from embedded.common import STATE_DIR, SandboxError, State, log, port_open, require_root

COMPONENTS = {"postgres": postgres, "redis": redis, "supervisor": supervisor, "nginx": nginx}


def up() -> None:
    require_root()
    STATE_DIR.mkdir(exist_ok=True)
    STATE_DIR.chmod(0o755)
    state = State.load()
    try:
        for component in COMPONENTS.values():
            component.up(state)
    finally:
        state.save()
    inventory.write(state)
    log("up: inventory inventories/sandbox, environment .sandbox/env")


def down(purge: bool) -> None:
    # reverse order: the app stops before the databases it uses
    for component in reversed(COMPONENTS.values()):
        component.down()
    state = State.load()
    still = sorted(f"{name} :{port}" for name, port in state.ports.items() if port_open(port))
    if still:
        raise SandboxError(f"still listening after down: {', '.join(still)}")
    if purge:
        postgres.purge()
        import shutil
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        inventory.INVENTORY.unlink(missing_ok=True)
    log("down" + (" and purged" if purge else ""))


def status() -> int:
    state = State.load()
    ports = {"postgres": "postgres", "redis": "redis", "supervisor": "app", "nginx": "https"}
    bad = 0
    for name, component in COMPONENTS.items():
        port = state.ports.get(ports[name])
        up_ = component.running() and port is not None and port_open(port)
        bad += not up_
        print(f"{name:<11} {'running' if up_ else 'stopped':<8} 127.0.0.1:{port}")
    if supervisor.running():
        print(supervisor.ctl("status", check=False).rstrip())
        health = supervisor.app_health(state)
        print(f"app health: {health.get('status', 'unreachable')}")
    return 0 if bad == 0 else 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up")
    sub.add_parser("status")
    d = sub.add_parser("down")
    d.add_argument("--purge", action="store_true", help="also delete data, certificates and secrets")
    args = parser.parse_args()
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down(args.purge)
        else:
            return status()
    except SandboxError as err:
        print(f"sandbox: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
