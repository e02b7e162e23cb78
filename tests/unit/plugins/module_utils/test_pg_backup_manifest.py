# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""manifest.json of runbook.ops backups: validation, atomic writing, the files and their differences."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    compare_files,
    describe_problems,
    read_manifest,
    tree_files,
    validate_manifest,
    write_manifest,
)

SHA_A = "a" * 64
SHA_B = "b" * 64

VALID: dict[str, Any] = {
    "format_version": 1,
    "id": "20261201T083000Z",
    "created_at": "2026-12-01T08:30:00.000Z",
    "database": "app",
    "host": "127.0.0.1",
    "port": 5432,
    "server_version": "15.18 (Debian 15.18-0+deb12u1)",
    "server_version_num": 150018,
    "system_identifier": "7441234567890123456",
    "pg_dump_version": "15.18 (Debian 15.18-0+deb12u1)",
    "format": "directory",
    "compression": "gzip:1",
    "jobs": 2,
    "archive": "dump",
    "files": [{"path": "dump/toc.dat", "size": 100, "sha256": SHA_A},
              {"path": "dump/3351.dat.gz", "size": 20, "sha256": SHA_B}],
    "size_bytes": 120,
    "toc_entries": 10,
    "row_counts": "exact",
    "tables": [{"schema": "public", "name": "t", "rows": 5, "rows_estimate": None}],
    "migration_tool": "alembic",
    "migration_revision": "ae1027a6acf",
    "duration_s": 1.25,
    "verified_at": None,
}


