# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: safety_copies
short_description: Which safety copies of a restored database to keep and which to drop
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Takes the databases named like safety copies (C(<db>_pre_restore_<backup id>), as C(playbooks/restore.yml)
    keeps them) and decides, for each, whether to drop it, with the reasons.
  - A copy's age is the time it B(became) a safety copy, read from the ledger of the restore's swap record
    (C(<restore_state_dir>/<db>/.restore.swap.json)), matched by name and oid. It is not its backup id's time - a
    restore of an old backup makes a new copy with an old id, and that copy holds the database as it was just
    before that restore.
  - Kept - the newest O(keep) copies, every copy younger than O(min_age), every copy the ledger has no time for
    (its age is unknown), and all of them while a restore of the database holds its lock (O(locked)). The rest
    are dropped.
  - A name whose rest is no backup id (8 digits, C(T), 6 digits, C(Z), optionally C(-N), and a real UTC time) is
    not a safety copy - it is returned under RV(_value.others) and never dropped.
  - Used by the safety_copies role (C(playbooks/drop_safety_copies.yml)).
options:
  _input:
    description: The databases found, each a dict with C(datname), C(oid) and C(size_bytes).
    type: list
    elements: dict
    required: true
  prefix:
    description: The safety copies' prefix, C(<db>_pre_restore_).
    type: str
    required: true
  ledger:
    description: The text of the swap record (JSON), empty when there is none.
    type: str
    default: ""
  keep:
    description: How many of the newest copies (by the time they became one) to keep whatever their age.
    type: int
    default: 1
  min_age:
    description: Copies younger than this duration (C(7d), C(36h), seconds; C(0) for none) are kept.
    type: str
    default: 7d
  locked:
    description: The path of a restore lock of this database that is held, empty when none; then nothing is dropped.
    type: str
    default: ""
  now:
    description: The time to take the ages at (seconds since the epoch); default now.
    type: float
"""

EXAMPLES = r"""
- name: Decide which safety copies of app to keep
  ansible.builtin.set_fact:
    plan: >-
      {{ listing.query_result | runbook.ops.safety_copies(prefix='app_pre_restore_', keep=1, min_age='7d',
                                                           ledger=record.content | default('') | b64decode) }}
"""

RETURN = r"""
_value:
  description: The copies (newest first, those of unknown age last) and the look-alikes.
  type: dict
  contains:
    copies:
      description: One entry per safety copy.
      type: list
      elements: dict
      contains:
        name:
          description: The database.
          type: str
        id:
          description: The backup id in its name.
          type: str
        backup_time:
          description: The time of the backup id, C(YYYY-MM-DDTHH:MM:SSZ).
          type: str
        made_at:
          description: When it became a safety copy (the swap), C(YYYY-MM-DDTHH:MM:SSZ); null when not recorded.
          type: str
        age_s:
          description: Seconds since RV(_value.copies[].made_at); null when not recorded.
          type: int
        size_bytes:
          description: Its size.
          type: int
        drop:
          description: Whether to drop it.
          type: bool
        why:
          description: Why it is kept, or why it goes.
          type: list
          elements: str
    others:
      description: Databases that start like a safety copy but are none, each with C(name) and C(why).
      type: list
      elements: dict
"""

import json
import re
import time
from calendar import timegm
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds

ID = re.compile(r"(\d{8}T\d{6}Z)(?:-(\d+))?")


def _utc(text: str, fmt: str) -> float | None:
    """Seconds since the epoch of a UTC time in fmt, or None when it is no real time."""
    try:
        return float(timegm(time.strptime(text, fmt)))
    except (TypeError, ValueError):
        return None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ledger(text: Any) -> dict[str, Any]:
    """name -> entry of the swap record's ledger; {} when there is none or it cannot be read."""
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        return {}
    copies = record.get("safety_copies") if isinstance(record, dict) else None
    return copies if isinstance(copies, dict) else {}


def _made_at(entry: Any, oid: Any) -> float | None:
    """When the ledger says this database (the same oid) became a safety copy, or None."""
    if not isinstance(entry, dict) or entry.get("oid") != oid or not isinstance(entry.get("swapped_at"), str):
        return None
    try:
        made = datetime.fromisoformat(entry["swapped_at"].replace("Z", "+00:00"))
    except ValueError:
        return None
    return made.timestamp() if made.tzinfo else None


def _copy(row: Mapping[str, Any], prefix: str, ledger: dict[str, Any], now: float) -> dict[str, Any] | str:
    """The copy a row is, or why it is none."""
    name = str(row.get("datname", ""))
    rest = name[len(prefix):] if name.startswith(prefix) else ""
    match = ID.fullmatch(rest)
    if not match:
        return "the rest of the name is no backup id"
    backup = _utc(match.group(1), "%Y%m%dT%H%M%SZ")
    if backup is None:
        return f"its id {rest} is not a time"
    made = _made_at(ledger.get(name), row.get("oid"))
    return {"name": name, "id": rest, "backup_time": _stamp(backup), "n": int(match.group(2) or 1),
            "made_at": None if made is None else _stamp(made), "age_s": None if made is None else int(now - made),
            "size_bytes": row.get("size_bytes"), "drop": False, "why": []}


def safety_copies(listing: Any, prefix: str, ledger: Any = "", keep: Any = 1, min_age: Any = "7d",
                  locked: Any = "", now: Any = None) -> dict[str, Any]:
    """Sort the databases into safety copies, each with drop and why, and look-alikes."""
    if isinstance(listing, (str, bytes)) or not isinstance(listing, Sequence):
        raise AnsibleFilterError(f"safety_copies: the input must be a list, got {type(listing).__name__}")
    if not prefix:
        raise AnsibleFilterError("safety_copies: prefix must not be empty")
    try:
        keep, min_age_s = int(keep), to_seconds(min_age)
    except ValueError as exc:
        raise AnsibleFilterError(f"safety_copies: keep must be a number and min_age a duration: {exc}") from exc
    at = time.time() if now is None else float(now)
    entries = _ledger(ledger)
    copies: list[dict[str, Any]] = []
    others: list[dict[str, str]] = []
    for row in listing:
        found = _copy(row, prefix, entries, at)
        if isinstance(found, str):
            others.append({"name": str(row.get("datname", "")), "why": found})
        else:
            copies.append(found)
    known = sorted((c for c in copies if c["made_at"]), key=lambda c: (c["made_at"], c["id"], c["n"]), reverse=True)
    unknown = sorted((c for c in copies if not c["made_at"]), key=lambda c: (c["backup_time"], c["n"]), reverse=True)
    for rank, copy in enumerate(known, start=1):
        if rank <= keep:
            copy["why"].append(f"one of the newest {keep}")
        if copy["age_s"] < min_age_s:
            copy["why"].append(f"younger than {min_age}")
    for copy in unknown:
        copy["why"].append("the restore's record has no time for when it became a safety copy")
    for copy in known + unknown:
        if locked:
            copy["why"].append(f"a restore of this database holds its lock {locked}")
        copy["drop"] = not copy["why"]
        if copy["drop"]:
            copy["why"] = [f"older than {min_age} and not one of the newest {keep}"]
        del copy["n"]
    return {"copies": known + unknown, "others": sorted(others, key=lambda o: o["name"])}


class FilterModule:
    """Plan the drop of old safety copies."""

    def filters(self) -> dict[str, Any]:
        return {"safety_copies": safety_copies}
