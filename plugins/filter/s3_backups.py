# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter: the backups that object keys in a bucket hold, as records for the backup_retention filter."""
from __future__ import annotations

DOCUMENTATION = r"""
name: s3_backups
short_description: Group the object keys of a backup bucket into backups, for retention
version_added: 0.2.0
author: runbook.ops maintainers
description:
  - Takes the keys under C(<prefix>/<database>/) (as M(amazon.aws.s3_object_info) returns them in C(s3_keys)) and
    returns one record per backup id, with its keys, ready for the P(runbook.ops.backup_retention#filter) filter.
  - The backup role uploads C(manifest.json) last and only after the backup verified, so a backup whose
    C(manifest.json) is in the bucket is complete and verified (C(verified_at) = C(created_at)); one without it is
    an upload that did not finish (C(verified_at) null), which retention deletes once a newer complete backup
    exists and keeps while it is the newest. A C(manifest.json) without any other key of its backup (a deletion
    that stopped half-way) does not make a backup complete either.
  - C(created_at) comes from the id, which M(runbook.ops.pg_backup) makes from the UTC start time
    (C(20261201T020000Z), C(-2) for a second backup in the same second), exactly 8 digits, C(T), 6 digits and C(Z).
    A key whose id is not such a time is returned in RV(_value.undated) and never becomes a record, so retention
    can never delete it.
positional: prefix
options:
  _input:
    description: The object keys, as strings.
    type: list
    elements: str
    required: true
  prefix:
    description: The keys' common prefix, C(<backup_s3_prefix>/<database>/); a missing trailing C(/) is added.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: The backups of app in the bucket, and what retention does with them
  ansible.builtin.set_fact:
    s3_plan: "{{ (listing.s3_keys | runbook.ops.s3_backups('postgresql/app/')).backups
                 | runbook.ops.backup_retention(7, 4, 6) }}"
"""

RETURN = r"""
_value:
  description: The backups and the keys that belong to none.
  type: dict
  contains:
    backups:
      description: One record per dated id, oldest first.
      type: list
      elements: dict
      contains:
        id:
          description: The backup id.
          type: str
        created_at:
          description: The time the id gives, ISO 8601 UTC.
          type: str
        verified_at:
          description: C(created_at) when C(manifest.json) was uploaded, else null.
          type: str
        complete:
          description: Whether C(manifest.json) and at least one file of the archive are in the bucket.
          type: bool
        keys:
          description: Every key of the backup, sorted.
          type: list
          elements: str
    undated:
      description: Keys under the prefix whose id is not a backup time (never deleted by retention).
      type: list
      elements: str
"""

import re
from datetime import datetime, timezone
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import ID_FORMAT, id_sort_key

MANIFEST = "manifest.json"
# strptime alone is lenient (it reads 2026121T020000Z as 2026-12-01): a key someone else put under the prefix
# must not pass for a dated backup, which retention may delete
_ID_TIME_RE = re.compile(r"\d{8}T\d{6}Z")


def id_time(backup_id: str) -> datetime | None:
    """The UTC time of a default backup id (20261201T020000Z or 20261201T020000Z-2), or None."""
    base = id_sort_key(backup_id)[0]
    if not _ID_TIME_RE.fullmatch(base):
        return None
    try:
        return datetime.strptime(base, ID_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def s3_backups(keys: Any, prefix: Any) -> dict[str, Any]:
    """The keys under prefix grouped into backups (oldest first), and those that belong to no dated backup."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise AnsibleFilterError("s3_backups: the input must be a list of object keys (strings)")
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise AnsibleFilterError("s3_backups: prefix must be a non-empty string such as 'postgresql/app/'")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    grouped: dict[str, list[str]] = {}
    undated: list[str] = []
    for key in keys:
        if not key.startswith(prefix):
            continue
        backup_id, sep, rest = key[len(prefix):].partition("/")
        if not sep or not rest or id_time(backup_id) is None:
            undated.append(key)
            continue
        grouped.setdefault(backup_id, []).append(key)
    backups = []
    for backup_id in sorted(grouped, key=id_sort_key):
        created = id_time(backup_id).strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[union-attr]
        manifest = f"{prefix}{backup_id}/{MANIFEST}"
        # a manifest without any file of its archive is no backup (a deletion that stopped half-way)
        complete = manifest in grouped[backup_id] and any(k != manifest for k in grouped[backup_id])
        backups.append({"id": backup_id, "created_at": created, "verified_at": created if complete else None,
                        "complete": complete, "keys": sorted(grouped[backup_id])})
    return {"backups": backups, "undated": sorted(undated)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"s3_backups": s3_backups}