def changed(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is KeyError:
            del manifest[key]
        else:
            manifest[key] = value
    return manifest


def test_valid_manifest_has_no_errors() -> None:
    assert validate_manifest(VALID) == []
    assert validate_manifest(VALID, database="app", backup_id="20261201T083000Z") == []
    assert validate_manifest(changed(verified_at="2026-12-01T09:00:00.000Z", system_identifier=None,
                                     migration_tool=None, migration_revision=None, host=None, port=None)) == []
    # data_checked is optional (manifests from before it was recorded), a boolean when there
    assert validate_manifest(changed(data_checked=True)) == validate_manifest(changed(data_checked=False)) == []
    # so is data_check, how the data was checked (VALID has none)
    assert [validate_manifest(changed(data_check=how)) for how in ("blocks", "read_back", None)] == [[]] * 3


@pytest.mark.parametrize(("manifest", "message"), [
    ([], "not a JSON object"),
    (changed(format_version=2), "newer than this collection reads"),
    (changed(format_version=KeyError), "format_version must be 1"),
    (changed(id=""), "id must be a non-empty string"),
    (changed(database=KeyError), "database must be a non-empty string"),
    (changed(format="plain"), "format must be one of custom, directory"),
    (changed(created_at="2026-12-01 08:30:00"), "created_at is not a UTC time"),
    (changed(verified_at="soon"), "verified_at is not a UTC time"),
    (changed(toc_entries=0), "toc_entries must be an integer >= 1"),
    (changed(toc_entries=True), "toc_entries must be an integer >= 1"),
    (changed(jobs=0), "jobs must be an integer >= 1"),
    (changed(files=[]), "files must be a non-empty list"),
    (changed(files=[{"path": "../etc/passwd", "size": 1, "sha256": SHA_A}], size_bytes=1, archive="../etc/passwd"),
     "not a safe relative path"),
    (changed(files=[{"path": "/etc/passwd", "size": 1, "sha256": SHA_A}], size_bytes=1), "not a safe relative"),
    (changed(files=[{"path": "dump/./toc.dat", "size": 1, "sha256": SHA_A}], size_bytes=1), "not a safe relative"),
    (changed(files=[{"path": "manifest.json", "size": 1, "sha256": SHA_A}], size_bytes=1), "not a safe relative"),
    (changed(files=[VALID["files"][0], VALID["files"][0]], size_bytes=200), "listed twice"),
    (changed(files=[{"path": "dump/toc.dat", "size": -1, "sha256": SHA_A}], size_bytes=-1), "size must be"),
    (changed(files=[{"path": "dump/toc.dat", "size": 1, "sha256": "ABC"}], size_bytes=1), "64 lowercase hex"),
    (changed(size_bytes=119), "not the sum of the files' sizes (120)"),
    (changed(archive="dump.custom"), "archive 'dump.custom' is not among the files"),
    (changed(tables=[{"schema": "public"}]), "tables[0] needs a schema and a name"),
    (changed(tables=[{"schema": "public", "name": "t", "rows": -1, "rows_estimate": None}]), "rows and rows_est"),
    (changed(row_counts="some"), "row_counts must be one of"),
    (changed(migration_tool="flyway"), "migration_tool must be alembic, prisma or null"),
    (changed(system_identifier=7441234567890123456), "system_identifier must be a string or null"),
    (changed(duration_s=-1), "duration_s must be a number >= 0"),
    (changed(server_version_num="150018"), "server_version_num must be an integer"),
    (changed(data_checked="yes"), "data_checked must be true or false"),
    (changed(data_check="decompressed"), "data_check must be one of blocks, read_back or null"),
])
def test_invalid_manifests_say_what_is_wrong(manifest: Any, message: str) -> None:
    errors = validate_manifest(manifest)
    assert any(message in e for e in errors), errors


def test_manifest_of_another_database_or_backup() -> None:
    assert validate_manifest(VALID, database="other") == ["the manifest is of database 'app', not 'other'"]
    assert validate_manifest(VALID, backup_id="x") == ["the manifest is of backup '20261201T083000Z', not 'x'"]


def test_write_manifest_is_atomic_and_private(tmp_path: Path) -> None:
    write_manifest(str(tmp_path), VALID)
    first = (tmp_path / "manifest.json").stat().st_ino
    assert os.stat(tmp_path / "manifest.json").st_mode & 0o777 == 0o600
    write_manifest(str(tmp_path), changed(verified_at="2026-12-01T09:00:00.000Z"))
    assert (tmp_path / "manifest.json").stat().st_ino != first  # replaced by rename, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary file left
    assert read_manifest(str(tmp_path))["verified_at"] == "2026-12-01T09:00:00.000Z"


def test_write_manifest_refuses_an_invalid_one_and_keeps_the_old(tmp_path: Path) -> None:
    write_manifest(str(tmp_path), VALID)
    with pytest.raises(BackupError, match="refusing to write an invalid manifest"):
        write_manifest(str(tmp_path), changed(toc_entries=0))
    assert json.loads((tmp_path / "manifest.json").read_text()) == VALID
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_read_manifest_runs_the_validation(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(changed(size_bytes=1)))
    with pytest.raises(BackupError, match="is not a valid manifest: size_bytes 1"):
        read_manifest(str(tmp_path))


def make_tree(root: Path) -> None:
    (root / "dump").mkdir()
    (root / "dump" / "toc.dat").write_bytes(b"PGDMP toc")
    (root / "dump" / "3351.dat.gz").write_bytes(b"\x1f\x8b data")
    (root / "manifest.json").write_text("{}")


def test_tree_files_lists_every_file_but_the_manifest(tmp_path: Path) -> None:
    make_tree(tmp_path)
    files = tree_files(str(tmp_path))
    assert [(f["path"], f["size"]) for f in files] == [("dump/3351.dat.gz", 7), ("dump/toc.dat", 9)]
    assert files[1]["sha256"] == hashlib.sha256(b"PGDMP toc").hexdigest()
    assert "sha256" not in tree_files(str(tmp_path), digests=False)[0]


def test_tree_files_hashes_many_and_large_files_in_threads_like_hashlib(tmp_path: Path) -> None:
    """Several files, more than the thread pool has threads, and one over the read buffer (4 MiB) with a tail:
    each digest is that file's own, in path order."""
    contents = {f"dump/{n:04d}.dat.gz": os.urandom(1000 + n) for n in range(9)}
    contents["dump/big.dat.gz"] = os.urandom(9 * 1024 * 1024 + 17)
    contents["dump/empty.dat.gz"] = b""
    for name, data in contents.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    files = tree_files(str(tmp_path))
    assert [f["path"] for f in files] == sorted(contents)
    assert all(f["sha256"] == hashlib.sha256(contents[f["path"]]).hexdigest() and f["size"] == len(contents[f["path"]])
               for f in files)


def flip_byte(root: Path) -> None:
    path = root / "dump" / "toc.dat"
    data = bytearray(path.read_bytes())
    data[2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("damage", "expected"), [
    (flip_byte, [("dump/toc.dat", "sha256")]),
    (lambda root: (root / "dump" / "3351.dat.gz").unlink(), [("dump/3351.dat.gz", "missing")]),
    (lambda root: (root / "dump" / "3352.dat.gz").write_bytes(b"x"), [("dump/3352.dat.gz", "extra")]),
    (lambda root: (root / "dump" / "toc.dat").write_bytes(b"PGDMP"), [("dump/toc.dat", "size")]),
    (lambda root: (root / "manifest.json").write_text("[]"), []),  # the manifest is not one of its own files
])
def test_compare_files_names_each_damaged_file(tmp_path: Path, damage: Callable[[Path], Any],
                                               expected: list[tuple[str, str]]) -> None:
    make_tree(tmp_path)
    before = tree_files(str(tmp_path))
    damage(tmp_path)
    problems = compare_files(before, tree_files(str(tmp_path)))
    assert [(p["path"], p["problem"]) for p in problems] == expected


def test_describe_problems_names_the_files() -> None:
    problems = [{"path": "dump/toc.dat", "problem": "sha256", "expected": SHA_A, "actual": SHA_B},
                {"path": "dump/1.dat.gz", "problem": "missing", "expected": 3, "actual": None},
                {"path": "x", "problem": "extra", "expected": None, "actual": 1}]
    text = describe_problems(problems)
    assert text == (f"dump/toc.dat: sha256 differs (manifest {SHA_A}, on disk {SHA_B}); dump/1.dat.gz: missing; "
                    "x: extra file, not in the manifest")
    assert describe_problems(problems, limit=1).endswith("; and 2 more")


def test_tree_files_refuses_symlinks(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "dump" / "link.dat").symlink_to("/etc/hostname")
    with pytest.raises(BackupError, match="dump/link.dat: not a regular file"):
        tree_files(str(tmp_path))
    (tmp_path / "dump" / "link.dat").unlink()
    (tmp_path / "linked-dir").symlink_to(tmp_path / "dump")
    with pytest.raises(BackupError, match="linked-dir: not a regular file"):
        tree_files(str(tmp_path))
