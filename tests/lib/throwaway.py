# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the tests' throwaway servers (tests/integration/redis_throwaway.py, pg_throwaway.py) share.

Each runs in a temporary directory of its own on 127.0.0.1 and a free port, is removed with that directory,
and is reached by playbooks through an inventory of one local host whose variables point at it.
"""
from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_inventory(directory: Path, group: str, host: str, hostvars: dict[str, Any]) -> Path:
    """directory/hosts.yml: host in group, run locally with this checkout's venv, with hostvars."""
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": {host: {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python"),
        **hostvars,
    }}}}}}))
    return path


@dataclass(kw_only=True)
class Server:
    """A running throwaway server in base; a context manager that destroys it on the way out."""

    base: Path
    port: int
    running: bool = field(default=True)

    def stop(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.destroy()
