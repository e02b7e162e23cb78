# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The layout of a runbook.ops backup, shared by pg_backup, pg_backup_verify and the restore and retention code.

One backup of database D is the directory <backup_dir>/D/<id>/ with the archive (dump.custom, or the directory
dump/ of a directory-format dump) and manifest.json. It is written as <id>.partial and renamed to <id> only when
it checked out, so a directory named <id> is complete and a .partial one never is.

This file holds what the other pg_backup* files build on: the error type, the names, ids and UTC times.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone

MANIFEST_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"
FORMATS = ("custom", "directory")
# The archive's name inside a backup, per format: one file, or the directory pg_dump -Fd fills.
ARCHIVE_NAMES = {"custom": "dump.custom", "directory": "dump"}
# pg_restore --list prints this in its header; it must match the manifest's format.
ARCHIVE_HEADER_FORMATS = {"custom": "CUSTOM", "directory": "DIRECTORY"}
ROW_COUNTS = ("exact", "estimate", "none")
# Default ids: the UTC second the backup started, e.g. 20261201T083000Z (sorts by time as text).
ID_FORMAT = "%Y%m%dT%H%M%SZ"
LATEST = "latest"
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SUFFIX_RE = re.compile(r"^(.*?)(?:-(\d+))?$")


class BackupError(Exception):
    """A backup, or the check of one, failed; the message says why, without secrets."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: 2026-12-01T08:30:00.123Z."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(text: object) -> datetime:
    """The datetime of a format_utc() text; ValueError for anything else (a time without Z is not UTC)."""
    if not isinstance(text, str) or not text.endswith("Z"):
        raise ValueError(f"not a UTC time ending in Z: {text!r}")
    moment = datetime.fromisoformat(text[:-1])
    if moment.tzinfo is not None:
        raise ValueError(f"not a UTC time ending in Z: {text!r}")
    return moment.replace(tzinfo=timezone.utc)


def new_id(moment: datetime, attempt: int = 1) -> str:
    """The default id of a backup started at moment; attempt 2, 3... when that second is already taken."""
    base = moment.astimezone(timezone.utc).strftime(ID_FORMAT)
    return base if attempt <= 1 else f"{base}-{attempt}"


def id_sort_key(backup_id: str) -> tuple[str, int]:
    """Orders 20261201T083000Z < 20261201T083000Z-2 < 20261201T083000Z-10 (numeric suffixes, not text)."""
    match = _SUFFIX_RE.match(backup_id)
    base, suffix = (match.group(1), match.group(2)) if match else (backup_id, None)
    return (base, int(suffix) if suffix else 1)


def check_id(value: str) -> str | None:
    """Why value cannot be a backup id, or None. Ids are directory names, so the rules are strict."""
    if not _ID_RE.fullmatch(value or ""):
        return (f"id {value!r} is not valid: use 1 to 128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit")
    if value.endswith(PARTIAL_SUFFIX):
        return f"id {value!r} is not valid: {PARTIAL_SUFFIX} marks unfinished backups"
    if value == LATEST:
        return f"id {LATEST!r} is reserved (it means the newest backup)"
    return None


def check_database_name(name: str) -> str | None:
    """Why a database name cannot be a directory name under backup_dir, or None."""
    if not name:
        return "the database name is empty"
    if "/" in name or "\0" in name or name in (".", ".."):
        return f"database {name!r} cannot be a directory name under backup_dir (it contains '/' or is . or ..)"
    return None


def database_dir(backup_dir: str, database: str) -> str:
    return os.path.join(backup_dir, database)


def backup_path(backup_dir: str, database: str, backup_id: str) -> str:
    return os.path.join(backup_dir, database, backup_id)


def archive_path(path: str, fmt: str) -> str:
    """The archive pg_restore reads, inside the backup directory path."""
    return os.path.join(path, ARCHIVE_NAMES[fmt])
