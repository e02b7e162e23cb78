# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""restore_tool(): the pg_restore that pg_backup_verify and pg_restore run, and whether it can read the archive;
RunningTool: a tool run in the background (pg_dump while pg_backup counts), real processes."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import RunningTool, restore_tool


class Failed(Exception):
    """What fail_json() raises here instead of exiting."""


class FakeModule:
    """The AnsibleModule calls restore_tool() makes: get_bin_path, run_command (of --version) and fail_json."""

    def __init__(self, version_output: str, rc: int = 0, on_path: str | None = None) -> None:
        self.version_output, self.rc, self.on_path = version_output, rc, on_path
        self.params: dict[str, Any] = {}
        self.ran: list[list[str]] = []

    def get_bin_path(self, name: str) -> str | None:
        return self.on_path

    def run_command(self, argv: list[str], **_kwargs: Any) -> tuple[int, str, str]:
        self.ran.append(argv)
        return (self.rc, self.version_output, "") if self.rc == 0 else (self.rc, "", "broken")

    def fail_json(self, **kwargs: Any) -> None:
        raise Failed(kwargs["msg"])


def bindir_with_pg_restore(tmp_path: Path) -> str:
    tool = tmp_path / "pg_restore"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    return str(tmp_path)


def manifest(pg_dump_version: str) -> dict[str, Any]:
    return {"pg_dump_version": pg_dump_version}


@pytest.mark.parametrize("dumped", ["15.18 (Debian 15.18-0+deb12u1)", "14.11", "9.6.24", "not a version"])
def test_restore_tool_reads_archives_of_its_own_and_older_pg_dump(tmp_path: Path, dumped: str) -> None:
    bindir = bindir_with_pg_restore(tmp_path)
    module = FakeModule("pg_restore (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n")
    assert restore_tool(module, bindir, manifest(dumped)) == f"{bindir}/pg_restore"
    assert module.ran == [[f"{bindir}/pg_restore", "--version"]]


def test_restore_tool_refuses_an_older_pg_restore_saying_which(tmp_path: Path) -> None:
    bindir = bindir_with_pg_restore(tmp_path)
    module = FakeModule("pg_restore (PostgreSQL) 15.18\n")
    with pytest.raises(BackupError) as exc:
        restore_tool(module, bindir, manifest("16.4 (Debian 16.4-1)"))
    assert str(exc.value) == (f"pg_restore 15.18 ({bindir}/pg_restore) cannot read an archive of pg_dump "
                              "16.4 (Debian 16.4-1); set bindir to a newer PostgreSQL's")


def test_restore_tool_without_bindir_takes_pg_restore_from_path() -> None:
    module = FakeModule("pg_restore (PostgreSQL) 16.4\n", on_path="/usr/bin/pg_restore")
    assert restore_tool(module, None, manifest("16.4")) == "/usr/bin/pg_restore"


def test_restore_tool_fails_the_module_when_there_is_no_pg_restore(tmp_path: Path) -> None:
    with pytest.raises(Failed, match=f"pg_restore not found in bindir {tmp_path}"):
        restore_tool(FakeModule(""), str(tmp_path), manifest("15.18"))
    with pytest.raises(Failed, match="pg_restore not found on PATH"):
        restore_tool(FakeModule(""), None, manifest("15.18"))


def test_restore_tool_reports_a_pg_restore_that_cannot_tell_its_version(tmp_path: Path) -> None:
    bindir = bindir_with_pg_restore(tmp_path)
    with pytest.raises(BackupError, match=f"cannot tell the version of {bindir}/pg_restore: broken"):
        restore_tool(FakeModule("", rc=1), bindir, manifest("15.18"))


def test_running_tool_gives_exit_code_and_stderr_in_english_with_its_environment() -> None:
    # more stderr than a pipe holds (64 KiB): it goes to a file, so the tool never blocks on it
    script = 'printf "%s\\n" "$RUNBOOK_X" >&2; head -c 200000 /dev/zero | tr "\\0" x >&2; echo >&2; echo "$LC_ALL" >&2; exit 3'
    tool = RunningTool(["sh", "-c", script], {"RUNBOOK_X": "from the environment"})
    rc, err = tool.wait()
    lines = err.splitlines()
    assert rc == 3 and lines[0] == "from the environment" and len(lines[1]) == 200000 and lines[2] == "C"


def test_running_tool_kill_ends_the_tool() -> None:
    started = time.monotonic()
    tool = RunningTool(["sleep", "30"])
    tool.kill()
    assert tool.process.returncode is not None and time.monotonic() - started < 10


def test_running_tool_that_cannot_start_raises() -> None:
    with pytest.raises(OSError):
        RunningTool(["/nonexistent/pg_dump"])
