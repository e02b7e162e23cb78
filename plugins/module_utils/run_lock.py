# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An exclusive lock file (O_CREAT|O_EXCL), shared by run_lock and the modules that take a lock in the same call
as their guards (pg_restore): the record it holds, taking, breaking a stale one and releasing it."""
from __future__ import annotations

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


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return str(os.getuid())


def break_after_seconds(value: Any) -> float | None:
    """The break_after option in seconds (None: never broken); ValueError when it is not a duration above 0."""
    if value is None:
        return None
    seconds = to_seconds(value)
    if seconds <= 0:
        raise ValueError(f"must be more than 0, got {value!r}")
    return seconds


def os_error_message(path: str, err: OSError) -> str:
    """One line for an OSError on the lock file, with the fix for a permission problem."""
    return (f"{path}: {os.strerror(err.errno) if err.errno else err}"
            + (" (permission denied: run as the lock's owner or with become)"
               if err.errno in (errno.EACCES, errno.EPERM) else ""))
