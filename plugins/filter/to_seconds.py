# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filter: a duration as operators write it ("30s", "5m", "2h", 300) in seconds."""
from __future__ import annotations

DOCUMENTATION = r"""
name: to_seconds
short_description: A duration such as C(30s), C(5m), C(2h) or C(1h30m) in seconds
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Converts a duration to a number of seconds, so that runbook variables accept what operators write
    (C(kill_queries_active_max_age=5m)) as well as plain seconds.
  - Units are C(ms), C(s), C(m), C(h), C(d) and C(w), and parts add up (C(1h30m)). A bare number is seconds.
  - Anything else fails with a message that shows the accepted forms.
options:
  _input:
    description: The duration.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Five minutes
  ansible.builtin.debug:
    msg: "{{ '5m' | runbook.ops.to_seconds }}"   # => 300.0

- name: Seconds stay seconds
  ansible.builtin.debug:
    msg: "{{ 600 | runbook.ops.to_seconds }}"    # => 600.0
"""

RETURN = r"""
_value:
  description: The duration in seconds.
  type: float
"""

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds as _to_seconds


def to_seconds(value: Any) -> float:
    try:
        return _to_seconds(value)
    except ValueError as err:
        raise AnsibleFilterError(f"to_seconds: {err}") from err


class FilterModule:
    """Duration parsing for runbook variables."""

    def filters(self) -> dict[str, Any]:
        return {"to_seconds": to_seconds}
