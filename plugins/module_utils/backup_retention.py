# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure decision logic of backup retention: which backups to keep, which to delete, and why.

Grandfather-father-son by count, not by age: for each of the most recent ``daily`` UTC days
that have a verified backup, keep that day's newest verified backup; likewise for ``weekly``
ISO weeks and ``monthly`` months. One backup may fill several slots. The current time is
never read, so a host that has not backed up for a month still keeps its last N backups.

Two safety rules come on top of the slots:

- the newest verified backup is always kept (even with every count at 0);
- an unverified backup created after the newest verified one is always kept: it is in
  flight or awaiting verification. With no verified backup at all, every backup is kept.

Only verified backups fill slots: a slot is meant to hold a backup that is known to restore,
so an unverified backup never pushes a verified one of the same day out. An unverified
backup older than the newest verified one is deleted: verification runs right after each
backup, so it has failed (or was never run) and a newer good backup exists.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?)?",
    re.IGNORECASE,
)
ISO_EXAMPLE = "2026-11-30T02:00:00Z"


@dataclass(frozen=True)
class Backup:
    """One backup record, its timestamps parsed (UTC) and the caller's dict kept as it came."""

    id: Any
    created: dt.datetime
    verified: dt.datetime | None
    record: Mapping[str, Any]

    @property
    def order(self) -> tuple[dt.datetime, str]:
        # ties on created_at are broken by id, so the choice never depends on the input order
        return (self.created, str(self.id))


def parse_timestamp(value: Any) -> dt.datetime:
    """An ISO 8601 timestamp (str or datetime) as an aware UTC datetime; ValueError otherwise.

    A timestamp without an offset is taken as UTC (the records are documented as UTC); one
    with an offset is converted, so the day, week and month of a backup are always UTC ones.
    """
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, dt.date):
        parsed = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = _parse_iso(value.strip())
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp (e.g. {ISO_EXAMPLE})")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _parse_iso(text: str) -> dt.datetime:
    match = _ISO.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp (e.g. {ISO_EXAMPLE})")
    try:
        day = dt.date.fromisoformat(match["date"])
        frac = (match["frac"] or "0")[:6].ljust(6, "0")
        clock = dt.time(int(match["h"] or 0), int(match["m"] or 0), int(match["s"] or 0), int(frac))
        tz = _offset(match["tz"])
    except ValueError as err:
        raise ValueError(f"{text!r} is not a valid timestamp ({err})") from err
    return dt.datetime.combine(day, clock, tz)


def _offset(text: str | None) -> dt.tzinfo | None:
    if not text:
        return None
    if text.upper() == "Z":
        return dt.timezone.utc
    digits = text[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    if minutes >= 24 * 60:
        raise ValueError(f"offset {text} out of range")
    return dt.timezone((-1 if text[0] == "-" else 1) * dt.timedelta(minutes=minutes))


def count(value: Any, name: str) -> int:
    """A retention count: an integer >= 0 (a string of digits from -e is fine); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} must be a whole number of 0 or more, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of 0 or more, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{name} must be a whole number of 0 or more, got {value!r}")
    return number


def parse_backups(records: Any) -> list[Backup]:
    """The records as Backups; one ValueError naming every bad record."""
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise ValueError(f"expected a list of backup records, got {type(records).__name__}")
    backups: list[Backup] = []
    problems: list[str] = []
    seen: dict[Any, int] = {}
    for index, record in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, Mapping):
            problems.append(f"{where}: expected a dict with id, created_at and verified_at, got {type(record).__name__}")
            continue
        ident = record.get("id")
        if isinstance(ident, bool) or not isinstance(ident, (str, int)) or (isinstance(ident, str) and not ident.strip()):
            problems.append(f"{where}: id must be a non-empty string or an integer, got {ident!r}")
            continue
        where = f"record {index} (id {ident!r})"
        if ident in seen:
            problems.append(f"{where}: the same id as record {seen[ident]}")
            continue
        seen[ident] = index
        if "verified_at" not in record:
            # required, so a misspelt key cannot make verified backups look unverified (and deletable)
            problems.append(f"{where}: verified_at is missing (null when the backup is not verified)")
            continue
        try:
            created = parse_timestamp(record.get("created_at"))
        except ValueError as err:
            problems.append(f"{where}: created_at: {err}")
            continue
        verified_at = record["verified_at"]
        try:
            verified = None if verified_at in (None, "") else parse_timestamp(verified_at)
        except ValueError as err:
            problems.append(f"{where}: verified_at: {err} or null")
            continue
        backups.append(Backup(ident, created, verified, record))
    if problems:
        raise ValueError(f"{len(problems)} bad backup record(s): " + "; ".join(problems))
    return backups


def day_key(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d")


def week_key(when: dt.datetime) -> str:
    # ISO week: 2027-01-01 belongs to 2026-W53
    iso = when.isocalendar()
    return f"{iso[0]}-W{iso[1]:02d}"


def month_key(when: dt.datetime) -> str:
    return when.strftime("%Y-%m")


RULES = (("daily", day_key), ("weekly", week_key), ("monthly", month_key))


def select(records: Any, daily: Any = 7, weekly: Any = 4, monthly: Any = 6) -> dict[str, Any]:
    """Decide keep or delete for every record; ValueError (one message) on bad input.

    Returns keep and delete (the caller's records, newest first), reasons (id -> list of
    strings, for every record), newest_verified (an id or None) and a one-line summary.
    """
    counts = {"daily": count(daily, "daily"), "weekly": count(weekly, "weekly"), "monthly": count(monthly, "monthly")}
    backups = sorted(parse_backups(records), key=lambda b: b.order, reverse=True)
    reasons: dict[Any, list[str]] = {b.id: [] for b in backups}

    verified = [b for b in backups if b.verified is not None]
    for rule, key in RULES:
        periods: list[str] = []
        for backup in verified:  # newest first: the first of a period is its newest
            period = key(backup.created)
            if period in periods:
                continue
            if len(periods) == counts[rule]:
                break
            periods.append(period)
            reasons[backup.id].append(f"{rule} {period}")

    newest_verified = verified[0] if verified else None
    if newest_verified is not None:
        reasons[newest_verified.id].append("newest verified")
    for backup in backups:
        if backup.verified is not None:
            continue
        if newest_verified is None:
            reasons[backup.id].append("unverified, no verified backup yet")
        elif backup.order > newest_verified.order:
            reasons[backup.id].append("unverified, newer than the newest verified: in flight or awaiting verification")

    keep = [b for b in backups if reasons[b.id]]
    delete = [b for b in backups if not reasons[b.id]]
    rules = ", ".join(f"{number} {rule}" for rule, number in counts.items())
    for backup in delete:
        if backup.verified is None and newest_verified is not None:
            reasons[backup.id].append(f"unverified, older than the newest verified {newest_verified.id}")
        else:
            reasons[backup.id].append(f"in no retention slot of {rules}")
    return {
        "keep": [b.record for b in keep],
        "delete": [b.record for b in delete],
        "reasons": reasons,
        "newest_verified": newest_verified.id if newest_verified else None,
        "summary": f"keep {len(keep)}, delete {len(delete)} of {len(backups)} backups; retention {rules}",
    }
