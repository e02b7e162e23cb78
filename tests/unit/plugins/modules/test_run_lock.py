# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.run_lock: its decisions, and its lock files on a real file system (tmp_path)."""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from ansible_collections.runbook.ops.plugins.modules import run_lock
from ansible_collections.runbook.ops.plugins.module_utils import run_lock as lock_utils
from ansible_collections.runbook.ops.plugins.module_utils.run_lock import (
    LockError, acquire, decide_acquire, decide_release, format_age, parse_record, release, taken_at,
)

HOUR = 3600.0


def _acquire(path: Path, token: str | None = None, break_after: float | None = None, check: bool = False) -> dict:
    return acquire(str(path), owner="restore.yml app@db1", user="alice", token=token, break_after=break_after,
                   check_mode=check)


def _write_lock(path: Path, *, token: str, age: float, owner: str = "restore.yml app@db1 (old)") -> None:
    since = (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat(timespec="seconds")
    path.write_text(json.dumps({"owner": owner, "user": "bob", "host": "db1", "token": token, "since": since}))


# --- the documentation is the argument spec ---------------------------------------------


def test_documentation_matches_the_argument_spec() -> None:
    documented = yaml.safe_load(run_lock.DOCUMENTATION)["options"]
    spec = run_lock.argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        for key in ("type", "default", "choices", "elements"):
            assert doc.get(key) == option.get(key), \
                f"{name}.{key}: documented {doc.get(key)!r}, spec {option.get(key)!r}"
        assert bool(doc.get("required")) == bool(option.get("required")), name
        assert bool(doc.get("no_log")) == bool(option.get("no_log")), name


def test_return_documents_every_key_a_result_has(tmp_path: Path) -> None:
    documented = set(yaml.safe_load(run_lock.RETURN))
    lock = tmp_path / "l"
    results = [_acquire(lock, check=True)]
    got = _acquire(lock)
    results += [got, _acquire(lock, token=got["token"]), release(str(lock), token=got["token"], force=False,
                                                                 check_mode=True)]
    results.append(release(str(lock), token=got["token"], force=False))
    _write_lock(lock, token="old", age=2 * HOUR)
    results.append(_acquire(lock, break_after=HOUR))
    for result in results:
        assert set(result) - {"changed"} <= documented, result


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.4, "0s"), (42, "42s"), (60, "1m"), (303, "5m 3s"), (3600, "1h"), (3725, "1h 2m"),
    (93784, "1d 2h"), (-5, "0s"),
])
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


@pytest.mark.parametrize(("data", "record"), [
    (b'{"owner": "x", "token": "t"}', {"owner": "x", "token": "t"}),
    (b"", None),
    (b'{"owner": "x", "tok', None),  # half written
    (b"[1, 2]", None),
    (b"\xff\xfe", None),
    (b"pid 4711\n", None),  # someone else's lock file
])
def test_parse_record(data: bytes, record: dict | None) -> None:
    assert parse_record(data) == record


def test_taken_at_reads_the_record_and_falls_back_to_the_mtime() -> None:
    ten = datetime(2026, 1, 31, 10, tzinfo=timezone.utc).timestamp()
    assert taken_at({"since": "2026-01-31T10:00:00+00:00"}, 5.0) == ten
    assert taken_at({"since": "2026-01-31T10:00:00"}, 5.0) == ten  # no zone: UTC
    assert taken_at({"since": "yesterday"}, 5.0) == 5.0
    assert taken_at(None, 5.0) == 5.0


@pytest.mark.parametrize(("record", "token", "age", "break_after", "decision"), [
    ({"token": "a"}, "a", 10 * HOUR, None, "reenter"),
    ({"token": "a"}, "a", 10 * HOUR, HOUR, "reenter"),  # our own lock is never stale to us
    ({"token": "a"}, "b", 10 * HOUR, None, "refuse"),  # no break_after: never broken
    ({"token": "a"}, "b", 30, HOUR, "refuse"),
    ({"token": "a"}, "b", HOUR, HOUR, "refuse"),  # stale only past it
    ({"token": "a"}, "b", HOUR + 1, HOUR, "break"),
    ({"token": "a"}, None, 30, HOUR, "refuse"),
    (None, None, 30, HOUR, "refuse"),  # unreadable: judged by its mtime
    (None, None, 2 * HOUR, HOUR, "break"),
    ({"token": ""}, "", 30, None, "refuse"),  # an empty token matches nothing
    ({"token": 5}, "5", 30, None, "refuse"),
])
def test_decide_acquire(record: dict | None, token: str | None, age: float, break_after: float | None,
                        decision: str) -> None:
    assert decide_acquire(record, token, age, break_after) == decision


@pytest.mark.parametrize(("record", "token", "force", "decision"), [
    ({"token": "a"}, "a", False, "release"),
    ({"token": "a"}, "b", False, "refuse"),
    ({"token": "a"}, None, False, "refuse"),
    ({"token": "a"}, "b", True, "release"),
    (None, "a", False, "refuse"),
    (None, None, True, "release"),
])
def test_decide_release(record: dict | None, token: str | None, force: bool, decision: str) -> None:
    assert decide_release(record, token, force) == decision


# --- lock files ----------------------------------------------------------------------------


def test_acquire_creates_a_private_json_lock(tmp_path: Path) -> None:
    lock = tmp_path / "restore.lock"
    got = _acquire(lock)
    assert got["changed"] and got["acquired"] and not got["stale"]
    assert len(got["token"]) == 32
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    record = json.loads(lock.read_text())
    assert record["token"] == got["token"]
    assert (record["owner"], record["user"]) == ("restore.yml app@db1", "alice")
    assert abs(datetime.fromisoformat(record["since"]).timestamp() - time.time()) < 60
    assert "token" not in got["holder"] and got["holder"]["owner"] == "restore.yml app@db1"


