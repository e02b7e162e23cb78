# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: systemd_units
short_description: The state of each systemd unit, from one C(systemctl show) call
version_added: 0.2.0
author: runbook.ops maintainers
description:
  - Reads the output of C(systemctl show --all --property=Id,LoadState,ActiveState,SubState -- <names>), which
    prints one block of C(key=value) lines per name given, in that order, then one block per loaded unit a
    pattern (a glob on the instances of one template, such as C(demo-worker@*)) matched. Blocks are parted by
    a blank line.
  - Returns whether the output is an answer to the names (RV(_value.answered)) and, when it is, one record per
    unit (RV(_value.units)), in the order of O(names).
  - The output is an answer when C(systemctl) exited 0 and the output holds exactly one block per name (with
    patterns, at least one per name that is not a pattern, and every unit after those blocks is an instance of
    the template of a pattern, C(<template>@)).
  - A name gives its own block, even when systemd does not know it (RV(_value.units[].known) false).
  - A pattern gives the instances of its template that C(systemctl) matched, numeric instances in numeric order
    (C(demo-worker@2) before C(demo-worker@10)), the others by name regardless of case. All of them come under
    the first pattern of that template (C(demo-worker@*) and C(demo-worker@web-*) both give every instance of
    C(demo-worker@) to the first one); the later patterns of the same template give none.
  - Of the instances a pattern matched, only those that are running (O(running)) or whose C(LoadState) is
    C(loaded) are kept, since an instance systemd merely remembers (C(not-found), C(masked)) is nothing to act on.
  - Each unit comes once, under the first name or pattern that gives it.
options:
  _input:
    description: What C(systemctl show) printed on its standard output.
    type: str
    required: true
  rc:
    description: The exit code of C(systemctl show). Anything but V(0) is no answer, and the output is not read.
    type: raw
    required: true
  names:
    description: The names as the caller wrote them, patterns included, in the order they were given to
      C(systemctl show).
    type: list
    elements: str
    required: true
  patterns:
    description: The names in O(names) that are patterns (C(demo-worker@*), C(demo-worker@web-*)).
    type: list
    elements: str
    default: []
  running:
    description: The C(ActiveState) values in which a unit counts as running (a stop acts on it).
    type: list
    elements: str
    required: true
  up:
    description: The C(ActiveState) values in which a start is done.
    type: list
    elements: str
    required: true
seealso:
  - module: ansible.builtin.systemd_service
  - plugin: runbook.ops.supervisord_processes
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Read the state of the units
  ansible.builtin.command:
    argv: [systemctl, show, --all, '--property=Id,LoadState,ActiveState,SubState', --, demo-app, demo-worker@*.service]
  register: show
  changed_when: false

- name: One record per unit (demo-app, then each instance of demo-worker@)
  ansible.builtin.set_fact:
    units: >-
      {{ (show.stdout | runbook.ops.systemd_units(rc=show.rc, names=['demo-app', 'demo-worker@*'],
                                                  patterns=['demo-worker@*'], running=['active', 'activating'],
                                                  up=['active'])).units }}
    # => [{'given': 'demo-app', 'name': 'demo-app', 'unit': 'demo-app.service', 'known': true, 'startable': true,
    #      'state': 'active (running)', 'running': true, 'up': true},
    #     {'given': 'demo-worker@*', 'name': 'demo-worker@1', 'unit': 'demo-worker@1.service', ...}]
"""

RETURN = r"""
_value:
  description: Whether the output answers the names, and the units it names.
  type: dict
  contains:
    answered:
      description: C(systemctl) exited 0 and printed one block per name, then only instances of the patterns'
        templates.
      type: bool
    units:
      description: One record per unit, in the order of O(names); empty when not RV(_value.answered).
      type: list
      elements: dict
      contains:
        given:
          description: The name or pattern in O(names) that gave the unit.
          type: str
        name:
          description: What to give the service module; the name as given, or for a pattern the unit's C(Id)
            without C(.service).
          type: str
        unit:
          description: The unit's C(Id) (the name as given when its block has none).
          type: str
        known:
          description: Systemd knows the unit (C(LoadState) is neither empty nor C(not-found)).
          type: bool
        startable:
          description: The unit can be started, its C(LoadState) is C(loaded) (not C(masked), C(not-found),
            C(bad-setting) or C(error)).
          type: bool
        state:
          description: The C(ActiveState), the C(SubState) in brackets, then the C(LoadState) when it is not
            C(loaded), such as V(active (running\)) or V(inactive (dead\), masked).
          type: str
        running:
          description: The C(ActiveState) is one of O(running).
          type: bool
        up:
          description: The C(ActiveState) is one of O(up).
          type: bool
