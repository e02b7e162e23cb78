# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Paths, state, ports and process helpers shared by the sandbox components."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = ROOT / ".sandbox"
VENV_BIN = ROOT / ".venv" / "bin"
PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Preferred ports; a port taken by something else is replaced by a free one.
DEFAULT_PORTS = {"postgres": 15432, "redis": 16379, "app": 18080, "https": 18443, "s3": 19000}


class SandboxError(RuntimeError):
    """One clear message for the operator; the CLI prints it and exits 1."""


def log(msg: str) -> None:
    print(f"sandbox: {msg}", flush=True)


def run(argv: list[str], *, user: str | None = None, env: dict[str, str] | None = None,
        check: bool = True, capture: bool = True, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv (never a shell string); as another OS user through runuser."""
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    # from /, so that another user never starts in a directory it cannot enter
    proc = subprocess.run(argv, env=env, text=True, capture_output=capture, input=input_text, check=False,
                          cwd="/" if user else None)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise SandboxError(f"{' '.join(argv[:4])} failed (exit {proc.returncode}): {' | '.join(detail)}")
    return proc


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, ready, timeout: float = 30.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(interval)
    raise SandboxError(f"{what} did not become ready within {timeout:.0f}s")


def pid_alive(pidfile: Path) -> int | None:
    """The pid in pidfile if that process is alive, else None."""
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def write_private(path: Path, text: str) -> bool:
    """Write a 0600 file only when its content changes; True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return True


@dataclass
class State:
    """Ports and secrets chosen once and kept, so that `up` is repeatable."""

    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return STATE_DIR / "state.json"

    @classmethod
    def load(cls) -> State:
        path = STATE_DIR / "state.json"
        if path.exists():
            data = json.loads(path.read_text())
            return cls(ports=data.get("ports", {}), secrets=data.get("secrets", {}))
        return cls()

    def save(self) -> None:
        write_private(self.path, json.dumps({"ports": self.ports, "secrets": self.secrets}, indent=2) + "\n")

    def port(self, name: str, running: bool) -> int:
        """Keep a known port; for a new one prefer the default unless it is taken.

        `running` says our own service already listens there, so a busy port is fine.
        """
        if name in self.ports and (running or not port_open(self.ports[name])):
            return self.ports[name]
        preferred = DEFAULT_PORTS[name]
        self.ports[name] = preferred if not port_open(preferred) else free_port()
        return self.ports[name]

    def secret(self, name: str) -> str:
        if name not in self.secrets:
            self.secrets[name] = secrets.token_urlsafe(24)
        return self.secrets[name]


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("run as root (or through sudo): the sandbox runs PostgreSQL as the postgres user")


def venv_tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        raise SandboxError(f"{path} is missing: run `make setup` first")
    return str(path)


def which_or_fail(name: str, package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        raise SandboxError(f"{name} not found: apt-get install {package} (make setup does it)")
    return found


def python() -> str:
    return venv_tool("python") if (VENV_BIN / "python").exists() else sys.executable
