# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""manifest.json of a runbook.ops backup: validate, read, write atomically, and the files it lists.

The manifest is the backup's own account of itself: what was dumped from which cluster, the size and sha256 of
every file of the archive, the TOC entry count and the row counts read in the dump's snapshot. Verification
and restore trust nothing else, so validate_manifest() is strict and read_manifest() always runs it.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    FORMATS,
    MANIFEST_NAME,
    ROW_COUNTS,
    BackupError,
    parse_utc,
)

MANIFEST_VERSION = 1
MIGRATION_TOOLS = (None, "alembic", "prisma")
# how pg_backup checked the data whole (data_check): the archive walked block by block, or read back with
# pg_restore; None: not checked, or a manifest from before it was recorded (optional, like data_checked)
DATA_CHECKS = (None, "blocks", "read_back")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Large reads into one reused buffer: hashlib releases the GIL on them, so files hash in parallel threads.
_CHUNK = 4 * 1024 * 1024
# Threads that hash the files of one backup (a directory-format dump has one file per table).
HASH_THREADS = 4


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            size = handle.readinto(buffer)
            if not size:
                break
            digest.update(view[:size])
    return digest.hexdigest()


def tree_files(root: str, *, digests: bool = True) -> list[dict[str, Any]]:
    """Every file under root except the manifest, as {path (relative, /-separated), size, sha256}, by path.

    A symlink or special file in a backup is an error: the manifest could not vouch for what it points to.
    """
    found: list[dict[str, Any]] = []
    paths: list[str] = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(current, d))]):
            full = os.path.join(current, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel == MANIFEST_NAME:
                continue
            info = os.lstat(full)
            if not stat.S_ISREG(info.st_mode):
                raise BackupError(f"{rel}: not a regular file (a symlink or special file has no place in a backup)")
            found.append({"path": rel, "size": info.st_size})
            paths.append(full)
    if digests and paths:
        with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(paths))) as pool:
            for entry, digest in zip(found, pool.map(file_sha256, paths)):
                entry["sha256"] = digest
    return found


