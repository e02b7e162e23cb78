#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup_verify: does a runbook.ops.pg_backup backup still hold what its manifest says?"""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup_verify
short_description: Verify a PostgreSQL backup made by runbook.ops.pg_backup against its manifest
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the seed runbooks' C(Backup Verification) step (C(pg_restore --list backup)) and goes further.
    For the backup given by O(path), or by O(backup_dir), O(database) and O(id), it checks that
  - 1. C(manifest.json) is a valid manifest (of O(database) and O(id) when those are given);
  - 2. every file the manifest lists is there, with its size and sha256, and no other file is (a missing, extra,
    shorter or changed file fails, naming the file);
  - 3. C(pg_restore --list) reads the archive, in the manifest's format, and lists exactly the manifest's
    C(toc_entries);
  - 4. with O(check_data), every data block reads back (C(pg_restore --file=/dev/null)); by default only when
    the backup's data was not checked whole when it was made.
  - The files are hashed in parallel threads, with large reads, while C(pg_restore --list) runs.
  - On success it records C(verified_at) in the manifest (written atomically), the first time only. A backup
    verified before is checked again in full but changes nothing (RV(changed=false)); RV(checked_at) says when
    this check ran. Only verified backups are reused by O(runbook.ops.pg_backup#module:reuse_within).
  - Needs no database login; it only reads files and runs C(pg_restore).
options:
  path:
    description:
      - The backup's directory, C(<backup_dir>/<database>/<id>), e.g.
        RV(runbook.ops.pg_backup#module:backup_path).
      - Taken literally, without C(~) or C($VAR) expansion, since a database name, and so the path, may
        contain a C($).
      - The directory may have been copied or renamed; its manifest says which backup and database it holds.
      - Give either O(path) or O(backup_dir) and O(database).
    type: str
  backup_dir:
    description: The root of the backups, as given to M(runbook.ops.pg_backup). Needs O(database).
    type: path
  database:
    description: The database whose backup to verify, with O(backup_dir).
    type: str
  id:
    description:
      - The backup's id, with O(backup_dir); ignored with O(path).
      - V(latest) is the newest complete backup (by C(created_at)). A directory with a later id but without a
        valid manifest is skipped with a warning and listed in RV(skipped_dirs).
    type: str
    default: latest
  bindir:
    description:
      - The directory of C(pg_restore), e.g. C(/usr/lib/postgresql/15/bin). Unset, it is looked up on C(PATH).
      - pg_restore must be at least the major version of the pg_dump that wrote the archive.
    type: path
  check_data:
    description:
      - Also read every data block back with C(pg_restore --file=/dev/null), as a restore would. The sha256 of
        each file already proves it is unchanged since the backup; this proves the archive reads to its end.
        It costs one single-threaded read and decompression of the whole archive.
      - Unset (the default), the data is read back only when the manifest does not record that
        M(runbook.ops.pg_backup) checked it whole when it made the backup (C(data_checked), its
        O(runbook.ops.pg_backup#module:check_data), which walks a compressed custom archive block by block and
        reads other dumps back; C(data_check) says which). So the data is checked once per backup, since the checksums
        prove the files are still the ones checked then. V(true) always reads it back, V(false) never.
    type: bool
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Verifies in full (it only reads) and writes nothing; reports the change that recording
      C(verified_at) would be.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The manifest's C(verified_at) before and after.
notes:
  - A failed verification changes nothing, not even an earlier C(verified_at).
seealso:
  - module: runbook.ops.pg_backup
  - name: pg_restore
    description: PostgreSQL documentation of pg_restore and C(--list).
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
"""

EXAMPLES = r"""
- name: Verify the backup just made
  runbook.ops.pg_backup_verify:
    path: "{{ backup.backup_path }}"
    bindir: "{{ runbook_pg_bindir }}"

- name: Verify the newest backup of app (the monthly integrity test)
  runbook.ops.pg_backup_verify:
    backup_dir: /var/backups/postgresql
    database: app
  register: verified

- name: Read the data back too, even if the backup did when it was made
  runbook.ops.pg_backup_verify:
    backup_dir: /var/backups/postgresql
    database: app
    check_data: true

- name: Only the files and the TOC, without reading the data back
  runbook.ops.pg_backup_verify:
    backup_dir: /var/backups/postgresql
    database: app
    id: 20261201T083000Z
    check_data: false
"""

RETURN = r"""
changed:
  description: Whether C(verified_at) was recorded (the first successful verification), or would be in check mode.
  returned: always
  type: bool
backup_path:
  description: The backup's directory (not named C(path), see RV(runbook.ops.pg_backup#module:backup_path)).
  returned: when the backup was found
  type: str
  sample: /var/backups/postgresql/app/20261201T083000Z
id:
  description: The backup's id (from its manifest).
  returned: when the manifest was read
  type: str
  sample: 20261201T083000Z
database:
  description: The database of the backup (from its manifest).
  returned: when the manifest was read
  type: str
  sample: app
archive:
  description: The archive inside RV(backup_path).
  returned: when the manifest was read
  type: str
  sample: /var/backups/postgresql/app/20261201T083000Z/dump.custom
checked_at:
  description: When this verification ran, UTC.
  returned: success
  type: str
  sample: "2026-12-01T09:00:00.000Z"
verified_at:
  description: When the backup was first verified, UTC (this run's RV(checked_at) the first time; in check mode,
    null if it never was).
  returned: success
  type: str
  sample: "2026-12-01T08:31:02.511Z"
files_checked:
  description: Files whose size and sha256 matched.
  returned: success
  type: int
  sample: 3
size_bytes:
  description: Their total size.
  returned: success
  type: int
  sample: 25177
toc_entries:
  description: TOC entries that C(pg_restore --list) listed.
  returned: when the files matched
  type: int
  sample: 42
data_checked:
  description: Whether this verification read every data block back (O(check_data)).
  returned: success
  type: bool
  sample: false
duration_s:
  description:
    - Seconds of the module's own work (manifest, checksums, TOC, data read back if it was, verified_at),
      without Ansible's start-up of the module. The backup benchmark compares it with the dump's time.
  returned: success
  type: float
  sample: 0.21
problems:
  description: The files that differ from the manifest, each with C(path), C(problem) (V(missing), V(extra),
    V(size) or V(sha256)), C(expected) and C(actual).
  returned: failure, when files differ
  type: list
  elements: dict
  sample: [{"path": "dump.custom", "problem": "sha256", "expected": "9f86d0...", "actual": "e3b0c4..."}]
skipped_dirs:
  description:
    - With O(id=latest), newer directories that are not complete backups, with their error.
    - Not named C(skipped), which Ansible reads as the task's own status.
  returned: success
  type: list
  elements: dict
  sample: []
manifest:
  description:
    - The backup's manifest after the verification (in check mode, as it would be), see
      RV(runbook.ops.pg_backup#module:manifest).
  returned: success
  type: dict
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    ARCHIVE_HEADER_FORMATS,
    LATEST,
    BackupError,
    archive_path,
    check_database_name,
    check_id,
    format_utc,
    id_sort_key,
    utc_now,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_catalog import find_backup
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    compare_files,
    describe_problems,
    read_manifest,
    tree_files,
    write_manifest,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_toc import read_back, read_toc
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import restore_tool


def argument_spec() -> dict[str, Any]:
    return {
        # str, not path: Ansible would expand a $ that belongs to a database name
        "path": {"type": "str"},
        "backup_dir": {"type": "path"},
        "database": {"type": "str"},
        "id": {"type": "str", "default": LATEST},
        "bindir": {"type": "path"},
        # None: read back only when the backup's data was not checked when it was made (once per backup)
        "check_data": {"type": "bool"},
    }


def locate(module: AnsibleModule, result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backup's directory and its valid manifest, from path or from backup_dir, database and id."""
    p = module.params
    if p["path"]:
        if not os.path.isabs(p["path"]):
            module.fail_json(msg=f"path must be an absolute path, not {p['path']!r}", **result)
        return p["path"], read_manifest(p["path"])
    problem = check_database_name(p["database"]) or (check_id(p["id"]) if p["id"] != LATEST else None)
    if problem:
        module.fail_json(msg=problem, **result)
    backup, listing = find_backup(p["backup_dir"], p["database"], p["id"])
    if p["id"] == LATEST:
        newer = [bad for bad in listing.invalid if id_sort_key(bad["id"]) > id_sort_key(backup.id)]
        for bad in newer:
            module.warn(f"skipped {bad['path']}, newer than {backup.id}: {bad['error']}")
        result["skipped_dirs"] = newer
    return backup.path, backup.manifest


def verify(module: AnsibleModule, result: dict[str, Any], path: str, manifest: dict[str, Any]) -> None:
    """Every check in turn; BackupError naming the first thing that does not match the manifest.

    The files are hashed in a thread while pg_restore --list reads the TOC (both outside the GIL); a file that
    differs is reported before the TOC, as the more precise cause.
    """
    pg_restore = restore_tool(module, module.params["bindir"], manifest)
    archive = archive_path(path, manifest["format"])
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashed = pool.submit(tree_files, path)
        try:
            toc = read_toc(module, pg_restore, archive, expect_format=ARCHIVE_HEADER_FORMATS[manifest["format"]])
            toc_error = None
        except BackupError as exc:
            toc, toc_error = None, exc
        problems = compare_files(manifest["files"], hashed.result())
    if problems:
        result["problems"] = problems
        raise BackupError(f"backup {path} does not match its manifest: {describe_problems(problems)}")
    result.update(files_checked=len(manifest["files"]), size_bytes=manifest["size_bytes"])
    if toc_error is not None:
        raise toc_error
    result["toc_entries"] = toc.count
    if toc.count != manifest["toc_entries"]:
        raise BackupError(f"backup {path}: pg_restore --list counts {toc.count} TOC entries, the manifest "
                          f"{manifest['toc_entries']}")
    check_data = module.params["check_data"]
    result["data_checked"] = not manifest.get("data_checked", False) if check_data is None else check_data
    if result["data_checked"]:
        read_back(module, pg_restore, archive)


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("path", "backup_dir"), ("path", "database")],
        required_one_of=[("path", "backup_dir")],
        required_together=[("backup_dir", "database")],
        supports_check_mode=True,
    )
    result: dict[str, Any] = {"changed": False}
    started = time.monotonic()
    checked_at = format_utc(utc_now())
    try:
        path, manifest = locate(module, result)
        result.update(backup_path=path, id=manifest["id"], database=manifest["database"],
                      archive=archive_path(path, manifest["format"]))
        verify(module, result, path, manifest)
        before = manifest["verified_at"]
        result.update(checked_at=checked_at, verified_at=before)
        if before is None:
            manifest = dict(manifest, verified_at=checked_at)
            result["changed"] = True
            if not module.check_mode:
                write_manifest(path, manifest)
                result["verified_at"] = checked_at
        if module._diff:
            result["diff"] = {"before": {"verified_at": before}, "after": {"verified_at": manifest["verified_at"]}}
        result.update(manifest=manifest, duration_s=round(time.monotonic() - started, 3))
    except BackupError as exc:
        module.fail_json(msg=str(exc), **result)
    except OSError as exc:
        module.fail_json(msg=f"cannot read the backup: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
