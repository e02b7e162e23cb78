# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The swap record and the "nothing written since the swap" decisions of pg_restore_checks."""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import (
    LEDGER_MAX,
    MAX_HORIZON_AGE,
    compare_unchanged,
    horizon_problem,
    horizon_sql,
    record_problem,
    safety_copies_ledger,
    swap_record,
)

SYSID = "7714249829451794917"


def record(**over: Any) -> dict[str, Any]:
    base = swap_record(live="app", oid=31005, keep_as="app_pre_restore_1", keep_as_oid=30666, xid=128763,
                       system_identifier=SYSID, swapped_at="2026-12-01T11:41:22+00:00",
                       data={"backup_id": "20261201T113225Z"})
    return {**base, **over}


def test_swap_record_keeps_its_own_keys_over_the_callers() -> None:
    made = swap_record(live="app", oid=1, keep_as="k", keep_as_oid=2, xid=3, system_identifier=None,
                       swapped_at="t", data={"backup_id": "b", "xid": 99, "oid": 98})
    assert made["xid"] == 3 and made["oid"] == 1 and made["backup_id"] == "b" and made["version"] == 1


@pytest.mark.parametrize(("rec", "oid", "backup_id", "sysid", "problem"), [
    (record(), 31005, "20261201T113225Z", SYSID, None),
    (record(), 31005, "20261201T113225Z", None, None),  # a login that may not read the identifier
    (record(), 31006, "20261201T113225Z", SYSID, "it was replaced since"),
    (record(), None, "20261201T113225Z", SYSID, "it was replaced since"),
    (record(), 31005, "20261202T000000Z", SYSID, "put backup '20261201T113225Z' in place, not '20261202T000000Z'"),
    (record(live="other"), 31005, "20261201T113225Z", SYSID, "is of database 'other', not 'app'"),
    (record(system_identifier="1"), 31005, "20261201T113225Z", SYSID, "is of cluster 1"),
    (record(version=2), 31005, "20261201T113225Z", SYSID, "not one this module writes"),
    (record(xid=True), 31005, "20261201T113225Z", SYSID, "no transaction id"),
    (record(xid="128763"), 31005, "20261201T113225Z", SYSID, "no transaction id"),
    ([1, 2], 31005, "20261201T113225Z", SYSID, "not one this module writes"),
])
def test_record_problem(rec: Any, oid: int | None, backup_id: str, sysid: str | None, problem: str | None) -> None:
    found = record_problem(rec, database="app", oid=oid, backup_id=backup_id, system_identifier=sysid)
    assert (found is None) if problem is None else (problem in found), found


@pytest.mark.parametrize(("next_xid", "swap_xid", "problem"), [
    (128764, 128763, None),
    (2 ** 32 + 5, 2 ** 32 - 5, None),  # across a wraparound of the 32-bit xid: the epoch counts
    (128763, 128763, "not in this server's past"),
    (100, 128763, "not in this server's past"),
    (128763 + MAX_HORIZON_AGE, 128763, None),
    (128764 + MAX_HORIZON_AGE, 128763, "too far back"),
])
def test_horizon_problem(next_xid: int, swap_xid: int, problem: str | None) -> None:
    found = horizon_problem(next_xid, swap_xid)
    assert (found is None) if problem is None else (problem in found), found


def test_compare_unchanged_names_the_tables_and_objects_written_since() -> None:
    rec = record()
    assert compare_unchanged({"public.a": 0, "public.b": 0}, [], rec)["ok"]
    found = compare_unchanged({"public.a": 0, "public.b": 3, "public.c": 1}, ["public.d"], rec)
    assert not found["ok"]
    assert found["msg"] == ("rows written since the swap of 2026-12-01T11:41:22+00:00 (transaction 128763): "
                            "public.b (3), public.c (1); tables, columns or indexes changed since the swap of "
                            "2026-12-01T11:41:22+00:00 (transaction 128763): public.d")
    many = compare_unchanged({f"s.t{i}": 1 for i in range(8)}, [], rec)
    assert many["msg"].endswith("s.t4 (1) and 3 more tables")


@pytest.mark.parametrize(("version", "function"), [(150000, "pg_current_snapshot"), (120000, "txid_current_snapshot")])
def test_horizon_sql_fits_the_server(version: int, function: str) -> None:
    assert function in horizon_sql(version) and "age(%s::text::xid)" in horizon_sql(version)


def test_the_ledger_records_when_each_safety_copy_was_made_and_carries_the_earlier_ones_over() -> None:
    first = swap_record(live="app", oid=2, keep_as="app_pre_restore_B", keep_as_oid=1, xid=10, system_identifier=SYSID,
                        swapped_at="2026-12-01T10:00:00+00:00", data={"backup_id": "B"})
    # a restore of an OLDER backup, later: its copy is the newer one whatever its id says
    second = swap_record(live="app", oid=3, keep_as="app_pre_restore_A", keep_as_oid=2, xid=20,
                         system_identifier=SYSID, swapped_at="2026-12-04T10:00:00+00:00", data={"backup_id": "A"},
                         previous=first)
    assert second["safety_copies"] == {
        "app_pre_restore_A": {"oid": 2, "swapped_at": "2026-12-04T10:00:00+00:00", "backup_id": "A"},
        "app_pre_restore_B": {"oid": 1, "swapped_at": "2026-12-01T10:00:00+00:00", "backup_id": "B"},
    }


@pytest.mark.parametrize("previous", [None, "not a record", {"safety_copies": "no map"}, {"safety_copies": {
    "bad_oid": {"oid": "1", "swapped_at": "2026-01-01T00:00:00+00:00"}, "no_time": {"oid": 1}, "not_a_dict": 5}}])
def test_an_unreadable_ledger_or_entry_is_left_out(previous: Any) -> None:
    made = safety_copies_ledger(previous, keep_as="k", keep_as_oid=7, swapped_at="t", backup_id=None)
    assert made == {"k": {"oid": 7, "swapped_at": "t", "backup_id": None}}


def test_the_same_name_again_replaces_its_entry_and_the_ledger_keeps_the_newest() -> None:
    previous = {"safety_copies": {f"c{n:03d}": {"oid": n, "swapped_at": f"2026-01-01T00:00:{n % 60:02d}+00:00"
                                                if n < 60 else f"2026-01-02T00:{n % 60:02d}:00+00:00"}
                                  for n in range(LEDGER_MAX + 5)}}
    made = safety_copies_ledger(previous, keep_as="c000", keep_as_oid=999, swapped_at="2026-02-01T00:00:00+00:00",
                                backup_id="x")
    assert len(made) == LEDGER_MAX
    assert made["c000"] == {"oid": 999, "swapped_at": "2026-02-01T00:00:00+00:00", "backup_id": "x"}
    # the oldest entries went: c001..c005 are the five oldest after c000 was renewed
    assert not {f"c{n:03d}" for n in range(1, 6)} & set(made)
