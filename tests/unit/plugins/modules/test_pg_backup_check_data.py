# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup's check_data(): which archives it walks and which it reads back with pg_restore.

The walk runs for real on a pg_dump 15 archive (tests/unit/fixtures/small.custom). The read-back is recorded
instead of run, because it needs a pg_restore; tests/integration/test_pg_backup_modules.py runs it for real.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError, utc_now
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import Compression, ToolVersion
from ansible_collections.runbook.ops.plugins.modules import pg_backup

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "small.custom"


def plan(compression: Compression) -> pg_backup.Plan:
    version = ToolVersion(15, 18, "pg_dump (PostgreSQL) 15.18")
    return pg_backup.Plan("pg_dump", version, "/usr/lib/postgresql/15/bin/pg_restore", compression, [], utc_now(),
                          time.monotonic())


@pytest.fixture
def read_backs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(pg_backup, "read_back", lambda module, pg_restore, archive: calls.append((pg_restore, archive)))
    return calls


def archive(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "dump.custom"
    path.write_bytes(data)
    return str(path)


def test_a_compressed_custom_archive_is_walked_not_read_back(tmp_path: Path, read_backs: list) -> None:
    path = archive(tmp_path, FIXTURE.read_bytes())
    assert pg_backup.check_data(None, plan(Compression("gzip", 1)), path, "custom") == "blocks"
    assert read_backs == []


def test_a_cut_archive_fails_the_backup_naming_where(tmp_path: Path, read_backs: list) -> None:
    data = FIXTURE.read_bytes()
    path = archive(tmp_path, data[: len(data) - 100])
    with pytest.raises(BackupError) as raised:
        pg_backup.check_data(None, plan(Compression("gzip", 1)), path, "custom")
    assert str(raised.value).startswith("pg_dump exited 0 but dump.custom is not whole: the archive ends inside "), \
        raised.value
    assert read_backs == []


@pytest.mark.parametrize(("data_of", "compression", "fmt"), [
    # pg_dump 16's archive version: not walked, read back
    (lambda d: d[:5] + bytes([1, 15, 0]) + d[8:], Compression("gzip", 1), "custom"),
    # uncompressed: a chunk per row, the walk would be slower than pg_restore
    (lambda d: d, Compression("none"), "custom"),
    (lambda d: d, Compression("gzip", 0), "custom"),
    # directory format: a compressed file per table, whose end only decompressing finds
    (lambda d: d, Compression("gzip", 1), "directory"),
], ids=["version-1.15", "none", "gzip-0", "directory"])
def test_what_the_walk_does_not_cover_is_read_back(tmp_path: Path, read_backs: list, data_of: Any,
                                                   compression: Compression, fmt: str) -> None:
    path = archive(tmp_path, data_of(FIXTURE.read_bytes()))
    assert pg_backup.check_data(None, plan(compression), path, fmt) == "read_back"
    assert read_backs == [("/usr/lib/postgresql/15/bin/pg_restore", path)]
