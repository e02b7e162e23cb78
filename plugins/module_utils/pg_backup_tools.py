# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pg_dump and pg_restore as the backup modules run them: where they are, their version, what they can compress
with, the argv (never a shell string, never a password) and how to read their stderr."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# pg_dump and pg_restore prefix their diagnostics with "<tool>: warning:" / "error:" (and older "fatal:").
_PROBLEM_RE = re.compile(r"^\s*pg_\w+:\s+(?:warning|error|fatal):", re.IGNORECASE)

# Compression methods and the levels pg_dump accepts for each (PostgreSQL's common/compression.c).
LEVELS = {"gzip": (1, 9), "lz4": (1, 12), "zstd": (1, 22)}
# lz4 and zstd, and the --compress=method[:level] syntax, came with pg_dump 16.
METHODS_SINCE = 16
_COMPRESSION_HELP = "use none, a gzip level 0-9 (6 or gzip:6), or lz4, zstd with an optional level (zstd:3)"


@dataclass(frozen=True)
class ToolVersion:
    major: int
    minor: int
    text: str  # the tool's own line, e.g. "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"

    @property
    def number(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def release(self) -> str:
        """The version as the server reports its own: "15.18 (Debian 15.18-0+deb12u1)"."""
        return self.text.split("(PostgreSQL)", 1)[-1].strip()


def parse_tool_version(text: str) -> ToolVersion:
    """ToolVersion of `pg_dump --version` output: 15.18, 16beta2 (minor 0), 9.6.24 (major 9, minor 6)."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    match = _VERSION_RE.search(line)
    if not match:
        raise ValueError(f"not a PostgreSQL tool version: {line!r}")
    return ToolVersion(int(match.group(1)), int(match.group(2) or 0), line)


@dataclass(frozen=True)
class Compression:
    method: str  # none, gzip, lz4, zstd
    level: int | None = None  # None: the method's default level

    def __str__(self) -> str:
        return self.method if self.level is None else f"{self.method}:{self.level}"


def parse_compression(value: Any) -> Compression:
    """A Compression from what an operator writes: 6, '6', 'gzip:6', 'gzip', 'none', 'lz4', 'zstd:3', 'zstd:level=3'.

    A bare level is gzip's, as in pg_dump -Z; level 0 is no compression.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"compression {value!r} is not valid: {_COMPRESSION_HELP}")
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+", text):
        level = int(text)
        if level == 0:
            return Compression("none")
        if level > LEVELS["gzip"][1]:
            raise ValueError(f"compression {value!r}: a bare level is gzip's, 0-9")
        return Compression("gzip", level)
    method, sep, detail = text.partition(":")
    if method == "none" and not sep:
        return Compression("none")
    if method not in LEVELS:
        raise ValueError(f"compression {value!r} is not valid: {_COMPRESSION_HELP}")
    if not sep:
        return Compression(method)
    detail = detail[len("level="):] if detail.startswith("level=") else detail
    if not re.fullmatch(r"\d+", detail):
        raise ValueError(f"compression {value!r}: the level must be a number ({_COMPRESSION_HELP})")
    low, high = LEVELS[method]
    if not low <= int(detail) <= high:
        raise ValueError(f"compression {value!r}: {method} levels are {low}-{high}")
    return Compression(method, int(detail))


def compression_args(compression: Compression, pg_dump: ToolVersion) -> list[str]:
    """pg_dump's compression argument for this compression, or ValueError saying what this pg_dump cannot do."""
    if pg_dump.major >= METHODS_SINCE:
        return [f"--compress={compression}"]
    if compression.method == "none":
        return ["--compress=0"]
    if compression.method == "gzip":
        # pg_dump before 16 knows only -Z 0-9; without a level it compresses at zlib's default.
        return [] if compression.level is None else [f"--compress={compression.level}"]
    raise ValueError(f"compression {compression}: pg_dump {pg_dump.number} supports only gzip (levels 1-9) or none; "
                     f"{compression.method} needs pg_dump {METHODS_SINCE} or later")


def conninfo(keywords: dict[str, Any], exclude: tuple[str, ...] = ("password",)) -> str:
    """A libpq connection string from keywords, every value quoted, so no name can smuggle in a keyword.

    pg_dump --dbname=NAME takes NAME as a connection string when it contains '=', so even a plain database
    name goes through here. The password is left out: it travels in PGPASSWORD only.
    """
    parts = []
    for key, value in keywords.items():
        if key in exclude or value is None or value == "":
            continue
        quoted = str(value).replace("\\", "\\\\").replace("'", "\\'")
        parts.append(f"{key}='{quoted}'")
    return " ".join(parts)


def dump_argv(pg_dump: str, *, connection: str, fmt: str, archive: str, jobs: int, compression: list[str],
              snapshot: str | None) -> list[str]:
    """The pg_dump command line. --no-password: never prompt; a missing password is an error, not a hang."""
    argv = [pg_dump, f"--dbname={connection}", "--no-password", f"--format={fmt}", f"--file={archive}"]
    if fmt == "directory" and jobs > 1:
        argv.append(f"--jobs={jobs}")
    argv += compression
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return argv


def tool_problems(stderr: str) -> list[str]:
    """The lines of a tool's stderr, if any of them is a warning or an error (pg_dump can exit 0 with either)."""
    lines = [line.rstrip() for line in (stderr or "").splitlines() if line.strip()]
    return lines if any(_PROBLEM_RE.match(line) for line in lines) else []


def find_tool(module: AnsibleModule, bindir: str | None, name: str) -> str:
    """bindir/name, or name from PATH when bindir is not set; fails the module when it is not there."""
    if bindir:
        path = os.path.join(bindir, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            module.fail_json(msg=f"{name} not found in bindir {bindir} (no executable {path})")
        return path
    found = module.get_bin_path(name)
    if not found:
        module.fail_json(msg=f"{name} not found on PATH; install the PostgreSQL client or set bindir")
    return found


def run_tool(module: AnsibleModule, argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run argv as is: no shell, and no expansion of $VARS or ~ in arguments (a database may be named $HOME)."""
    return module.run_command(argv, environ_update=environ or {}, expand_user_and_vars=False, check_rc=False)


class RunningTool:
    """A tool started in the background (argv as is, no shell), so that the module can work while it runs.

    pg_backup counts the rows in the exported snapshot while pg_dump dumps it. stderr goes to a temporary file,
    not a pipe: a chatty tool can never block on a full pipe while nobody reads it.
    """

    def __init__(self, argv: list[str], environ: dict[str, str] | None = None) -> None:
        # messages in English: tool_problems() reads them
        env = {**os.environ, **(environ or {}), "LC_ALL": "C"}
        self._stderr = tempfile.TemporaryFile()  # pylint: disable=consider-using-with
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                                            stderr=self._stderr, env=env, close_fds=True)
        except OSError:
            self._stderr.close()
            raise

    def wait(self) -> tuple[int, str]:
        """(exit code, stderr) once the tool ended."""
        rc = self.process.wait()
        self._stderr.seek(0)
        err = self._stderr.read().decode("utf-8", errors="replace")
        self._stderr.close()
        return rc, err

    def kill(self) -> None:
        """End the tool (the module failed meanwhile) and wait for it, so that nothing writes on afterwards."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._stderr.close()


def tool_version(module: AnsibleModule, path: str) -> ToolVersion:
    rc, out, err = run_tool(module, [path, "--version"])
    try:
        if rc != 0:
            raise ValueError(err.strip() or f"exit code {rc}")
        return parse_tool_version(out)
    except ValueError as exc:
        raise BackupError(f"cannot tell the version of {path}: {exc}") from exc


def restore_tool(module: AnsibleModule, bindir: str | None, manifest: dict[str, Any]) -> str:
    """pg_restore from bindir (or PATH), when it can read an archive of the manifest's pg_dump; BackupError otherwise.

    pg_restore reads the archives of its own major version and older ones only.
    """
    pg_restore = find_tool(module, bindir, "pg_restore")
    version = tool_version(module, pg_restore)
    dumped = re.match(r"(\d+)", manifest["pg_dump_version"])
    if dumped and version.major < int(dumped.group(1)):
        raise BackupError(f"pg_restore {version.number} ({pg_restore}) cannot read an archive of pg_dump "
                          f"{manifest['pg_dump_version']}; set bindir to a newer PostgreSQL's")
    return pg_restore
