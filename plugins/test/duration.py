# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test: whether a value is a duration the runbook.ops.to_seconds filter accepts."""
from __future__ import annotations

DOCUMENTATION = r"""
name: duration
short_description: Whether a value is a duration such as C(30s), C(5m) or C(300)
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - True when the runbook.ops.to_seconds filter accepts the value - seconds (a non-negative number), or a number
    with C(ms), C(s), C(m), C(h), C(d) or C(w), parts adding up (C(1h30m)) - so that a role can validate its
    duration variables with a message that names the variable instead of failing inside a template.
options:
  _input:
    description: The value to test.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Guard a duration variable
  ansible.builtin.assert:
    that: kill_queries_active_max_age is runbook.ops.duration
    fail_msg: "kill_queries_active_max_age: not a duration: '{{ kill_queries_active_max_age }}'"
"""

RETURN = r"""
_value:
  description: Whether the value is a duration.
  type: bool
"""

from typing import Any, Callable

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds


def duration(value: Any) -> bool:
    try:
        to_seconds(value)
    except (ValueError, TypeError):
        return False
    return True


class TestModule:
    """Duration validation for runbook variables."""

    def tests(self) -> dict[str, Callable[[Any], bool]]:
        return {"duration": duration}