"""

import re
from typing import Any

from ansible.errors import AnsibleFilterError

_NUMBER = re.compile(r"[0-9]+")


def _names(value: Any, what: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AnsibleFilterError(f"systemd_units: {what} must be a list of strings, got {value!r}")
    return list(value)


def _blocks(output: str) -> list[dict[str, str]]:
    """The properties of each block, in order; a line without '=' holds none."""
    return [{key: value for key, _sep, value in (line.partition("=") for line in block.splitlines()) if _sep}
            for block in (part.strip() for part in output.split("\n\n")) if block]


def _template(pattern: str) -> str:
    """demo-worker@web-* -> demo-worker@"""
    return re.sub("@.*$", "@", pattern)


def _instance_key(unit_id: str, template: str) -> str:
    """The sort key of an instance: numbers zero-padded, so that @2 comes before @10."""
    instance = unit_id[len(template):].removesuffix(".service")
    return f"{int(instance):012d}" if _NUMBER.fullmatch(instance) else instance


def systemd_units(output: Any, *, rc: Any, names: Any, patterns: Any = (), running: Any,
                  up: Any) -> dict[str, Any]:
    """Whether output answers names, and one record per unit it names (none when it does not answer)."""
    names = _names(names, "names")
    patterns = _names(patterns, "patterns")
    running = _names(running, "running")
    up = _names(up, "up")
    # what a failed call printed is no answer, whatever it looks like
    if rc != 0:
        return {"answered": False, "units": []}
    if not isinstance(output, str):
        raise AnsibleFilterError(f"systemd_units: the input must be the output of systemctl show, got "
                                 f"{type(output).__name__}")

    blocks = _blocks(output)
    plain = [name for name in names if name not in patterns]
    # systemctl prints the names' blocks first, then the units the patterns matched
    matched = blocks[len(plain):]
    templates = [_template(pattern) for pattern in patterns]
    if not patterns:
        answered = len(blocks) == len(plain)
    else:
        for block in matched:
            if "Id" not in block:
                raise AnsibleFilterError(f"systemd_units: a unit a pattern matched has no Id: {block!r}")
        answered = len(blocks) >= len(plain) and all(block["Id"].startswith(tuple(templates)) for block in matched)
    if not answered:
        return {"answered": False, "units": []}

    units: list[dict[str, Any]] = []
    seen: set[str] = set()
    next_block = 0
    for given in names:
        pattern = given in patterns
        if pattern:
            template = _template(given)
            hits: list[dict[str, str]] = []
            # every instance of a template under the first pattern of it: the others would match them again
            if templates.index(template) == patterns.index(given):
                keyed = [(_instance_key(block["Id"], template).lower(), block)
                         for block in matched if block["Id"].startswith(template)]
                # case-insensitive; equal keys keep systemctl's order
                hits = [block for _key, block in sorted(keyed, key=lambda pair: pair[0])]
        else:
            hits = [blocks[next_block]]
            next_block += 1
        for block in hits:
            unit = block.get("Id", given)
            load = block.get("LoadState", "")
            active = block.get("ActiveState", "unknown")
            is_running = active in running
            # a pattern names what systemd can act on: no unit of it that is neither running nor loaded
            if unit in seen or (pattern and not is_running and load != "loaded"):
                continue
            seen.add(unit)
            units.append({
                "given": given,
                "name": unit.removesuffix(".service") if pattern else given,
                "unit": unit,
                "known": load not in ("", "not-found"),
                "startable": load == "loaded",
                "state": f"{active} ({block.get('SubState', '')})" + (f", {load}" if load != "loaded" else ""),
                "running": is_running,
                "up": active in up,
            })
    return {"answered": True, "units": units}


class FilterModule:
    """Read the state of systemd units."""

    def filters(self) -> dict[str, Any]:
        return {"systemd_units": systemd_units}
