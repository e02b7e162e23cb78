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

import contextlib
import errno
import fcntl
import getpass
import hmac
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds

# A creator writes its record right after O_EXCL creates the file: a reader that finds it empty waits this long.
PARTIAL_WAIT_S = 1.0
# Acquire attempts when the lock vanishes between a failed create and the read (released meanwhile).
ATTEMPTS = 5


class LockError(Exception):
    """The lock cannot be taken or released; msg for the operator, result for the return."""

    def __init__(self, msg: str, result: dict[str, Any]) -> None:
        super().__init__(msg)
        self.result = result


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


def new_record(owner: str, user: str, token: str, now: float) -> dict[str, Any]:
    """What a lock file holds."""
    since = datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds")
    return {"owner": owner, "user": user, "host": socket.gethostname(), "token": token, "since": since}


def parse_record(data: bytes) -> dict[str, Any] | None:
    """The record in a lock file's content, or None when it is not one (empty, partly written, foreign)."""
    try:
        record = json.loads(data.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
        return None
    return record if isinstance(record, dict) else None


def taken_at(record: dict[str, Any] | None, mtime: float) -> float:
    """When the lock was taken: its record's time, or the file's mtime when the record has none."""
    try:
        since = datetime.fromisoformat(str((record or {})["since"]))
    except (KeyError, ValueError):
        return mtime
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return since.timestamp()


def format_age(seconds: float) -> str:
    """1d 2h, 5m 3s, 42s: the two largest units."""
    rest = max(int(seconds), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])


def public_holder(record: dict[str, Any] | None, since_ts: float, now: float) -> dict[str, Any]:
    """The holder as returned and shown: everything but the token."""
    known = {k: (record or {}).get(k) for k in ("owner", "user", "host")}
    since = datetime.fromtimestamp(since_ts, timezone.utc).isoformat(timespec="seconds")
    return {**known, "since": since, "age_seconds": round(max(now - since_ts, 0.0), 1)}


def describe(holder: dict[str, Any], readable: bool = True) -> str:
    """One phrase naming the holder and since when."""
    if not readable:
        who = "an unreadable lock (not a runbook.ops lock record)"
    else:
        who = holder.get("owner") or "an unnamed run"
        extra = [f"user {holder['user']}" if holder.get("user") else "",
                 f"on {holder['host']}" if holder.get("host") else ""]
        if any(extra):
            who += f" ({', '.join(e for e in extra if e)})"
    return f"{who}, since {holder['since']} ({format_age(holder['age_seconds'])} ago)"


def same_token(record: dict[str, Any] | None, token: str | None) -> bool:
    held = (record or {}).get("token")
    return bool(token) and isinstance(held, str) and hmac.compare_digest(held, token)


def decide_acquire(record: dict[str, Any] | None, token: str | None, age: float, break_after: float | None) -> str:
    """For a lock that exists: reenter (held with token), break (stale) or refuse."""
    if same_token(record, token):
        return "reenter"
    if break_after is not None and age > break_after:
        return "break"
    return "refuse"


def decide_release(record: dict[str, Any] | None, token: str | None, force: bool) -> str:
    """For a lock that exists: release, or refuse (held with another token)."""
    return "release" if force or same_token(record, token) else "refuse"


def _read(path: str) -> tuple[bytes, os.stat_result] | None:
    """Content and stat of the lock file, or None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def read_lock(path: str, wait: float = PARTIAL_WAIT_S) -> tuple[dict[str, Any] | None, os.stat_result, bytes] | None:
    """(record or None when unreadable, stat, content), or None when there is no lock."""
    deadline = time.monotonic() + wait
    while True:
        found = _read(path)
        if found is None:
            return None
        data, st = found
        record = parse_record(data)
        if record is not None or time.monotonic() >= deadline:
            return record, st, data
        time.sleep(0.05)  # empty or half written: its creator is writing it now


def try_create(path: str, record: dict[str, Any]) -> bool:
    """Create the lock with O_EXCL; False when it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        data = json.dumps(record, sort_keys=True).encode("utf-8") + b"\n"
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    return True


