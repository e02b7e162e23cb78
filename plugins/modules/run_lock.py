#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An exclusive lock file, so that two runs of one procedure on one target never overlap."""
from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: Take or release an exclusive lock file so that two runs never overlap
version_added: 0.1.0
author: runbook.ops maintainers (@runbook-ops)
description:
  - Takes (O(state=present)) or releases (O(state=absent)) a lock file, so that two runs of one procedure on one
    target (two restores of one database, a restart during a deploy) can never run at once.
  - The lock is taken by creating O(path) with C(O_CREAT|O_EXCL) (mode C(0600)), which only one process can do.
    The file holds JSON - the holder's O(owner) text, O(user), the host, a random token and the time it was taken.
  - When the lock is already taken, the module fails with a message naming the holder and since when, unless
    the holder's token is O(token) (the same run taking it again - nothing changes), or the lock is older than
    O(break_after) (a stale lock, left by a run that died - it is broken, and reported in RV(broken)).
  - O(state=absent) removes the lock only when it is held with O(token), or with O(force=true).
  - A stale lock is broken, and a lock released, under an exclusive C(flock) on the lock's directory after the
    file is read again, so two runs that find the same stale lock cannot both take it, and a release never
    removes a lock taken meanwhile by another run.
  - In check mode the module reads the lock, changes nothing, and returns RV(would_acquire) or RV(would_release);
    it fails where the real run would (a lock held by another run).
options:
  path:
    description:
      - The lock file. Its directory must exist; a local file system (C(/run/lock), C(/var/lock)) keeps
        C(O_EXCL) and C(flock) exclusive.
      - Put it where every run that must exclude the others looks - on the target host for one target, or on
        the controller (C(delegate_to) V(localhost)) for a procedure that spans hosts.
    type: path
    required: true
  state:
    description: V(present) takes the lock, V(absent) releases it.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - Who takes the lock, written into it and shown to a run that finds it taken, e.g. the playbook and its
        target (V(restore.yml app@db1)). Required with O(state=present).
    type: str
  user:
    description:
      - The person or account behind the run, written into the lock, e.g. the user running the playbook on the
        controller (see EXAMPLES). Unset means the account the module runs as.
    type: str
  token:
    description:
      - O(state=present) - the token the lock is held with. When the lock is already held with this token, the
        module succeeds and changes nothing (the same run taking it twice). Unset means a new random token,
        returned in RV(token).
      - O(state=absent) - the token the lock was taken with (RV(token) of the O(state=present) call). Required unless
        O(force=true).
    type: str
  break_after:
    description:
      - O(state=present) - a lock taken longer ago than this duration (seconds, or V(30m), V(2h), V(1d)) is
        stale and is broken. Unset means a lock is never broken; remove it with O(state=absent) and
        O(force=true) once you know that no run holds it.
      - Pick it well above the longest run, since a run that takes longer than this loses its lock.
    type: raw
  force:
    description: O(state=absent) - remove the lock whatever token it is held with.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the lock for real, creates and removes nothing; returns whether it would acquire or release.
  diff_mode:
    support: none
    description: The lock is taken or not; RV(holder) shows its content.
