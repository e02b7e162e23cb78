# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: worst_verdict
short_description: The most severe of a list of verdicts
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Returns the most severe verdict of a list, in the order V(ok) < V(warning) < V(critical).
  - Items may be verdict strings or dictionaries holding the verdict under O(key), such as the findings
    that P(runbook.ops.disk_usage#filter) and P(runbook.ops.memory_usage#filter) return.
  - An empty list is V(ok). An unknown verdict is an error, never silently ignored.
options:
  _input:
    description: Verdict strings, or dictionaries with a verdict under O(key).
    type: list
    elements: raw
    required: true
  key:
    description: The key that holds the verdict in dictionary items.
    type: str
    default: verdict
seealso:
  - plugin: runbook.ops.threshold_verdict
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Verdict of a host from its findings
  ansible.builtin.debug:
    msg: "{{ [{'verdict': 'warning', 'msg': 'memory 85.0% used'}, {'verdict': 'ok'}] | runbook.ops.worst_verdict }}"
    # => warning

- name: Plain strings work too
  ansible.builtin.debug:
    msg: "{{ ['ok', 'critical', 'warning'] | runbook.ops.worst_verdict }}"
    # => critical
"""

RETURN = r"""
_value:
  description: One of V(ok), V(warning) or V(critical).
  type: str
"""

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.module_utils.verdicts import VERDICTS, worst


def worst_verdict(items: Any, key: str = "verdict") -> str:
    """Return the most severe verdict found in items."""
    if isinstance(items, (str, bytes, Mapping)) or not hasattr(items, "__iter__"):
        raise AnsibleFilterError(f"worst_verdict: expected a list, got {type(items).__name__}")
    verdicts = [item.get(key) if isinstance(item, Mapping) else item for item in items]
    for verdict in verdicts:
        if verdict not in VERDICTS:
            raise AnsibleFilterError(f"worst_verdict: unknown verdict {verdict!r} (expected ok, warning or critical)")
    return worst(verdicts)


class FilterModule:
    """Combine verdicts of runbook checks."""

    def filters(self) -> dict[str, Any]:
        return {"worst_verdict": worst_verdict}
