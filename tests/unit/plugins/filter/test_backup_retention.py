# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Retention selection: made-up backups around day, ISO week, month and year boundaries."""
from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.backup_retention import FilterModule, backup_retention
from ansible_collections.runbook.ops.plugins.module_utils.backup_retention import (
    parse_timestamp, select, week_key,
)

UTC = dt.timezone.utc


def rec(created_at: str, verified: bool = True, ident: str | None = None, **extra: Any) -> dict[str, Any]:
    """A backup record; a verified one was verified 20 minutes after it was created."""
    verified_at = None
    if verified:
        verified_at = (parse_timestamp(created_at) + dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": ident or f"b-{created_at}", "created_at": created_at, "verified_at": verified_at, **extra}


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


def daily_backups(first: dt.date, last: dt.date) -> list[dict[str, Any]]:
    out, day = [], first
    while day <= last:
        out.append(rec(f"{day}T02:00:00Z", ident=f"b-{day}"))
        day += dt.timedelta(days=1)
    return out


# --- the defaults on a year of nightly backups ---------------------------------------------------


def test_defaults_on_eleven_months_of_nightly_backups() -> None:
    result = backup_retention(daily_backups(dt.date(2026, 1, 1), dt.date(2026, 11, 30)))
    assert {r["id"]: result["reasons"][r["id"]] for r in result["keep"]} == {
        "b-2026-11-30": ["daily 2026-11-30", "weekly 2026-W49", "monthly 2026-11", "newest verified"],
        "b-2026-11-29": ["daily 2026-11-29", "weekly 2026-W48"],  # Sunday: the newest of its ISO week
        "b-2026-11-28": ["daily 2026-11-28"],
        "b-2026-11-27": ["daily 2026-11-27"],
        "b-2026-11-26": ["daily 2026-11-26"],
        "b-2026-11-25": ["daily 2026-11-25"],
        "b-2026-11-24": ["daily 2026-11-24"],
        "b-2026-11-22": ["weekly 2026-W47"],
        "b-2026-11-15": ["weekly 2026-W46"],
        "b-2026-10-31": ["monthly 2026-10"],
        "b-2026-09-30": ["monthly 2026-09"],
        "b-2026-08-31": ["monthly 2026-08"],
        "b-2026-07-31": ["monthly 2026-07"],
        "b-2026-06-30": ["monthly 2026-06"],
    }
    assert len(result["delete"]) == 334 - 14
    assert ids(result["delete"])[:2] == ["b-2026-11-23", "b-2026-11-21"]  # newest first
    assert result["reasons"]["b-2026-01-01"] == ["in no retention slot of 7 daily, 4 weekly, 6 monthly"]
    assert result["newest_verified"] == "b-2026-11-30"
    assert result["summary"] == "keep 14, delete 320 of 334 backups; retention 7 daily, 4 weekly, 6 monthly"
    assert set(result["reasons"]) == {r["id"] for r in result["keep"] + result["delete"]}


def test_the_input_order_does_not_matter() -> None:
    backups = daily_backups(dt.date(2026, 10, 1), dt.date(2026, 11, 30))
    backups += [rec("2026-11-30T14:00:00Z", verified=False), rec("2026-11-30T09:00:00Z")]
    expected = select(backups, 3, 2, 2)
    for seed in range(5):
        shuffled = backups[:]
        random.Random(seed).shuffle(shuffled)
        assert select(shuffled, 3, 2, 2) == expected


# --- one rule at a time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "counts", "kept"),
    [
        pytest.param(
            ["2026-11-30T02:00:00Z", "2026-11-30T09:00:00Z", "2026-11-30T14:00:00Z", "2026-11-29T02:00:00Z"],
            (1, 0, 0), {"b-2026-11-30T14:00:00Z": ["daily 2026-11-30", "newest verified"]},
            id="several per day: the day's newest",
        ),
        pytest.param(
            ["2026-11-01T02:00:00Z", "2026-11-10T02:00:00Z", "2026-11-20T02:00:00Z", "2026-11-30T02:00:00Z"],
            (3, 0, 0),
            {"b-2026-11-30T02:00:00Z": ["daily 2026-11-30", "newest verified"],
             "b-2026-11-20T02:00:00Z": ["daily 2026-11-20"], "b-2026-11-10T02:00:00Z": ["daily 2026-11-10"]},
            id="days with a backup count, not calendar days",
        ),
        pytest.param(
            ["2026-11-30T23:59:59Z", "2026-12-01T00:00:00Z", "2026-11-30T00:00:00Z"],
            (0, 0, 2),
            {"b-2026-12-01T00:00:00Z": ["monthly 2026-12", "newest verified"],
             "b-2026-11-30T23:59:59Z": ["monthly 2026-11"]},
            id="month boundary to the second",
        ),
        pytest.param(
            ["2026-12-31T23:00:00Z", "2027-01-01T01:00:00Z", "2026-12-01T02:00:00Z"],
            (2, 0, 2),
            {"b-2027-01-01T01:00:00Z": ["daily 2027-01-01", "monthly 2027-01", "newest verified"],
             "b-2026-12-31T23:00:00Z": ["daily 2026-12-31", "monthly 2026-12"]},
            id="year boundary",
        ),
        pytest.param(
            ["2026-12-27T02:00:00Z", "2026-12-28T02:00:00Z", "2026-12-31T02:00:00Z", "2027-01-03T02:00:00Z",
             "2027-01-04T02:00:00Z"],
            (0, 3, 0),
            {"b-2027-01-04T02:00:00Z": ["weekly 2027-W01", "newest verified"],
             "b-2027-01-03T02:00:00Z": ["weekly 2026-W53"],  # the Sunday ends week 53 of 2026, in 2027
             "b-2026-12-27T02:00:00Z": ["weekly 2026-W52"]},
            id="ISO week 53 across the new year",
        ),
        pytest.param(
            ["2026-11-30T02:00:00Z", "2026-11-29T02:00:00Z"], (0, 0, 0),
            {"b-2026-11-30T02:00:00Z": ["newest verified"]},
            id="every count 0 still keeps the newest verified",
        ),
    ],
)
def test_slots(created: list[str], counts: tuple[int, int, int], kept: dict[str, list[str]]) -> None:
    result = select([rec(c) for c in created], *counts)
    assert {i: result["reasons"][i] for i in ids(result["keep"])} == kept
    assert sorted(ids(result["delete"])) == sorted({f"b-{c}" for c in created} - set(kept))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-30T02:00:00Z", "2026-11-30T02:00:00+00:00"),
        ("2026-11-30T02:00Z", "2026-11-30T02:00:00+00:00"),
        ("2026-11-30 02:00:00.123456789Z", "2026-11-30T02:00:00.123456+00:00"),
        ("2026-12-01T01:00:00+02:00", "2026-11-30T23:00:00+00:00"),  # a local offset: still Nov 30 in UTC
        ("2026-11-30T22:30:00-0330", "2026-12-01T02:00:00+00:00"),
        ("2026-11-30T02:00:00", "2026-11-30T02:00:00+00:00"),  # no offset: UTC
        ("2026-11-30", "2026-11-30T00:00:00+00:00"),
        (dt.datetime(2026, 11, 30, 2, 0), "2026-11-30T02:00:00+00:00"),  # YAML timestamps arrive as datetimes
        (dt.datetime(2026, 11, 30, 4, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2026-11-30T02:00:00+00:00"),
        (dt.date(2026, 11, 30), "2026-11-30T00:00:00+00:00"),
    ],
)
def test_timestamps_are_utc(value: Any, expected: str) -> None:
    assert parse_timestamp(value).isoformat() == expected


