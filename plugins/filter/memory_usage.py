# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: memory_usage
short_description: Memory usage and verdict from the text of /proc/meminfo
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Parses the content of C(/proc/meminfo) (for example read with M(ansible.builtin.slurp) and decoded with
    C(b64decode)) and returns the memory in use, a verdict against the thresholds and a one-line message.
  - Memory in use is V(MemTotal - MemAvailable), the memory the kernel could not hand to a new process without
    swapping; page cache that can be dropped counts as free. This is the C(available) column of C(free).
    Kernels older than 3.14 have no C(MemAvailable); then V(MemFree + Buffers + Cached) stands in for it.
  - The percentage is rounded to one decimal and the verdict compares the rounded value, as
    P(runbook.ops.threshold_verdict#filter) does.
positional: warning, critical
options:
  _input:
    description: The text of C(/proc/meminfo).
    type: str
    required: true
  warning:
    description: Usage percentage at or above which memory is a warning.
    type: float
    default: 80
  critical:
    description: Usage percentage at or above which memory is critical.
    type: float
    default: 90
seealso:
  - plugin: runbook.ops.threshold_verdict
    plugin_type: filter
  - plugin: runbook.ops.disk_usage
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read /proc/meminfo
  ansible.builtin.slurp:
    src: /proc/meminfo
  register: meminfo

- name: Memory verdict
  ansible.builtin.debug:
    msg: "{{ (meminfo.content | b64decode | runbook.ops.memory_usage(80, 90)).msg }}"
    # => memory 85.2% used (warning at 80%)
"""

RETURN = r"""
_value:
  description: Memory usage of the host.
  type: dict
  contains:
    total_mb:
      description: MemTotal in MiB.
      type: int
    available_mb:
      description: MemAvailable (or its estimate) in MiB.
      type: int
    used_pct:
      description: Percentage in use, one decimal.
      type: float
      sample: 85.2
    verdict:
      description: V(ok), V(warning) or V(critical).
      type: str
    msg:
      description: One line for reports, with the threshold reached when the verdict is not V(ok).
      type: str
      sample: memory 85.2% used (warning at 80%)
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.threshold_verdict import threshold_verdict


def _parse(text: str) -> dict[str, int]:
    """Values of /proc/meminfo in KiB, keyed by field name."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts:
            continue
        try:
            fields[name.strip()] = int(parts[0])
        except ValueError:
            continue
    return fields


def memory_usage(meminfo: Any, warning: Any = 80, critical: Any = 90) -> dict[str, Any]:
    """Return memory usage, verdict and message from the text of /proc/meminfo."""
    if not isinstance(meminfo, str):
        raise AnsibleFilterError(f"memory_usage: expected the text of /proc/meminfo, got {type(meminfo).__name__}")
    threshold_verdict(0, warning, critical)
    fields = _parse(meminfo)
    total = fields.get("MemTotal", 0)
    if total <= 0:
        raise AnsibleFilterError("memory_usage: no MemTotal in the input; is it the text of /proc/meminfo?")
    if "MemAvailable" in fields:
        available = fields["MemAvailable"]
    else:
        available = fields.get("MemFree", 0) + fields.get("Buffers", 0) + fields.get("Cached", 0)
    available = min(max(available, 0), total)
    used = round(100.0 * (total - available) / total, 1)
    verdict = threshold_verdict(used, warning, critical)
    msg = f"memory {used:.1f}% used"
    if verdict != "ok":
        limit = float(critical if verdict == "critical" else warning)
        msg += f" ({verdict} at {limit:g}%)"
    return {"total_mb": total // 1024, "available_mb": available // 1024, "used_pct": used,
            "verdict": verdict, "msg": msg}


class FilterModule:
    """Memory usage verdicts for runbook checks."""

    def filters(self) -> dict[str, Any]:
        return {"memory_usage": memory_usage}
