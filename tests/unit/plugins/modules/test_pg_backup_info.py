# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup_info: its options, and the listing it returns for backup directories on disk (tmp_path)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError
from ansible_collections.runbook.ops.plugins.modules import pg_backup_info
from ansible_collections.runbook.ops.plugins.modules.pg_backup_info import backup_info, check_params

DB = "app"


def manifest(backup_id: str, created_at: str, verified_at: str | None) -> dict[str, Any]:
    return {
        "format_version": 1, "id": backup_id, "created_at": created_at, "database": DB, "host": "127.0.0.1",
        "port": 5432, "server_version": "15.18", "server_version_num": 150018, "system_identifier": "7441",
        "pg_dump_version": "15.18", "format": "custom", "compression": "gzip:1", "jobs": 1,
        "archive": "dump.custom", "files": [{"path": "dump.custom", "size": 3, "sha256": "a" * 64}],
        "size_bytes": 3, "toc_entries": 4, "row_counts": "exact",
        "tables": [{"schema": "public", "name": "t", "rows": 5, "rows_estimate": None}],
        "migration_tool": None, "migration_revision": None, "duration_s": 0.5, "verified_at": verified_at,
    }


def write_backup(root: Path, backup_id: str, created_at: str, verified_at: str | None = None,
                 **changes: Any) -> Path:
    path = root / DB / backup_id
    path.mkdir(parents=True)
    (path / "dump.custom").write_bytes(b"abc")
    (path / "manifest.json").write_text(json.dumps({**manifest(backup_id, created_at, verified_at), **changes}))
    return path


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    """Three backups (the newest unverified), one without a manifest, one of another database, one partial."""
    write_backup(tmp_path, "20261129T020000Z", "2026-11-29T02:00:00.000Z", "2026-11-29T02:05:00.000Z")
    write_backup(tmp_path, "20261130T020000Z", "2026-11-30T02:00:00.000Z", "2026-11-30T02:05:00.000Z")
    write_backup(tmp_path, "20261201T020000Z", "2026-12-01T02:00:00.000Z")
    (tmp_path / DB / "20261202T020000Z").mkdir()
    write_backup(tmp_path, "copied", "2026-12-03T02:00:00.000Z", database="other")
    (tmp_path / DB / "20261204T020000Z.partial").mkdir()
    return tmp_path


def test_documentation_matches_the_argument_spec() -> None:
    documented = yaml.safe_load(pg_backup_info.DOCUMENTATION)["options"]
    spec = pg_backup_info.argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        for key in ("type", "default", "choices"):
            assert documented[name].get(key) == option.get(key), f"{name}.{key}"
        assert bool(documented[name].get("required")) == bool(option.get("required")), name


def test_lists_complete_backups_newest_first_and_the_rest_apart(backups: Path) -> None:
    result = backup_info(str(backups), DB)
    assert result["changed"] is False
    assert [b["id"] for b in result["backups"]] == ["20261201T020000Z", "20261130T020000Z", "20261129T020000Z"]
    newest = result["backups"][0]
    assert newest["backup_path"] == str(backups / DB / "20261201T020000Z")
    assert newest["verified"] is False and newest["verified_at"] is None
    assert newest["toc_entries"] == 4 and newest["manifest"]["tables"][0]["rows"] == 5
    assert result["latest"]["id"] == "20261201T020000Z"
    assert result["latest_verified"]["id"] == "20261130T020000Z"
    invalid = {bad["id"]: bad["error"] for bad in result["invalid"]}
    assert set(invalid) == {"20261202T020000Z", "copied"}
    assert "no manifest.json" in invalid["20261202T020000Z"]
    assert "of database 'other', not 'app'" in invalid["copied"]
    assert result["partial"] == [str(backups / DB / "20261204T020000Z.partial")]


@pytest.mark.parametrize(("backup_id", "expected"), [
    ("latest", "20261201T020000Z"),
    ("20261129T020000Z", "20261129T020000Z"),
])
def test_one_backup_by_id(backups: Path, backup_id: str, expected: str) -> None:
    assert [b["id"] for b in backup_info(str(backups), DB, backup_id)["backups"]] == [expected]


@pytest.mark.parametrize(("backup_id", "message"), [
    ("20261202T020000Z", "no manifest.json"),  # the directory's own error, not "no such backup"
    ("20260101T020000Z", "no backup '20260101T020000Z' of database 'app'"),
])
def test_an_id_that_is_no_complete_backup_fails_saying_why(backups: Path, backup_id: str, message: str) -> None:
    with pytest.raises(BackupError, match=message):
        backup_info(str(backups), DB, backup_id)


def test_a_missing_directory_holds_no_backups(tmp_path: Path) -> None:
    result = backup_info(str(tmp_path / "not-mounted"), DB)
    assert result["backups"] == [] and result["latest"] is None and result["latest_verified"] is None
    with pytest.raises(BackupError, match="no complete backup of database 'app'"):
        backup_info(str(tmp_path / "not-mounted"), DB, "latest")


@pytest.mark.parametrize(("backup_dir", "database", "backup_id", "message"), [
    ("backups", DB, None, "backup_dir must be an absolute path, not 'backups'"),
    ("/srv/backups", "a/b", None, "cannot be a directory name"),
    ("/srv/backups", "", None, "the database name is empty"),
    ("/srv/backups", DB, "../etc", "is not valid"),
    ("/srv/backups", DB, "x.partial", "marks unfinished backups"),
])
def test_bad_options_are_refused_before_reading(backup_dir: str, database: str, backup_id: str | None,
                                                message: str) -> None:
    assert message in (check_params(backup_dir, database, backup_id) or "")


@pytest.mark.parametrize("backup_id", [None, "latest", "20261201T020000Z"])
def test_good_options_pass(backup_id: str | None) -> None:
    assert check_params("/srv/backups", DB, backup_id) is None