def test_days_are_utc_days() -> None:
    result = select([rec("2026-12-01T01:00:00+02:00", ident="late"), rec("2026-11-30T09:00:00Z", ident="early")], 1, 0, 0)
    assert result["reasons"]["late"] == ["daily 2026-11-30", "newest verified"]
    assert ids(result["delete"]) == ["early"]


@pytest.mark.parametrize(
    ("day", "week"),
    [("2026-11-30", "2026-W49"), ("2026-12-28", "2026-W53"), ("2027-01-03", "2026-W53"), ("2027-01-04", "2027-W01"),
     ("2020-12-31", "2020-W53"), ("2021-01-03", "2020-W53"), ("2024-12-30", "2025-W01"), ("2026-01-01", "2026-W01")],
)
def test_iso_weeks(day: str, week: str) -> None:
    assert week_key(parse_timestamp(day)) == week


def test_ties_on_created_at_are_broken_by_id() -> None:
    backups = [rec("2026-11-30T02:00:00Z", ident=i) for i in ("a", "c", "b")]
    for order in (backups, backups[::-1]):
        result = select(order, 1, 0, 0)
        assert ids(result["keep"]) == ["c"]
        assert ids(result["delete"]) == ["b", "a"]


# --- verification ---------------------------------------------------------------------------------


