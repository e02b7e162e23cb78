# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.backup_retention import FilterModule as Retention
from ansible_collections.runbook.ops.plugins.filter.s3_backups import FilterModule, id_time, s3_backups

P = "postgresql/app/"


@pytest.mark.parametrize(
    ("backup_id", "expected"),
    [
        ("20261201T020000Z", "2026-12-01T02:00:00+00:00"),
        ("20261201T020000Z-2", "2026-12-01T02:00:00+00:00"),
        ("20261201T020000Z-12", "2026-12-01T02:00:00+00:00"),
        ("20261301T020000Z", None),  # month 13
        ("before-upgrade", None),
        ("20261201T020000", None),  # no Z: not our format
        ("2026121T020000Z", None),  # 7 digits: strptime alone would read it as 2026-12-01
        ("20261201T02000Z", None),
    ],
)
def test_id_time(backup_id: str, expected: str | None) -> None:
    moment = id_time(backup_id)
    assert (moment.isoformat() if moment else None) == expected


def test_groups_keys_by_id_oldest_first_and_marks_complete_ones() -> None:
    keys = [
        P + "20261201T020000Z/dump.custom",
        P + "20261201T020000Z/manifest.json",
        P + "20261130T020000Z-2/dump/toc.dat",
        P + "20261130T020000Z-2/dump/3001.dat.gz",
        P + "20261130T020000Z/dump.custom",
        P + "20261130T020000Z/manifest.json",
        "postgresql/other/20261201T020000Z/manifest.json",  # another database: not ours
    ]
    out = s3_backups(keys, P)
    assert [b["id"] for b in out["backups"]] == ["20261130T020000Z", "20261130T020000Z-2", "20261201T020000Z"]
    first, unfinished, newest = out["backups"]
    assert first == {"id": "20261130T020000Z", "created_at": "2026-11-30T02:00:00Z",
                     "verified_at": "2026-11-30T02:00:00Z", "complete": True,
                     "keys": [P + "20261130T020000Z/dump.custom", P + "20261130T020000Z/manifest.json"]}
    assert unfinished["complete"] is False and unfinished["verified_at"] is None
    assert unfinished["keys"] == sorted([P + "20261130T020000Z-2/dump/3001.dat.gz", P + "20261130T020000Z-2/dump/toc.dat"])
    assert newest["complete"] is True
    assert out["undated"] == []


def test_a_manifest_alone_is_no_complete_backup() -> None:
    """A deletion that stopped half-way (manifest.json goes first, but say it did not): never the newest backup."""
    out = s3_backups([P + "20261201T020000Z/manifest.json"], P)
    assert out["backups"][0]["complete"] is False and out["backups"][0]["verified_at"] is None


def test_undated_and_stray_keys_are_kept_apart() -> None:
    keys = [P + "before-upgrade/manifest.json", P + "README", P + "20261201T020000Z/"]
    out = s3_backups(keys, "postgresql/app")  # the trailing / is added
    assert out["backups"] == []
    assert out["undated"] == sorted(keys)


def test_unfinished_upload_goes_only_once_a_newer_complete_backup_exists() -> None:
    keys = [P + "20261129T020000Z/dump.custom",  # died before manifest.json
            P + "20261130T020000Z/dump.custom", P + "20261130T020000Z/manifest.json",
            P + "20261201T020000Z/dump.custom"]  # in flight
    retention = Retention().filters()["backup_retention"]
    plan = retention(s3_backups(keys, P)["backups"], 7, 4, 6)
    assert [b["id"] for b in plan["delete"]] == ["20261129T020000Z"]
    assert sorted(b["id"] for b in plan["keep"]) == ["20261130T020000Z", "20261201T020000Z"]


@pytest.mark.parametrize(
    ("keys", "prefix"),
    [("postgresql/app/x", P), ([1, 2], P), (None, P), ([], ""), ([], "/"), ([], None)],
)
def test_bad_input_is_one_clear_error(keys: Any, prefix: Any) -> None:
    with pytest.raises(AnsibleFilterError, match="s3_backups:"):
        s3_backups(keys, prefix)


def test_registered() -> None:
    assert FilterModule().filters()["s3_backups"] is s3_backups