def test_the_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _acquire(tmp_path / "l")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "l").stat().st_mode) == 0o600


def test_a_second_run_is_refused_with_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    first = _acquire(lock)
    before = lock.read_bytes()
    with pytest.raises(LockError) as err:
        acquire(str(lock), owner="restore.yml app@db1 (second)", user="bob", token=None, break_after=None)
    assert str(err.value).startswith(f"{lock} is held by restore.yml app@db1 (user alice, on ")
    assert "since " in str(err.value) and "never broken" in str(err.value)
    assert err.value.result["holder"]["user"] == "alice"
    assert first["token"] not in str(err.value) + json.dumps(err.value.result["holder"])
    assert lock.read_bytes() == before


def test_the_same_token_reenters_without_a_change(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    token = _acquire(lock, token="mine")["token"]
    before = lock.read_bytes()
    again = _acquire(lock, token=token)
    assert (again["changed"], again["acquired"], again["token"]) == (False, True, "mine")
    assert lock.read_bytes() == before


def test_a_stale_lock_is_broken_and_reported(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    _write_lock(lock, token="old", age=2 * HOUR)
    got = _acquire(lock, break_after=HOUR)
    assert got["changed"] and got["acquired"] and got["stale"]
    assert got["broken"]["owner"] == "restore.yml app@db1 (old)" and got["broken"]["age_seconds"] >= 2 * HOUR - 60
    assert got["msg"].startswith("broke the stale lock of restore.yml app@db1 (old) (user bob, on db1), since ")
    assert json.loads(lock.read_text())["token"] == got["token"] != "old"


def test_a_fresh_lock_is_not_broken(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    _write_lock(lock, token="old", age=60)
    with pytest.raises(LockError, match=r"; it counts as stale after break_after=1h$"):
        _acquire(lock, break_after=HOUR)
    assert json.loads(lock.read_text())["token"] == "old"


def test_an_unreadable_lock_is_judged_by_its_mtime(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    lock.write_text("pid 4711\n")
    with pytest.raises(LockError, match="held by an unreadable lock"):
        acquire(str(lock), owner="o", user="u", token=None, break_after=HOUR)
    os.utime(lock, (time.time() - 2 * HOUR, time.time() - 2 * HOUR))
    assert acquire(str(lock), owner="o", user="u", token=None, break_after=HOUR)["stale"]


def test_release_needs_the_token_or_force(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    token = _acquire(lock)["token"]
    with pytest.raises(LockError, match="with another token: not released"):
        release(str(lock), token="other", force=False)
    assert lock.exists()
    done = release(str(lock), token=token, force=False)
    assert (done["changed"], done["released"]) == (True, True) and not lock.exists()
    again = release(str(lock), token=token, force=False)
    assert (again["changed"], again["released"]) == (False, False)
    _acquire(lock)
    assert release(str(lock), token=None, force=True)["released"] and not lock.exists()


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "l"
    would = _acquire(lock, check=True)
    assert (would["changed"], would["would_acquire"]) == (True, True) and not lock.exists()
    token = _acquire(lock)["token"]
    before = lock.read_bytes()
    assert _acquire(lock, token=token, check=True)["changed"] is False
    with pytest.raises(LockError):
        _acquire(lock, token="other", check=True)  # fails where the real run would
    assert release(str(lock), token=token, force=False, check_mode=True)["would_release"]
    assert lock.read_bytes() == before
    _write_lock(lock, token="old", age=2 * HOUR)
    stale = _acquire(lock, break_after=HOUR, check=True)
    assert (stale["changed"], stale["stale"], stale["would_acquire"]) == (True, True, True)
    assert json.loads(lock.read_text())["token"] == "old"


def test_a_breaker_late_to_a_stale_lock_leaves_the_new_one_alone(tmp_path: Path) -> None:
    """A read the stale lock, B broke it and took the lock, then A gets to remove what it read."""
    lock = tmp_path / "l"
    _write_lock(lock, token="old", age=2 * HOUR)
    seen_by_a = lock_utils.read_lock(str(lock))
    b = _acquire(lock, token="b", break_after=HOUR)
    assert b["stale"]
    assert lock_utils._unlink_if_unchanged(str(lock), seen_by_a) is False
    assert json.loads(lock.read_text())["token"] == "b"


def _contend(n: int, lock: Path, start: threading.Barrier, winners: list[str]) -> None:
    """One run: wait for the others, then try to take the lock."""
    start.wait()
    try:
        winners.append(acquire(str(lock), owner=f"run {n}", user="u", token=f"t{n}", break_after=HOUR)["token"])
    except LockError:
        pass


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_one_winner_among_concurrent_runs(tmp_path: Path, stale: bool) -> None:
    """Sixteen runs at once, on a free lock or on one stale lock: exactly one takes it, every round. Threads, not
    forked processes: O_EXCL and flock (one open file description each) exclude threads alike, and a fork from a
    pytest process that ran ansible-runner can deadlock."""
    for round_ in range(5):
        lock = tmp_path / f"l{round_}"
        if stale:
            _write_lock(lock, token="old", age=2 * HOUR)
        start = threading.Barrier(16)
        winners: list[str] = []

        runs = [threading.Thread(target=_contend, args=(n, lock, start, winners)) for n in range(16)]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=30)
        assert len(winners) == 1, winners
        assert json.loads(lock.read_text())["token"] == winners[0]