def test_unverified_backups() -> None:
    backups = [
        rec("2026-11-28T02:00:00Z"),
        rec("2026-11-29T02:00:00Z", verified=False, ident="failed"),  # older than a verified one: failed
        rec("2026-11-30T02:00:00Z", ident="good"),
        rec("2026-11-30T14:00:00Z", verified=False, ident="same-day-pending"),
        rec("2026-12-01T02:00:00Z", verified=False, ident="in-flight"),
    ]
    result = select(backups, 7, 4, 6)
    assert ids(result["keep"]) == ["in-flight", "same-day-pending", "good", "b-2026-11-28T02:00:00Z"]
    pending = ["unverified, newer than the newest verified: in flight or awaiting verification"]
    assert result["reasons"]["in-flight"] == pending
    assert result["reasons"]["same-day-pending"] == pending
    # the verified backup fills the day, the week and the month, not the newer unverified ones
    assert result["reasons"]["good"] == ["daily 2026-11-30", "weekly 2026-W49", "monthly 2026-11", "newest verified"]
    assert ids(result["delete"]) == ["failed"]
    assert result["reasons"]["failed"] == ["unverified, older than the newest verified good"]
    assert result["newest_verified"] == "good"


def test_an_unverified_backup_never_pushes_a_verified_one_out_of_its_day() -> None:
    backups = [rec("2026-11-29T02:00:00Z", ident="mon"), rec("2026-11-29T14:00:00Z", verified=False, ident="manual"),
               rec("2026-11-30T02:00:00Z", ident="tue")]
    result = select(backups, 2, 0, 0)
    assert result["reasons"]["mon"] == ["daily 2026-11-29"]
    assert ids(result["delete"]) == ["manual"]


def test_only_unverified_backups_are_all_kept() -> None:
    backups = [rec(f"2026-11-{d:02d}T02:00:00Z", verified=False) for d in range(1, 31)]
    result = select(backups, 1, 1, 1)
    assert len(result["keep"]) == 30
    assert result["delete"] == []
    assert set(map(tuple, result["reasons"].values())) == {("unverified, no verified backup yet",)}
    assert result["newest_verified"] is None


@pytest.mark.parametrize("unverified", [None, ""])
def test_null_and_empty_verified_at_mean_unverified(unverified: Any) -> None:
    backups = [{"id": "x", "created_at": "2026-11-30T02:00:00Z", "verified_at": unverified}]
    assert select(backups)["reasons"]["x"] == ["unverified, no verified backup yet"]


def test_empty_list() -> None:
    assert backup_retention([]) == {
        "keep": [], "delete": [], "reasons": {}, "newest_verified": None,
        "summary": "keep 0, delete 0 of 0 backups; retention 7 daily, 4 weekly, 6 monthly",
    }


def test_records_pass_through_untouched() -> None:
    old = rec("2026-11-01T02:00:00Z", path="/var/backups/app/20261101", s3_key="app/20261101.dump", ident="old")
    new = rec("2026-11-30T02:00:00Z", path="/var/backups/app/20261130", s3_key="app/20261130.dump", ident="new")
    result = backup_retention([old, new], 1, 0, 0)
    assert result["keep"][0] is new
    assert result["delete"][0] is old
    assert result["delete"][0]["s3_key"] == "app/20261101.dump"


