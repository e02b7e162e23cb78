# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: threshold_verdict
short_description: Classify a measured value as ok, warning or critical
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Compares a number with a warning and a critical threshold and returns V(ok), V(warning) or V(critical).
  - By default higher is worse (usage percentages, delays, clock skew) and a value B(at or above) a threshold
    reaches it, so with thresholds 80/90 the value 80 is a warning and 90 is critical.
  - With O(higher_is_worse=false) lower is worse (days until a certificate expires, free gigabytes) and a value
    B(at or below) a threshold reaches it.
  - Fails with an error when the thresholds are in the wrong order for the chosen direction, so a swapped pair
    of role variables cannot silently turn every check green.
positional: warning, critical
options:
  _input:
    description: The measured value. Strings holding a number are accepted.
    type: float
    required: true
  warning:
    description: The warning threshold.
    type: float
    required: true
  critical:
    description: The critical threshold.
    type: float
    required: true
  higher_is_worse:
    description: V(true) when larger values are worse, V(false) when smaller values are worse.
    type: bool
    default: true
seealso:
  - plugin: runbook.ops.worst_verdict
    plugin_type: filter
  - plugin: runbook.ops.disk_usage
    plugin_type: filter
  - plugin: runbook.ops.memory_usage
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Disk usage against 80 % / 90 %
  ansible.builtin.debug:
    msg: "{{ 93.4 | runbook.ops.threshold_verdict(80, 90) }}"
    # => critical

- name: Clock skew in seconds, either direction
  ansible.builtin.debug:
    msg: "{{ (-3.2 | abs) | runbook.ops.threshold_verdict(2, 10) }}"
    # => warning

- name: Days until a certificate expires (fewer is worse)
  ansible.builtin.debug:
    msg: "{{ 21 | runbook.ops.threshold_verdict(30, 7, higher_is_worse=false) }}"
    # => warning
"""

RETURN = r"""
_value:
  description: One of V(ok), V(warning) or V(critical).
  type: str
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.module_utils.verdicts import level


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"threshold_verdict: {what} must be a number, got a boolean")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"threshold_verdict: {what} must be a number, got {value!r}") from exc


def threshold_verdict(value: Any, warning: Any, critical: Any, higher_is_worse: bool = True) -> str:
    """Return ok, warning or critical for value against the two thresholds."""
    measured = _number(value, "the input")
    warn = _number(warning, "warning")
    crit = _number(critical, "critical")
    if higher_is_worse and warn > crit:
        raise AnsibleFilterError(
            f"threshold_verdict: warning ({warn:g}) must not be above critical ({crit:g}) when higher is worse")
    if not higher_is_worse and warn < crit:
        raise AnsibleFilterError(
            f"threshold_verdict: warning ({warn:g}) must not be below critical ({crit:g}) when lower is worse")
    return level(measured, warn, crit, higher_is_worse)


class FilterModule:
    """Threshold verdicts for runbook checks."""

    def filters(self) -> dict[str, Any]:
        return {"threshold_verdict": threshold_verdict}
