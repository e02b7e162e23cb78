# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The custom-archive walk on a real pg_dump 15 archive (tests/unit/fixtures/small.custom), whole and damaged.

The fixture is `pg_dump -Fc -Z1` of a database with a 3000-row table, an empty table, a table named "t;x" in a schema
named "odd schema", and one large object: four data entries, one of them a blobs block.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_archive_walk import (
    ArchiveDamaged,
    ArchiveVersionUnknown,
    walk_custom_archive,
    walk_custom_stream,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "small.custom"
DATA = FIXTURE.read_bytes()


def _damaged(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "damaged.custom"
    path.write_bytes(data)
    with pytest.raises(ArchiveDamaged) as raised:
        walk_custom_archive(str(path))
    return str(raised.value)


def test_the_whole_archive_walks_with_every_block_where_the_toc_says() -> None:
    walk = walk_custom_archive(str(FIXTURE))
    assert walk.version == (1, 14, 0) and walk.toc_entries == 14 and walk.size == len(DATA)
    assert [e.label for e in walk.data_entries] == ["TABLE DATA odd schema t;x", "TABLE DATA public accounts",
                                                    "TABLE DATA public empty_one", "BLOBS BLOBS"]
    assert all(walk.blocks[e.dump_id] == e.offset for e in walk.data_entries)
    assert sorted(walk.blocks.values()) == [e.offset for e in walk.data_entries]


def test_every_cut_is_found() -> None:
    # every length short of the whole file, including cuts exactly between two blocks
    walked = []
    for length in range(len(DATA)):
        try:
            walk_custom_stream(io.BytesIO(DATA[:length]), length)
        except ArchiveDamaged:
            continue
        walked.append(length)
    assert walked == []


def test_a_cut_names_what_it_cut(tmp_path: Path) -> None:
    accounts = next(e for e in walk_custom_archive(str(FIXTURE)).data_entries if e.label.endswith("accounts"))
    message = _damaged(tmp_path, DATA[:accounts.offset + 500])
    assert message.startswith("the archive ends inside the data of TABLE DATA public accounts at byte "), message
    last = walk_custom_archive(str(FIXTURE)).data_entries[-1]
    message = _damaged(tmp_path, DATA[:last.offset])
    assert message == "the TOC lists data for 1 entry that the archive does not hold: BLOBS BLOBS"
    assert _damaged(tmp_path, DATA[:100]) == "the archive ends inside the header at byte 100 of 100"
    assert _damaged(tmp_path, DATA[:200]) == "the archive ends inside TOC entry 1 of 14 at byte 200 of 200"


def test_an_offset_that_points_elsewhere_is_found(tmp_path: Path) -> None:
    first = walk_custom_archive(str(FIXTURE)).data_entries[0]
    flag_and_offset = bytes([2]) + first.offset.to_bytes(8, "little")
    assert DATA.count(flag_and_offset) == 1
    moved = DATA.replace(flag_and_offset, bytes([2]) + (first.offset + 1).to_bytes(8, "little"))
    assert _damaged(tmp_path, moved) == "the TOC points elsewhere than the data of TABLE DATA odd schema t;x"


def test_a_damaged_block_header_is_found(tmp_path: Path) -> None:
    last = walk_custom_archive(str(FIXTURE)).data_entries[-1]
    damaged = DATA[:last.offset] + bytes([7]) + DATA[last.offset + 1:]
    assert _damaged(tmp_path, damaged) == f"unknown block type 7 at byte {last.offset} of {len(DATA)}"


@pytest.mark.parametrize(("data", "message"), [
    (b"", "the archive ends inside the header at byte 0 of 0"),
    (b"not an archive at all", "not a pg_dump archive (no PGDMP signature)"),
    (DATA[:10] + bytes([3]) + DATA[11:], "not a custom-format archive"),
])
def test_what_is_not_a_custom_archive_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    assert _damaged(tmp_path, data) == message


@pytest.mark.parametrize("version", [(1, 13, 0), (1, 15, 0), (1, 16, 0)])
def test_a_version_it_does_not_know_is_not_called_damaged(tmp_path: Path, version: tuple[int, int, int]) -> None:
    # a newer pg_dump's archive is read back with pg_restore instead: not refused as damaged
    path = tmp_path / "newer.custom"
    path.write_bytes(DATA[:5] + bytes(version) + DATA[8:])
    with pytest.raises(ArchiveVersionUnknown) as raised:
        walk_custom_archive(str(path))
    assert str(raised.value) == f"archive version {'.'.join(map(str, version))} is not one this walk knows (1.14, of pg_dump 12 to 15)"
    assert not isinstance(raised.value, ArchiveDamaged)
