#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup_info: the backups of one database in a backup directory, newest first."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup_info
short_description: List the PostgreSQL backups made by runbook.ops.pg_backup, newest first
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Reads C(<backup_dir>/<database>/) and returns every complete backup (a directory named by its id with a valid
    C(manifest.json)), newest first by C(created_at), with the figures of its manifest. It never changes anything.
  - Directories without a valid manifest are returned apart in RV(invalid), unfinished C(<id>.partial) directories
    in RV(partial); neither is ever a backup to restore.
  - Retention (the P(runbook.ops.backup_retention#filter) filter), the restore and the restore drill pick their backup
    from this list; RV(latest_verified) is what C(restore_backup=latest) means.
  - It checks the manifests only, not the files; M(runbook.ops.pg_backup_verify) does that.
options:
  backup_dir:
    description: The root of the backups, as given to M(runbook.ops.pg_backup); an absolute path. A missing
      O(backup_dir) or database directory holds no backups (an empty list, not an error).
    type: path
    required: true
  database:
    description: The database whose backups to list (its directory under O(backup_dir)).
    type: str
    required: true
  id:
    description:
      - Return only this backup, or with V(latest) the newest complete one; the module fails when there is none,
        naming what it found instead.
      - Unset, every backup is returned.
    type: str
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: It only reads, in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: runbook.ops.pg_backup
  - module: runbook.ops.pg_backup_verify
"""

EXAMPLES = r"""
- name: The backups of app on this host
  runbook.ops.pg_backup_info:
    backup_dir: /var/backups/postgresql
    database: app
  register: backups

- name: Restore the newest verified one
  ansible.builtin.debug:
    msg: "would restore {{ backups.latest_verified.id }} from {{ backups.latest_verified.created_at }}"
  when: backups.latest_verified is not none

- name: Fail unless this backup exists
  runbook.ops.pg_backup_info:
    backup_dir: /var/backups/postgresql
    database: app
    id: 20261201T020000Z
"""

RETURN = r"""
backups:
  description: The complete backups, newest first (one, with O(id)).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: The backup's id, its directory name.
      type: str
      sample: 20261201T020000Z
    backup_path:
      description: Its directory (not named C(path), which Ansible would treat as a file to look up).
      type: str
      sample: /var/backups/postgresql/app/20261201T020000Z
    created_at:
      description: When pg_dump started, UTC, ISO 8601.
      type: str
      sample: "2026-12-01T02:00:00Z"
    verified_at:
      description: When M(runbook.ops.pg_backup_verify) first verified it, or null.
      type: str
    verified:
      description: Whether RV(backups[].verified_at) is set.
      type: bool
    size_bytes:
      description: The total size of the archive's files.
      type: int
    format:
      description: C(custom) or C(directory).
      type: str
    server_version:
      description: The server's version when the backup was taken.
      type: str
    system_identifier:
      description: The cluster's system identifier (pg_control_system()) when the backup was taken.
      type: str
    migration_revision:
      description: The migration revision in the backup (alembic or Prisma), or null.
      type: str
    toc_entries:
      description: The TOC entries C(pg_restore --list) lists.
      type: int
    manifest:
      description: The whole manifest (see M(runbook.ops.pg_backup)).
      type: dict
latest:
  description: The newest complete backup (the first of RV(backups)), or null.
  returned: always
  type: dict
latest_verified:
  description: The newest complete backup that has been verified, or null.
  returned: always
  type: dict
invalid:
  description: Directories that look like backups but have no valid manifest, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"id": "20261130T020000Z", "path": "/var/backups/postgresql/app/20261130T020000Z",
            "error": "no manifest.json"}]
partial:
  description: Unfinished C(<id>.partial) directories (a backup running now, or one whose run died).
  returned: always
  type: list
  elements: str
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    LATEST,
    BackupError,
    check_database_name,
    check_id,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_catalog import Backup, find_backup, list_backups

# Manifest fields every entry carries at the top level, for playbooks and reports.
SUMMARY_FIELDS = ("created_at", "verified_at", "size_bytes", "format", "server_version", "system_identifier",
                  "migration_revision", "toc_entries")


def argument_spec() -> dict[str, Any]:
    return {
        "backup_dir": {"type": "path", "required": True},
        "database": {"type": "str", "required": True},
        "id": {"type": "str"},
    }


def describe(backup: Backup) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": backup.id, "backup_path": backup.path, "verified": backup.verified}
    entry.update({key: backup.manifest.get(key) for key in SUMMARY_FIELDS})
    entry["manifest"] = backup.manifest
    return entry


def check_params(backup_dir: str, database: str, backup_id: str | None) -> str | None:
    """Why the options cannot name backups, or None; checked before anything is read."""
    if not os.path.isabs(backup_dir):
        # relative to whatever directory the module happens to run in: never what was meant
        return f"backup_dir must be an absolute path, not {backup_dir!r}"
    problem = check_database_name(database)
    if problem:
        return problem
    if backup_id is not None and backup_id != LATEST:
        return check_id(backup_id)
    return None


def backup_info(backup_dir: str, database: str, backup_id: str | None = None) -> dict[str, Any]:
    """The module's result for these options; BackupError when backup_id names no complete backup."""
    listing = list_backups(backup_dir, database)
    chosen = [find_backup(backup_dir, database, backup_id)[0]] if backup_id else listing.backups
    verified = [b for b in listing.backups if b.verified]
    return {
        "changed": False,
        "backups": [describe(b) for b in chosen],
        "latest": describe(listing.backups[0]) if listing.backups else None,
        "latest_verified": describe(verified[0]) if verified else None,
        "invalid": listing.invalid,
        "partial": listing.partial,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    empty: dict[str, Any] = {"changed": False, "backups": [], "latest": None, "latest_verified": None,
                             "invalid": [], "partial": []}
    problem = check_params(p["backup_dir"], p["database"], p["id"])
    if problem:
        module.fail_json(msg=problem, **empty)
    try:
        result = backup_info(p["backup_dir"], p["database"], p["id"])
    except BackupError as exc:
        module.fail_json(msg=str(exc), **empty)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
