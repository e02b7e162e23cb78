# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backups of one database in a backup_dir: list them newest first, pick one to reuse, reserve a new one."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    LATEST,
    PARTIAL_SUFFIX,
    BackupError,
    backup_path,
    database_dir,
    id_sort_key,
    new_id,
    parse_utc,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    read_manifest,
    tree_files,
)

# How many ids of the same second (-2, -3...) reserve() tries before it gives up.
MAX_ID_ATTEMPTS = 100


@dataclass
class Backup:
    """A complete backup: its directory is named id and its manifest is valid."""

    id: str
    path: str
    manifest: dict[str, Any] = field(repr=False)

    @property
    def created_at(self) -> datetime:
        return parse_utc(self.manifest["created_at"])

    @property
    def verified(self) -> bool:
        return self.manifest.get("verified_at") is not None


@dataclass
class Listing:
    """The backups of a database, newest first, and the directories that are not complete backups."""

    backups: list[Backup]
    invalid: list[dict[str, str]]  # {"id", "path", "error"}: a directory without a valid manifest
    partial: list[str]  # paths of <id>.partial directories: unfinished, or left by a run that died


def _newest_first(backup: Backup) -> tuple[datetime, tuple[str, int]]:
    return (backup.created_at, id_sort_key(backup.id))


def list_backups(backup_dir: str, database: str) -> Listing:
    """Every backup of database under backup_dir, newest first (created_at, then id). A missing dir is empty."""
    root = database_dir(backup_dir, database)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return Listing([], [], [])
    except OSError as exc:
        raise BackupError(f"cannot list {root}: {exc}") from exc
    backups: list[Backup] = []
    invalid: list[dict[str, str]] = []
    partial: list[str] = []
    for name in names:
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path) or os.path.islink(path):
            continue
        if name.endswith(PARTIAL_SUFFIX):
            partial.append(path)
            continue
        try:
            backups.append(Backup(name, path, read_manifest(path, database=database, backup_id=name)))
        except BackupError as exc:
            invalid.append({"id": name, "path": path, "error": str(exc)})
    backups.sort(key=_newest_first, reverse=True)
    return Listing(backups, invalid, partial)


def find_backup(backup_dir: str, database: str, backup_id: str) -> tuple[Backup, Listing]:
    """The backup named backup_id, or with LATEST the newest complete one; BackupError when there is none."""
    listing = list_backups(backup_dir, database)
    if backup_id == LATEST:
        if not listing.backups:
            raise BackupError(f"no complete backup of database {database!r} in {backup_dir}"
                              + (f" ({len(listing.invalid)} without a valid manifest)" if listing.invalid else ""))
        return listing.backups[0], listing
    for backup in listing.backups:
        if backup.id == backup_id:
            return backup, listing
    for bad in listing.invalid:
        if bad["id"] == backup_id:
            raise BackupError(bad["error"])
    raise BackupError(f"no backup {backup_id!r} of database {database!r} in {backup_dir}")


def files_present(backup: Backup) -> bool:
    """Every file of the manifest is there with its size: a cheap check, no sha256 (that is verification)."""
    try:
        on_disk = {f["path"]: f["size"] for f in tree_files(backup.path, digests=False)}
    except (BackupError, OSError):
        return False
    return on_disk == {f["path"]: f["size"] for f in backup.manifest["files"]}


def find_reusable(backups: list[Backup], *, max_age_s: float, now: datetime,
                  system_identifier: str | None) -> Backup | None:
    """The newest verified backup younger than max_age_s taken from the same cluster, whose files are all there.

    A backup with another system identifier is another cluster's database of the same name: never reused.
    """
    if max_age_s <= 0:
        return None
    for backup in backups:
        age = (now - backup.created_at).total_seconds()
        if age >= max_age_s or age < 0:
            continue
        if not backup.verified:
            continue
        theirs = backup.manifest.get("system_identifier")
        if system_identifier is not None and theirs is not None and theirs != system_identifier:
            continue
        if files_present(backup):
            return backup
    return None


def _free(backup_dir: str, database: str, candidate: str) -> bool:
    final = backup_path(backup_dir, database, candidate)
    return not os.path.lexists(final) and not os.path.lexists(final + PARTIAL_SUFFIX)


def next_id(backup_dir: str, database: str, moment: datetime, backup_id: str | None = None) -> str:
    """The id reserve() would take now, without creating anything (check mode)."""
    if backup_id:
        return backup_id
    for attempt in range(1, MAX_ID_ATTEMPTS + 1):
        if _free(backup_dir, database, new_id(moment, attempt)):
            return new_id(moment, attempt)
    raise BackupError(f"no free backup id in {database_dir(backup_dir, database)} after {MAX_ID_ATTEMPTS} attempts")


def reserve(backup_dir: str, database: str, moment: datetime, backup_id: str | None = None) -> tuple[str, str]:
    """Create <backup_dir>/<database>/<id>.partial (mode 0700) for a new backup; return (id, partial path).

    mkdir is the lock: two runs in the same second get different ids (a -2 suffix), never one directory.
    """
    root = database_dir(backup_dir, database)
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"cannot create {root}: {exc}") from exc
    attempts = 1 if backup_id else MAX_ID_ATTEMPTS
    for attempt in range(1, attempts + 1):
        candidate = backup_id or new_id(moment, attempt)
        final = backup_path(backup_dir, database, candidate)
        if os.path.lexists(final):
            continue
        try:
            os.mkdir(final + PARTIAL_SUFFIX, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise BackupError(f"cannot create {final + PARTIAL_SUFFIX}: {exc}") from exc
        return candidate, final + PARTIAL_SUFFIX
    if backup_id:
        raise BackupError(f"backup {backup_id!r} of database {database!r} already exists in {backup_dir} "
                          "(or is being written)")
    raise BackupError(f"no free backup id in {root} after {attempts} attempts")


def discard(partial: str, *, remove_database_dir: bool) -> None:
    """Remove a failed backup's partial directory; with remove_database_dir, its database directory too if empty.

    Pass remove_database_dir only when this run created that directory, so that a failed backup leaves nothing
    behind. os.rmdir removes only an empty directory: another run's backup or partial in it keeps it.
    """
    shutil.rmtree(partial, ignore_errors=True)
    if remove_database_dir:
        try:
            os.rmdir(os.path.dirname(partial))
        except OSError:
            pass
