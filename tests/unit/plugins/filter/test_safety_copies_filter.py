# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.safety_copies: which safety copies drop_safety_copies.yml keeps, aged from when they were made."""
from __future__ import annotations

import json
from calendar import timegm
from datetime import datetime, timezone
from time import strptime
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.safety_copies import safety_copies

PREFIX = "app_pre_restore_"
NOW = float(timegm(strptime("2026-12-10T12:00:00Z", "%Y-%m-%dT%H:%M:%SZ")))
DAY = 86400


def row(backup_id: str, oid: int) -> dict[str, Any]:
    return {"datname": PREFIX + backup_id, "oid": oid, "size_bytes": 1000}


def ledger(*entries: tuple[str, int, str]) -> str:
    """The swap record's text with these (backup id, oid, swapped_at) safety copies."""
    return json.dumps({"version": 1, "safety_copies": {
        PREFIX + bid: {"oid": oid, "swapped_at": at, "backup_id": bid} for bid, oid, at in entries}})


def plan(rows: list[dict[str, Any]], text: str = "", **over: Any) -> dict[str, dict[str, Any]]:
    out = safety_copies(rows, PREFIX, ledger=text, now=NOW, **over)
    return {c["name"]: c for c in out["copies"]}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def dropped(found: dict[str, dict[str, Any]]) -> set[str]:
    return {name for name, c in found.items() if c["drop"]}


def test_a_restore_of_an_older_backup_makes_the_newest_copy_whatever_its_id() -> None:
    # day 1: backup X (of day 0) restored; day 8: X was bad, the older W (of day -20) restored
    rows = [row("20261201T020000Z", 11), row("20261111T020000Z", 12)]
    text = ledger(("20261201T020000Z", 11, "2026-12-02T09:00:00+00:00"),
                  ("20261111T020000Z", 12, "2026-12-09T09:00:00+00:00"))
    found = plan(rows, text, keep=1, min_age="7d")
    # the copy of W holds the writes of days 1 to 8: kept (newest, and young); X's copy is 8 days old
    assert dropped(found) == {PREFIX + "20261201T020000Z"}
    kept = found[PREFIX + "20261111T020000Z"]
    assert kept["made_at"] == "2026-12-09T09:00:00Z" and kept["age_s"] == DAY + 3 * 3600
    assert kept["why"] == ["one of the newest 1", "younger than 7d"]
    assert found[PREFIX + "20261201T020000Z"]["why"] == ["older than 7d and not one of the newest 1"]
    # newest first, by when they were made
    assert list(found) == [PREFIX + "20261111T020000Z", PREFIX + "20261201T020000Z"]


def test_a_copy_without_a_recorded_time_is_kept_and_says_why() -> None:
    rows = [row("20200101T000000Z", 5), row("20200102T000000Z", 6)]
    # no record at all; then one whose entry has another oid (the name was reused)
    for text in ("", ledger(("20200101T000000Z", 99, "2020-01-01T01:00:00+00:00")), "{not json"):
        found = plan(rows, text, keep=0, min_age="0")
        assert dropped(found) == set()
        assert all(c["made_at"] is None and c["age_s"] is None for c in found.values())
        assert all(c["why"] == ["the restore's record has no time for when it became a safety copy"]
                   for c in found.values())


def test_while_a_restore_holds_its_lock_nothing_is_dropped() -> None:
    rows = [row("20200101T000000Z", 5)]
    text = ledger(("20200101T000000Z", 5, "2020-01-02T00:00:00+00:00"))
    assert dropped(plan(rows, text, keep=0, min_age="0")) == {PREFIX + "20200101T000000Z"}
    found = plan(rows, text, keep=0, min_age="0", locked="/var/backups/postgresql/app/.restore.lock")
    assert dropped(found) == set()
    assert found[PREFIX + "20200101T000000Z"]["why"] == [
        "a restore of this database holds its lock /var/backups/postgresql/app/.restore.lock"]


@pytest.mark.parametrize(("keep", "min_age", "expected"), [
    (1, "7d", {"c", "d"}),  # the newest (a) is kept, b is young
    (0, "7d", {"c", "d"}),
    (2, "0", {"c", "d"}),
    (0, "0", {"a", "b", "c", "d"}),
    (4, "0", set()),
    (0, "400d", set()),
])
def test_keep_the_newest_and_the_young(keep: int, min_age: str, expected: set[str]) -> None:
    ids = {"a": "20250101T000000Z", "b": "20260101T000000Z", "c": "20260601T000000Z", "d": "20260601T000000Z-2"}
    made = {"a": NOW - 1 * DAY, "b": NOW - 3 * DAY, "c": NOW - 30 * DAY, "d": NOW - 300 * DAY}
    rows = [row(bid, n) for n, bid in enumerate(ids.values())]
    text = ledger(*((bid, n, _iso(made[key])) for n, (key, bid) in enumerate(ids.items())))
    found = plan(rows, text, keep=keep, min_age=min_age)
    assert dropped(found) == {PREFIX + ids[k] for k in expected}


@pytest.mark.parametrize(("rest", "why"), [
    ("notanid", "the rest of the name is no backup id"),
    ("20200101T000000Z_x", "the rest of the name is no backup id"),
    ("20200101T000000Z\n", "the rest of the name is no backup id"),
    ("20200101T000000Z-", "the rest of the name is no backup id"),
    ("", "the rest of the name is no backup id"),
    ("20201301T000000Z", "its id 20201301T000000Z is not a time"),
    ("20210229T000000Z", "its id 20210229T000000Z is not a time"),
    ("20200101T250000Z", "its id 20200101T250000Z is not a time"),
])
def test_look_alikes_are_left_alone(rest: str, why: str) -> None:
    out = safety_copies([{"datname": PREFIX + rest, "oid": 1, "size_bytes": 0}], PREFIX,
                        ledger=ledger((rest, 1, "2020-01-01T00:00:00+00:00")), keep=0, min_age="0", now=NOW)
    assert out == {"copies": [], "others": [{"name": PREFIX + rest, "why": why}]}


def test_29_february_of_a_leap_year_is_a_time() -> None:
    found = plan([row("20240229T000000Z", 1)])
    assert found[PREFIX + "20240229T000000Z"]["backup_time"] == "2024-02-29T00:00:00Z"


@pytest.mark.parametrize(("args", "message"), [
    (("not a list", PREFIX), "the input must be a list"),
    (([], ""), "prefix must not be empty"),
    (([], PREFIX, "", "x"), "keep must be a number"),
    (([], PREFIX, "", 1, "soon"), "min_age a duration"),
])
def test_bad_arguments_fail_clearly(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        safety_copies(*args)
