# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: disk_usage
short_description: Usage and verdict of every real filesystem in mount facts
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Takes the mounts of a host, as C(ansible_facts.mount_points) from M(ansible.builtin.mount_facts) or
    C(ansible_facts.mounts) from M(ansible.builtin.setup), and returns one entry per real filesystem with its
    usage, a verdict against the thresholds and a one-line message.
  - Usage is what C(df) shows in its C(Use%) column, so that the report matches what an operator reads on the
    host, V(100 * used / (used + available\)) rounded to one decimal, where blocks reserved for root count
    neither as used nor as available. Mount facts have no count of free blocks, so the used and available bytes
    come from the output of C(df -P -B1) given as O(df); a mount missing from it falls back to
    V(100 * (size_total - size_available\) / size_total), which counts the reserve as used.
  - Leaves out filesystems with no size (V(size_total) missing or 0), whose type matches O(exclude_fstypes)
    (pseudo and memory filesystems), whose mount point matches O(exclude_mounts), and read-only mounts unless
    O(include_readonly=true).
  - Mounts of the same filesystem (same device and size, for example bind mounts) are reported once, under the
    shortest mount point; the others are listed in RV(_value[].mounts).
  - The verdict compares the rounded percentage with the thresholds, so the message and the verdict agree;
    see P(runbook.ops.threshold_verdict#filter).
positional: warning, critical
options:
  _input:
    description:
      - A dictionary of mount point to mount information (C(mount_points) of M(ansible.builtin.mount_facts)) or a
        list of mount information (C(ansible_facts.mounts)).
      - Each mount needs C(mount), C(fstype), C(size_total) and C(size_available); C(device) and C(options) are
        used when present.
    type: raw
    required: true
  warning:
    description: Usage percentage at or above which a filesystem is a warning.
    type: float
    default: 80
  critical:
    description: Usage percentage at or above which a filesystem is critical.
    type: float
    default: 90
  exclude_fstypes:
    description: Filesystem types to leave out, as fnmatch patterns.
    type: list
    elements: str
    default: [autofs, binfmt_misc, bpf, cgroup, cgroup2, configfs, debugfs, devpts, devtmpfs, efivarfs, fuse.lxcfs,
      fusectl, hugetlbfs, iso9660, mqueue, nsfs, proc, pstore, ramfs, rpc_pipefs, securityfs, selinuxfs, squashfs,
      sysfs, tmpfs, tracefs]
  exclude_mounts:
    description: Mount points to leave out, as fnmatch patterns.
    type: list
    elements: str
    default: []
  include_readonly:
    description: Whether read-only mounts (option V(ro)) are reported.
    type: bool
    default: false
  df:
    description:
      - The standard output of C(df -P -B1) on the host for the mounts to check, whose C(Used) and C(Available)
        columns give the usage C(df) reports.
    type: str
    default: ''
seealso:
  - module: ansible.builtin.mount_facts
  - plugin: runbook.ops.threshold_verdict
    plugin_type: filter
  - plugin: runbook.ops.worst_verdict
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read the mounts
  ansible.builtin.mount_facts:
    sources: [/proc/mounts]
    include_aggregate_mounts: false

- name: Filesystems at 80 % or more
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.mount_points | runbook.ops.disk_usage(80, 90)
         | rejectattr('verdict', 'eq', 'ok') | map(attribute='msg') }}
    # => ['disk / 93.4% used (critical at 90%)']

- name: Also skip snap mounts and container file mounts
  ansible.builtin.set_fact:
    disks: "{{ ansible_facts.mount_points | runbook.ops.disk_usage(exclude_mounts=['/snap/*', '/etc/hosts']) }}"
"""

RETURN = r"""
_value:
  description: One entry per filesystem, sorted by mount point.
  type: list
  elements: dict
  contains:
    mount:
      description: The shortest mount point of the filesystem.
      type: str
      sample: /
    mounts:
      description: Every reported mount point of the filesystem, shortest first.
      type: list
      elements: str
      sample: [/, /var/lib/postgresql]
    device:
      description: The device or remote source.
      type: str
      sample: /dev/vda1
    fstype:
      description: The filesystem type.
      type: str
      sample: ext4
    size_total:
      description: Size in bytes.
      type: int
    size_available:
      description: Bytes available to unprivileged writers.
      type: int
    used_pct:
      description: Percentage used as C(df) shows it, one decimal.
      type: float
      sample: 93.4
    verdict:
      description: V(ok), V(warning) or V(critical).
      type: str
    msg:
      description: One line for reports, with the threshold reached when the verdict is not V(ok).
      type: str
      sample: disk / 93.4% used (critical at 90%)