def compare_files(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The differences between the manifest's files and those on disk, by path: missing, extra, size, sha256."""
    want = {f["path"]: f for f in expected}
    have = {f["path"]: f for f in actual}
    problems: list[dict[str, Any]] = []
    for path in sorted(set(want) | set(have)):
        if path not in have:
            problems.append({"path": path, "problem": "missing", "expected": want[path]["size"], "actual": None})
        elif path not in want:
            problems.append({"path": path, "problem": "extra", "expected": None, "actual": have[path]["size"]})
        elif want[path]["size"] != have[path]["size"]:
            problems.append({"path": path, "problem": "size", "expected": want[path]["size"],
                             "actual": have[path]["size"]})
        elif "sha256" in have[path] and want[path]["sha256"] != have[path]["sha256"]:
            problems.append({"path": path, "problem": "sha256", "expected": want[path]["sha256"],
                             "actual": have[path]["sha256"]})
    return problems


def describe_problems(problems: list[dict[str, Any]], limit: int = 5) -> str:
    """One line for compare_files() results, naming the files: 'dump.custom: sha256 differs; x: extra file'."""
    words = {"missing": "missing", "extra": "extra file, not in the manifest"}
    parts = []
    for p in problems[:limit]:
        if p["problem"] in words:
            parts.append(f"{p['path']}: {words[p['problem']]}")
        else:
            parts.append(f"{p['path']}: {p['problem']} differs (manifest {p['expected']}, on disk {p['actual']})")
    if len(problems) > limit:
        parts.append(f"and {len(problems) - limit} more")
    return "; ".join(parts)


def _is_int(value: Any, minimum: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (minimum is None or value >= minimum)


def _is_opt_int(value: Any) -> bool:
    return value is None or _is_int(value, 0)


def _safe_relative(path: Any) -> bool:
    return (isinstance(path, str) and path != "" and not path.startswith("/") and "\\" not in path
            and posixpath.normpath(path) == path and ".." not in path.split("/") and path != MANIFEST_NAME)


def _check_utc(errors: list[str], key: str, value: Any, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    try:
        parse_utc(value)
    except ValueError:
        errors.append(f"{key} is not a UTC time (like 2026-12-01T08:30:00.000Z): {value!r}")


def _check_files(errors: list[str], manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        errors.append("files must be a non-empty list")
        return
    seen: set[str] = set()
    for n, entry in enumerate(files):
        if not isinstance(entry, dict):
            errors.append(f"files[{n}] is not a mapping")
            continue
        path = entry.get("path")
        if not _safe_relative(path):
            errors.append(f"files[{n}].path {path!r} is not a safe relative path")
        elif path in seen:
            errors.append(f"files[{n}].path {path!r} is listed twice")
        else:
            seen.add(path)
        if not _is_int(entry.get("size"), 0):
            errors.append(f"files[{n}].size must be an integer >= 0")
        if not isinstance(entry.get("sha256"), str) or not _SHA256_RE.fullmatch(entry["sha256"]):
            errors.append(f"files[{n}].sha256 must be 64 lowercase hex digits")
    archive = manifest.get("archive")
    if isinstance(archive, str) and not any(p == archive or p.startswith(archive + "/") for p in seen):
        errors.append(f"the archive {archive!r} is not among the files")
    sizes = [e.get("size") for e in files if isinstance(e, dict)]
    if all(_is_int(s, 0) for s in sizes) and manifest.get("size_bytes") != sum(sizes):
        errors.append(f"size_bytes {manifest.get('size_bytes')!r} is not the sum of the files' sizes ({sum(sizes)})")


def _check_tables(errors: list[str], tables: Any) -> None:
    if not isinstance(tables, list):
        errors.append("tables must be a list")
        return
    for n, table in enumerate(tables):
        if not isinstance(table, dict) or not isinstance(table.get("schema"), str) \
                or not isinstance(table.get("name"), str):
            errors.append(f"tables[{n}] needs a schema and a name")
        elif not _is_opt_int(table.get("rows")) or not _is_opt_int(table.get("rows_estimate")):
            errors.append(f"tables[{n}] ({table['schema']}.{table['name']}): rows and rows_estimate must be "
                          "integers >= 0 or null")


def validate_manifest(manifest: Any, *, database: str | None = None, backup_id: str | None = None) -> list[str]:
    """Everything wrong with a manifest (empty when it is valid); database and backup_id must match if given."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        if _is_int(version) and version > MANIFEST_VERSION:
            return [f"manifest format_version {version} is newer than this collection reads ({MANIFEST_VERSION})"]
        return [f"manifest format_version must be {MANIFEST_VERSION}, not {version!r}"]
    errors: list[str] = []
    for key in ("id", "database", "server_version", "pg_dump_version", "compression", "archive"):
        if not isinstance(manifest.get(key), str) or not manifest[key]:
            errors.append(f"{key} must be a non-empty string")
    for key in ("system_identifier", "host", "migration_revision"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            errors.append(f"{key} must be a string or null")
    if manifest.get("format") not in FORMATS:
        errors.append(f"format must be one of {', '.join(FORMATS)}, not {manifest.get('format')!r}")
    if manifest.get("row_counts") not in ROW_COUNTS:
        errors.append(f"row_counts must be one of {', '.join(ROW_COUNTS)}")
    if manifest.get("migration_tool") not in MIGRATION_TOOLS:
        errors.append(f"migration_tool must be alembic, prisma or null, not {manifest.get('migration_tool')!r}")
    if not _is_int(manifest.get("server_version_num"), 0):
        errors.append("server_version_num must be an integer")
    if manifest.get("port") is not None and not _is_int(manifest["port"], 0):
        errors.append("port must be an integer or null")
    if not _is_int(manifest.get("jobs"), 1):
        errors.append("jobs must be an integer >= 1")
    if not _is_int(manifest.get("toc_entries"), 1):
        errors.append("toc_entries must be an integer >= 1 (an archive without entries is no backup)")
    duration = manifest.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        errors.append("duration_s must be a number >= 0")
    # optional: manifests from before it was recorded lack it (their data counts as not read back)
    if not isinstance(manifest.get("data_checked", False), bool):
        errors.append("data_checked must be true or false")
    if manifest.get("data_check") not in DATA_CHECKS:
        errors.append(f"data_check must be one of {', '.join(c for c in DATA_CHECKS if c)} or null")
    _check_utc(errors, "created_at", manifest.get("created_at"))
    _check_utc(errors, "verified_at", manifest.get("verified_at"), nullable=True)
    _check_files(errors, manifest)
    _check_tables(errors, manifest.get("tables"))
    if database is not None and manifest.get("database") != database:
        errors.append(f"the manifest is of database {manifest.get('database')!r}, not {database!r}")
    if backup_id is not None and manifest.get("id") != backup_id:
        errors.append(f"the manifest is of backup {manifest.get('id')!r}, not {backup_id!r}")
    return errors


def read_manifest(path: str, *, database: str | None = None, backup_id: str | None = None) -> dict[str, Any]:
    """The valid manifest of the backup directory path; BackupError saying what is wrong otherwise."""
    name = os.path.join(path, MANIFEST_NAME)
    try:
        with open(name, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError as exc:
        raise BackupError(f"{path}: no {MANIFEST_NAME}, so not a complete backup") from exc
    except (OSError, ValueError) as exc:
        raise BackupError(f"{name}: cannot be read as JSON: {exc}") from exc
    errors = validate_manifest(manifest, database=database, backup_id=backup_id)
    if errors:
        raise BackupError(f"{name} is not a valid manifest: {'; '.join(errors)}")
    return manifest


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    """Replace path/manifest.json atomically: a 0600 temp file beside it, fsync, os.replace, fsync the directory.

    A reader sees the old manifest or the new one, never half of one, even if the host dies mid-write.
    """
    errors = validate_manifest(manifest)
    if errors:  # never write what read_manifest() would refuse
        raise BackupError(f"refusing to write an invalid manifest: {'; '.join(errors)}")
    data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, os.path.join(path, MANIFEST_NAME))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path)


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in directory path durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