def test_integer_ids_and_string_counts() -> None:
    # ids from a database sequence; counts from -e arrive as strings
    backups = [{"id": n, "created_at": f"2026-11-{n:02d}T02:00:00Z", "verified_at": f"2026-11-{n:02d}T03:00:00Z"}
               for n in range(1, 11)]
    result = backup_retention(backups, "3", "0", "0")
    assert ids(result["keep"]) == [10, 9, 8]
    assert result["newest_verified"] == 10


# --- bad input: one AnsibleFilterError, nothing decided -------------------------------------------


GOOD = {"id": "ok", "created_at": "2026-11-30T02:00:00Z", "verified_at": None}


@pytest.mark.parametrize(
    ("backups", "counts", "message"),
    [
        ({"id": "x"}, {}, r"expected a list of backup records, got dict"),
        ("b-1,b-2", {}, r"expected a list of backup records, got str"),
        (None, {}, r"expected a list of backup records, got NoneType"),
        (["b-1"], {}, r"record 0: expected a dict with id, created_at and verified_at, got str"),
        ([{"created_at": "2026-11-30T02:00:00Z", "verified_at": None}], {}, r"record 0: id must be a non-empty"),
        ([{**GOOD, "id": " "}], {}, r"id must be a non-empty string or an integer, got ' '"),
        ([{**GOOD, "id": True}], {}, r"id must be a non-empty string or an integer, got True"),
        ([GOOD, dict(GOOD)], {}, r"record 1 \(id 'ok'\): the same id as record 0"),
        ([{"id": "x", "verified_at": None}], {}, r"record 0 \(id 'x'\): created_at: None is not an ISO 8601"),
        ([{**GOOD, "created_at": "yesterday"}], {}, r"created_at: 'yesterday' is not an ISO 8601 timestamp \(e\.g\."),
        ([{**GOOD, "created_at": "2026-13-01T02:00:00Z"}], {}, r"created_at: '2026-13-01T02:00:00Z' is not a valid"),
        ([{**GOOD, "created_at": "2026-11-30T25:00:00Z"}], {}, r"is not a valid timestamp"),
        ([{**GOOD, "created_at": "2026-11-30T02:00:00+24:00"}], {}, r"offset \+24:00 out of range"),
        ([{**GOOD, "created_at": 1764468000}], {}, r"created_at: 1764468000 is not an ISO 8601"),
        ([{"id": "x", "created_at": "2026-11-30T02:00:00Z"}], {}, r"verified_at is missing \(null when"),
        ([{**GOOD, "verified_at": True}], {}, r"verified_at: True is not an ISO 8601 timestamp .* or null"),
        ([{**GOOD, "verified_at": "yes"}], {}, r"verified_at: 'yes' is not an ISO 8601"),
        ([GOOD], {"daily": -1}, r"daily must be a whole number of 0 or more, got -1"),
        ([GOOD], {"weekly": "four"}, r"weekly must be a whole number of 0 or more, got 'four'"),
        ([GOOD], {"monthly": True}, r"monthly must be a whole number of 0 or more, got True"),
        ([GOOD], {"monthly": 1.5}, r"monthly must be a whole number"),
    ],
)
def test_bad_input(backups: Any, counts: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=r"^backup_retention: .*" + message):
        backup_retention(backups, **counts)


def test_every_bad_record_is_named_in_one_error() -> None:
    backups = [GOOD, {"id": "a", "created_at": "soon", "verified_at": None}, "junk",
               {"id": "b", "created_at": "2026-11-30T02:00:00Z", "verified": "2026-11-30T03:00:00Z"}]
    with pytest.raises(AnsibleFilterError) as err:
        backup_retention(backups)
    text = str(err.value)
    assert text.startswith("backup_retention: 3 bad backup record(s): record 1 (id 'a'): created_at:")
    assert "; record 2: expected a dict" in text
    assert "; record 3 (id 'b'): verified_at is missing" in text


def test_the_filter_is_registered() -> None:
    assert FilterModule().filters()["backup_retention"] is backup_retention
