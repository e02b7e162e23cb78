# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter: which backups a daily/weekly/monthly retention keeps, which it deletes, and why."""
from __future__ import annotations

DOCUMENTATION = r"""
name: backup_retention
short_description: Pick the backups to keep and to delete (daily, weekly, monthly retention)
version_added: 0.2.0
author: runbook.ops maintainers
description:
  - Grandfather-father-son retention by count. For each of the O(daily) most recent UTC days that have a
    verified backup it keeps that day's newest verified backup; likewise for the O(weekly) most recent ISO weeks
    (C(2026-W53) runs into January 2027) and the O(monthly) most recent months. One backup can fill several slots.
  - The current time is never read. Retention counts backups, not days since now, so a host whose backups
    stopped a month ago still keeps its last O(daily) days' backups.
  - Only verified backups (C(verified_at) set) fill slots, so an unverified backup never pushes a verified one of
    the same day out.
  - The newest verified backup is always kept, even with every count at V(0).
  - An unverified backup created after the newest verified one is always kept, because it is in flight or awaiting
    verification. With no verified backup at all, nothing is deleted.
  - An unverified backup older than the newest verified one is deleted. Verification runs right after each backup,
    so it failed or never ran, and a newer good backup exists.
  - Timestamps are ISO 8601 strings or datetimes. V(Z) and offsets are converted to UTC, and a timestamp without an
    offset is taken as UTC. Ties on C(created_at) are broken by C(id), so the input order never matters.
  - Any bad input (not a list, a record without C(id), C(created_at) or C(verified_at), a timestamp that does not
    parse, a duplicate C(id), a negative count) fails with one error that names every bad record, before anything is
    decided.
positional: daily, weekly, monthly
options:
  _input:
    description:
      - The backups, in any order. Each is a dict with at least C(id) (a non-empty string or an integer, unique),
        C(created_at) (ISO 8601, UTC) and C(verified_at) (ISO 8601, or V(null) when not verified; the key is
        required, so that a misspelt key cannot make a verified backup look deletable).
      - Other keys (a local path, an S3 key, a size) are passed through untouched in RV(_value.keep) and
        RV(_value.delete).
    type: list
    elements: dict
    required: true
  daily:
    description: Days with a verified backup to keep the newest backup of. V(0) keeps none by day.
    type: int
    default: 7
  weekly:
    description: ISO weeks with a verified backup to keep the newest backup of.
    type: int
    default: 4
  monthly:
    description: Months with a verified backup to keep the newest backup of.
    type: int
    default: 6
seealso:
  - module: amazon.aws.s3_object
"""

EXAMPLES = r"""
- name: Decide what to keep (7 daily, 4 weekly, 6 monthly)
  ansible.builtin.set_fact:
    backup_plan: "{{ backups | runbook.ops.backup_retention(daily=7, weekly=4, monthly=6) }}"
  vars:
    backups:
      - {id: app-20261130T020000Z, created_at: "2026-11-30T02:00:00Z", verified_at: "2026-11-30T02:21:10Z",
         path: /var/backups/app/20261130T020000Z, s3_key: app/20261130T020000Z.dump}
      - {id: app-20261201T020000Z, created_at: "2026-12-01T02:00:00Z", verified_at: null,
         path: /var/backups/app/20261201T020000Z, s3_key: app/20261201T020000Z.dump}

- name: One line per backup, with the reasons
  ansible.builtin.debug:
    msg: "{{ item.key }}: {{ 'keep' if item.key in backup_plan.keep | map(attribute='id') else 'delete' }} ({{ item.value | join('; ') }})"
  loop: "{{ backup_plan.reasons | dict2items }}"

- name: Delete the local directories of the backups the retention drops
  ansible.builtin.file:
    path: "{{ item.path }}"
    state: absent
  loop: "{{ backup_plan.delete }}"
  loop_control:
    label: "{{ item.id }}"

- name: Delete their S3 objects
  amazon.aws.s3_object:
    bucket: "{{ backup_bucket }}"
    object: "{{ item.s3_key }}"
    mode: delobj
  loop: "{{ backup_plan.delete }}"
  loop_control:
    label: "{{ item.id }}"
"""

RETURN = r"""
_value:
  description: The decision for every backup.
  type: dict
  contains:
    keep:
      description: The records to keep, newest first, as they were given.
      type: list
      elements: dict
    delete:
      description: The records to delete, newest first, as they were given (local paths, S3 keys and so on included).
      type: list
      elements: dict
    reasons:
      description:
        - For every C(id), the reasons it is kept or deleted, a list of strings.
        - "A kept backup has C(daily 2026-11-30), C(weekly 2026-W48), C(monthly 2026-11) for the slots it fills,
          C(newest verified), C(unverified, newer than the newest verified: in flight or awaiting verification),
          C(unverified, no verified backup yet)."
        - A deleted one has C(in no retention slot of 7 daily, 4 weekly, 6 monthly),
          C(unverified, older than the newest verified <id>).
      type: dict
    newest_verified:
      description: The C(id) of the newest verified backup, V(null) when there is none.
      type: raw
    summary:
      description: One line, such as C(keep 12, delete 3 of 15 backups; retention 7 daily, 4 weekly, 6 monthly).
      type: str
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.module_utils.backup_retention import select


def backup_retention(backups: Any, daily: Any = 7, weekly: Any = 4, monthly: Any = 6) -> dict[str, Any]:
    """keep / delete / reasons for the backups under a daily, weekly and monthly retention."""
    try:
        return select(backups, daily=daily, weekly=weekly, monthly=monthly)
    except ValueError as err:
        raise AnsibleFilterError(f"backup_retention: {err}") from err


class FilterModule:
    """Backup retention for the backup playbook."""

    def filters(self) -> dict[str, Any]:
        return {"backup_retention": backup_retention}