notes:
  - The token is not a secret (the lock file holds it, readable by the file's owner); it tells one run from another.
  - A run that dies leaves its lock; the next run fails naming it until O(break_after) has passed or someone
    removes it with O(force=true).
seealso:
  - name: open(2), O_EXCL
    description: Exclusive creation of a file.
    link: https://man7.org/linux/man-pages/man2/open.2.html
"""

EXAMPLES = r"""
- name: Take the restore lock of this database (fails naming the holder when another restore runs)
  runbook.ops.run_lock:
    path: /run/lock/runbook-restore-app.lock
    owner: "restore.yml app@{{ inventory_hostname }}"
    user: "{{ lookup('ansible.builtin.env', 'USER') }}"
    break_after: 6h
  register: restore_lock

- name: Restore, then release the lock whatever happened
  block:
    - name: Restore
      ansible.builtin.debug:
        msg: restoring
  always:
    - name: Release the restore lock
      runbook.ops.run_lock:
        path: /run/lock/runbook-restore-app.lock
        state: absent
        token: "{{ restore_lock.token }}"

- name: Remove a lock left by a run that died, once you know none runs
  runbook.ops.run_lock:
    path: /run/lock/runbook-restore-app.lock
    state: absent
    force: true
"""

RETURN = r"""
token:
  description:
    - The token the lock is held with - O(token), or the new one. Pass it to O(state=absent) to release the lock.
    - With O(state=absent), the O(token) given.
  returned: always
  type: str
  sample: 3f0c2a9d6b8e4f1a9c7d5e3b1a0f2e4d
path:
  description: The lock file.
  returned: always
  type: str
  sample: /run/lock/runbook-restore-app.lock
acquired:
  description: The lock is now held with RV(token) (taken by this call, or already held with it).
  returned: O(state=present), not in check mode
  type: bool
  sample: true
released:
  description: This call removed the lock.
  returned: O(state=absent), not in check mode
  type: bool
  sample: true
stale:
  description: The lock found was older than O(break_after) and was (or, in check mode, would be) broken.
  returned: O(state=present)
  type: bool
  sample: false
broken:
  description: The holder of the stale lock that was (or would be) broken, as in RV(holder).
  returned: when RV(stale) is true
  type: dict
  sample: {"owner": "restore.yml app@db1", "user": "alice", "host": "db1", "since": "2026-01-31T10:02:03+00:00"}
holder:
  description:
    - The lock's holder, without its token - after a successful O(state=present), this call's; when the lock is
      held by another run (the failure), that run's; with O(state=absent), the holder of the lock removed (or
      that would be).
    - Null when there is no lock.
  returned: always
  type: dict
  contains:
    owner:
      description: The O(owner) text of the run that took it.
      type: str
      sample: restore.yml app@db1
    user:
      description: The O(user) of that run.
      type: str
      sample: alice
    host:
      description: The host the module ran on when the lock was taken.
      type: str
      sample: db1
    since:
      description: When it was taken (ISO 8601, UTC).
      type: str
      sample: "2026-01-31T10:02:03+00:00"
    age_seconds:
      description: Seconds since then.
      type: float
      sample: 754.2
would_acquire:
  description: Check mode - the real run would take the lock (it is free, or stale).
  returned: check mode with O(state=present)
  type: bool
  sample: true
would_release:
  description: Check mode - the real run would remove the lock.
  returned: check mode with O(state=absent)
  type: bool
  sample: true
msg:
  description: One line saying what was (or would be) done.
  returned: always
  type: str
  sample: acquired /run/lock/runbook-restore-app.lock for restore.yml app@db1
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.run_lock import (
    LockError, acquire, break_after_seconds, current_user, os_error_message, release,
)


def argument_spec() -> dict[str, Any]:
    return {
        "path": {"type": "path", "required": True},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "owner": {"type": "str"},
        "user": {"type": "str"},
        # not a secret, and no_log would mask the returned token
        "token": {"type": "str", "no_log": False},
        "break_after": {"type": "raw"},
        "force": {"type": "bool", "default": False},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[("state", "present", ("owner",))])
    p = module.params
    path = p["path"]
    base = {"changed": False, "path": path, "token": p["token"], "holder": None}
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        module.fail_json(msg=f"the directory of {path} does not exist", **base)
    try:
        if p["state"] == "present":
            try:
                break_after = break_after_seconds(p["break_after"])
            except ValueError as err:
                module.fail_json(msg=f"break_after: {err}", **base)
            result = acquire(path, owner=p["owner"], user=p["user"] or current_user(), token=p["token"],
                             break_after=break_after, check_mode=module.check_mode)
        else:
            if not p["token"] and not p["force"]:
                module.fail_json(msg="state=absent needs the token returned when the lock was taken (or force=true)",
                                 **base)
            result = release(path, token=p["token"], force=p["force"], check_mode=module.check_mode)
    except LockError as err:
        module.fail_json(msg=str(err), **err.result)
    except OSError as err:
        module.fail_json(msg=os_error_message(path, err), **base)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
