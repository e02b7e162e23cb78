# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: supervisord_processes
short_description: The supervisord processes that the names of services stand for, with their states
version_added: 0.1.0
author: runbook.ops maintainers
description:
  - Reads the lines of C(supervisorctl status) (one process a line, C(name STATE details), for a process of a
    group C(group:name)) and returns one entry per process that O(names) stand for, in the order of O(names),
    each process once.
  - A name is a process (C(demo-app), C(demo-worker:demo-worker-0)) or a whole group (C(demo-worker:) or
    C(demo-worker:*)), which stands for every process of the group.
  - A name that stands for no process gives one entry with RV(_value[].known=false) and the state C(unknown), a
    typo that the caller refuses rather than acting on nothing.
  - Used by the service_control role, which reads C(supervisorctl status) once and decides from this what to
    stop or start.
options:
  _input:
    description: The lines of C(supervisorctl status), as C(stdout_lines) of the command. Empty lines are ignored.
    type: list
    elements: str
    required: true
  names:
    description: The services as the caller wrote them.
    type: list
    elements: str
    required: true
  running:
    description: The states in which a stop acts (C(community.general.supervisorctl) stops only those).
    type: list
    elements: str
    default: [RUNNING, STARTING]
  up:
    description: The states in which a start is done.
    type: list
    elements: str
    default: [RUNNING]
seealso:
  - plugin: runbook.ops.systemd_units
    plugin_type: filter
"""

EXAMPLES = r"""
- name: The processes of the app and of the worker group
  ansible.builtin.debug:
    msg: >-
      {{ ['demo-app  RUNNING  pid 12, uptime 0:01:02', 'demo-worker:demo-worker-0  STOPPED  Dec 01 02:00 AM']
         | runbook.ops.supervisord_processes(names=['demo-app', 'demo-worker:']) }}
    # => [{"given": "demo-app", "name": "demo-app", "state": "RUNNING", "running": true, "up": true, ...},
    #     {"given": "demo-worker:", "name": "demo-worker:demo-worker-0", "state": "STOPPED", "running": false, ...}]
"""

RETURN = r"""
_value:
  description: One entry per process, in the order of O(names).
  type: list
  elements: dict
  contains:
    given:
      description: The name as the caller wrote it (the group for a process of a group).
      type: str
    name:
      description: The process, as supervisorctl names it (C(group:name) in a group); the given name when unknown.
      type: str
    known:
      description: Whether supervisord has that process.
      type: bool
    startable:
      description: Whether it can be started (every process supervisord knows can).
      type: bool
    state:
      description: supervisord's state (C(RUNNING), C(STOPPED), C(FATAL), ...), C(unknown) when not known.
      type: str
    running:
      description: Whether its state is one of O(running).
      type: bool
    up:
      description: Whether its state is one of O(up).
      type: bool
"""

from collections.abc import Sequence
from typing import Any

from ansible.errors import AnsibleFilterError


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise AnsibleFilterError(f"supervisord_processes: {what} must be a list, got {type(value).__name__}")
    return [str(item) for item in value]


def _members(given: str, processes: list[list[str]]) -> list[list[str]]:
    """The processes a name stands for: a group (`group:` or `group:*`) all of its own, else the one so named."""
    group = given[:-2] if given.endswith(":*") else given[:-1] if given.endswith(":") else ""
    if group:
        return [p for p in processes if p[0].startswith(f"{group}:")]
    return [p for p in processes if p[0] == given]


def supervisord_processes(status_lines: Any, names: Any, running: Any = ("RUNNING", "STARTING"),
                          up: Any = ("RUNNING",)) -> list[dict[str, Any]]:
    """Return one entry per process that names stand for, in their order, each process once."""
    processes = [line.split() for line in _strings(status_lines, "the input") if line.strip()]
    running_states, up_states = _strings(running, "running"), _strings(up, "up")
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for given in _strings(names, "names"):
        members = _members(given, processes)
        if not members:
            found.append({"given": given, "name": given, "known": False, "startable": False, "state": "unknown",
                          "running": False, "up": False})
        for process in members:
            if process[0] in seen:
                continue
            seen.add(process[0])
            state = process[1] if len(process) > 1 else "UNKNOWN"
            found.append({"given": given, "name": process[0], "known": True, "startable": True, "state": state,
                          "running": state in running_states, "up": state in up_states})
    return found


class FilterModule:
    """Read the state of supervisord's processes."""

    def filters(self) -> dict[str, Any]:
        return {"supervisord_processes": supervisord_processes}