@contextlib.contextmanager
def directory_guard(path: str) -> Iterator[None]:
    """Exclusive flock on the lock's directory: breakers and releasers go one at a time."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _unchanged(path: str, seen: tuple[dict[str, Any] | None, os.stat_result, bytes]) -> bool:
    """The lock file is still the one read before (same inode, same content)."""
    now = _read(path)
    return now is not None and now[1].st_ino == seen[1].st_ino and now[0] == seen[2]


def _unlink_if_unchanged(path: str, seen: tuple[dict[str, Any] | None, os.stat_result, bytes]) -> bool:
    """Remove the lock only if it is still the one judged; every removal happens under the guard."""
    with directory_guard(path):
        if not _unchanged(path, seen):
            return False
        os.unlink(path)
        return True


def acquire(path: str, *, owner: str, user: str, token: str | None, break_after: float | None,
            check_mode: bool = False) -> dict[str, Any]:
    """Take the lock at path; the result to return, or LockError."""
    token = token or secrets.token_hex(16)
    result: dict[str, Any] = {"changed": False, "path": path, "token": token, "stale": False, "holder": None}
    for _attempt in range(ATTEMPTS):
        now = time.time()
        record = new_record(owner, user, token, now)
        mine = public_holder(record, now, now)
        if not check_mode and try_create(path, record):
            result.update(changed=True, acquired=True, holder=mine, msg=f"acquired {path} for {owner}")
            return result
        found = read_lock(path)
        if found is None:
            if check_mode:
                result.update(changed=True, would_acquire=True, holder=mine, msg=f"would acquire {path} for {owner}")
                return result
            continue  # released between the create and the read: try again
        held, st, _data = found
        since = taken_at(held, st.st_mtime)
        holder = public_holder(held, since, now)
        who = describe(holder, held is not None)
        decision = decide_acquire(held, token, now - since, break_after)
        if decision == "reenter":
            result.update(holder=holder, msg=f"{path} is already held with this token by {who}")
            result.update({"would_acquire": False} if check_mode else {"acquired": True})
            return result
        if decision == "refuse":
            result["holder"] = holder
            rule = (f"it counts as stale after break_after={format_age(break_after)}" if break_after is not None
                    else "no break_after is given, so it is never broken: once you know no run holds it, remove it "
                         "with state=absent force=true")
            raise LockError(f"{path} is held by {who}; {rule}", result)
        stale = f"the stale lock of {who} (older than break_after={format_age(break_after or 0)})"
        result.update(stale=True, broken=holder)
        if check_mode:
            result.update(changed=True, would_acquire=True, holder=mine, msg=f"would break {stale} and acquire {path}")
            return result
        if _unlink_if_unchanged(path, found) and try_create(path, record):
            result.update(changed=True, acquired=True, holder=mine,
                          msg=f"broke {stale} and acquired {path} for {owner}")
            return result
        # another run broke it or took it first: judge the lock found now
        result["stale"] = False
        del result["broken"]
    raise LockError(f"{path} kept changing while it was read ({ATTEMPTS} attempts): try again", result)


def release(path: str, *, token: str | None, force: bool, check_mode: bool = False) -> dict[str, Any]:
    """Remove the lock at path when held with token (or force); the result to return, or LockError."""
    result: dict[str, Any] = {"changed": False, "path": path, "token": token, "holder": None}
    found = read_lock(path)
    if found is None:
        result.update({"would_release": False} if check_mode else {"released": False})
        result["msg"] = f"{path} is not held: nothing to release"
        return result
    held, st, _data = found
    holder = public_holder(held, taken_at(held, st.st_mtime), time.time())
    who = describe(holder, held is not None)
    result["holder"] = holder
    if decide_release(held, token, force) == "refuse":
        raise LockError(f"{path} is held by {who} with another token: not released (force=true removes it anyway)",
                        result)
    if check_mode:
        result.update(changed=True, would_release=True, msg=f"would release {path} held by {who}")
        return result
    if not _unlink_if_unchanged(path, found):
        raise LockError(f"{path} changed while it was being released (taken again meanwhile): not released", result)
    result.update(changed=True, released=True, msg=f"released {path} held by {who}")
    return result


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return str(os.getuid())


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
                break_after = to_seconds(p["break_after"]) if p["break_after"] is not None else None
            except ValueError as err:
                module.fail_json(msg=f"break_after: {err}", **base)
            if break_after is not None and break_after <= 0:
                module.fail_json(msg=f"break_after must be more than 0, got {p['break_after']!r}", **base)
            result = acquire(path, owner=p["owner"], user=p["user"] or _current_user(), token=p["token"],
                             break_after=break_after, check_mode=module.check_mode)
        else:
            if not p["token"] and not p["force"]:
                module.fail_json(msg="state=absent needs the token returned when the lock was taken (or force=true)",
                                 **base)
            result = release(path, token=p["token"], force=p["force"], check_mode=module.check_mode)
    except LockError as err:
        module.fail_json(msg=str(err), **err.result)
    except OSError as err:
        module.fail_json(msg=f"{path}: {os.strerror(err.errno) if err.errno else err}"
                         + (" (permission denied: run as the lock's owner or with become)"
                            if err.errno in (errno.EACCES, errno.EPERM) else ""), **base)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