"""

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.threshold_verdict import threshold_verdict

DEFAULT_EXCLUDE_FSTYPES: tuple[str, ...] = (
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs", "efivarfs",
    "fuse.lxcfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "proc", "pstore", "ramfs", "rpc_pipefs",
    "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
)


def _mount_list(mounts: Any) -> list[Mapping[str, Any]]:
    if isinstance(mounts, Mapping):
        items: Iterable[Any] = mounts.values()
    elif isinstance(mounts, (str, bytes)) or not isinstance(mounts, Iterable):
        raise AnsibleFilterError(f"disk_usage: expected mount facts (a dict or a list), got {type(mounts).__name__}")
    else:
        items = mounts
    result = []
    for item in items:
        if not isinstance(item, Mapping) or "mount" not in item:
            raise AnsibleFilterError(f"disk_usage: every mount needs at least a 'mount' key, got {item!r}")
        result.append(item)
    return result


def _matches(value: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(value, pattern) for pattern in patterns)


def _is_readonly(options: Any) -> bool:
    return "ro" in str(options or "").split(",")


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def disk_usage(mounts: Any, warning: Any = 80, critical: Any = 90,
               exclude_fstypes: Iterable[str] | None = None, exclude_mounts: Iterable[str] | None = None,
               include_readonly: bool = False, df: str = "") -> list[dict[str, Any]]:
    """Return usage, verdict and message for every real filesystem in mounts."""
    df_used = parse_df(df or "")
    fstypes = list(DEFAULT_EXCLUDE_FSTYPES if exclude_fstypes is None else exclude_fstypes)
    skip_mounts = list(exclude_mounts or [])
    # Validate the thresholds once, even when no filesystem is left to check.
    threshold_verdict(0, warning, critical)

    by_fs: dict[tuple[str, int], dict[str, Any]] = {}
    for info in _mount_list(mounts):
        mount = str(info["mount"])
        fstype = str(info.get("fstype", ""))
        try:
            total = int(info.get("size_total") or 0)
            available = int(info.get("size_available") or 0)
        except (TypeError, ValueError) as exc:
            raise AnsibleFilterError(f"disk_usage: sizes of {mount} are not numbers: {exc}") from exc
        if total <= 0 or _matches(fstype, fstypes) or _matches(mount, skip_mounts):
            continue
        if not include_readonly and _is_readonly(info.get("options")):
            continue
        device = str(info.get("device", ""))
        key = (device, total)
        entry = by_fs.get(key)
        if entry is None:
            by_fs[key] = {"mounts": [mount], "device": device, "fstype": fstype,
                          "size_total": total, "size_available": min(max(available, 0), total)}
        else:
            entry["mounts"].append(mount)

    result = []
    for entry in by_fs.values():
        entry["mounts"].sort(key=lambda m: (len(m), m))
        entry["mount"] = entry["mounts"][0]
        used = _used_pct(entry, df_used)
        verdict = threshold_verdict(used, warning, critical)
        entry["used_pct"] = used
        entry["verdict"] = verdict
        msg = f"disk {entry['mount']} {_pct(used)} used"
        if verdict != "ok":
            limit = float(critical if verdict == "critical" else warning)
            msg += f" ({verdict} at {limit:g}%)"
        entry["msg"] = msg
        result.append(entry)
    return sorted(result, key=lambda e: e["mount"])


def parse_df(text: str) -> dict[str, tuple[int, int]]:
    """Mount point -> (used, available) bytes from `df -P -B1` output."""
    result = {}
    for line in text.splitlines()[1:]:
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[2].isdigit() and fields[3].isdigit():
            result[fields[5]] = (int(fields[2]), int(fields[3]))
    return result


def _used_pct(entry: Mapping[str, Any], df: Mapping[str, tuple[int, int]]) -> float:
    """df's Use%: used / (used + available to unprivileged writers), the root reserve left out."""
    for mount in entry["mounts"]:
        used, avail = df.get(mount, (0, 0))
        if used + avail > 0:
            return round(100.0 * used / (used + avail), 1)
    return round(100.0 * (entry["size_total"] - entry["size_available"]) / entry["size_total"], 1)


class FilterModule:
    """Disk usage verdicts for runbook checks."""

    def filters(self) -> dict[str, Any]:
        return {"disk_usage": disk_usage}
