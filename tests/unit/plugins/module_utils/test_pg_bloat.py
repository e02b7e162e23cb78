# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The statistics-based bloat estimates of runbook.ops.pg_maintenance.

The figures of the first cases are what PostgreSQL 15 reported for real tables: 1,000,000 rows of
(id int PRIMARY KEY, v int), 90% deleted and vacuumed; then after VACUUM FULL and REINDEX.
"""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_bloat import Estimate, align, btree_bloat, table_bloat

PAGE = 8192


def table(relpages: int, reltuples: float | None, width: float = 8.0, columns: int = 2, with_stats: int | None = None,
          null_frac: float = 0.0, **kw: Any) -> Estimate:
    return table_bloat(relpages=relpages, reltuples=reltuples, columns=columns,
                       columns_with_stats=columns if with_stats is None else with_stats, data_width=width,
                       max_null_frac=null_frac, **kw)


def btree(relpages: int, reltuples: float | None, width: float = 4.0, columns: int = 1, with_stats: int | None = None,
          null_frac: float = 0.0, **kw: Any) -> Estimate:
    return btree_bloat(relpages=relpages, reltuples=reltuples, columns=columns,
                       columns_with_stats=columns if with_stats is None else with_stats, data_width=width,
                       max_null_frac=null_frac, **kw)


@pytest.mark.parametrize(("size", "maxalign", "expected"),
                         [(0, 8, 0), (1, 8, 8), (8, 8, 8), (23, 8, 24), (25, 8, 32), (23, 4, 24), (5, 4, 8), (3, 4, 4)])
def test_align(size: int, maxalign: int, expected: int) -> None:
    assert align(size, maxalign) == expected


@pytest.mark.parametrize(
    ("relpages", "reltuples", "width", "columns", "kw", "expected_pages"),
    [
        (4425, 100000, 8, 2, {}, 443),  # (int, int): 4 + 24 + 8 = 36 bytes a row, 226 a page
        (443, 100000, 8, 2, {}, 443),  # the same after VACUUM FULL
        (2655, 600000, 4, 1, {}, 2655),  # (int): a packed table reads exactly its size
        (4425, 100000, 8, 2, {"fillfactor": 50}, 885),  # 113 rows a page
        (100, 1000, 6, 2, {"maxalign": 4}, 5),  # 4 + 24 + 8 = 36: the same row on 4-byte alignment
        (100, 1000, 3, 1, {"maxalign": 4}, 4),  # 4 + 24 + 4 = 32: 255 a page
        (100, 1000, 3, 1, {"maxalign": 8}, 5),  # 4 + 24 + 8 = 36: 226 a page
        (1000, 10000, 200.5, 3, {}, 295),  # a fractional width is rounded up: 4 + 24 + 208 = 236, 34 a page
        (1000, 10000, 8, 2, {"block_size": 16384}, 23),  # 16 kB pages: 453 a page
    ],
)
def test_table_bloat(relpages: int, reltuples: float, width: float, columns: int, kw: dict[str, Any],
                     expected_pages: int) -> None:
    estimate = table(relpages, reltuples, width, columns, **kw)
    block = kw.get("block_size", PAGE)
    assert estimate.note is None
    assert estimate.expected_bytes == expected_pages * block
    assert estimate.bloat_bytes == max(relpages - expected_pages, 0) * block
    assert estimate.bloat_ratio == pytest.approx(max(relpages - expected_pages, 0) / relpages)
    assert estimate.size_bytes == relpages * block


def test_table_bloat_of_the_real_case() -> None:
    figures = table(4425, 100000).figures()
    assert figures == {"size_bytes": 4425 * PAGE, "expected_bytes": 443 * PAGE, "bloat_bytes": 3982 * PAGE,
                       "bloat_ratio": 0.8999, "bloat_note": None}


@pytest.mark.parametrize(("columns", "null_frac", "expected_pages"),
                         [(2, 0.0, 443), (2, 0.5, 443), (9, 0.0, 443), (9, 0.1, 541)])
def test_table_null_bitmap(columns: int, null_frac: float, expected_pages: int) -> None:
    # a bitmap of (columns + 7) / 8 bytes once a column has nulls: 23 + 1 still aligns to 24, 23 + 2 to 32
    # (4 + 32 + 8 = 44 bytes, 185 a page)
    assert table(4425, 100000, 8, columns, null_frac=null_frac).expected_bytes == expected_pages * PAGE


@pytest.mark.parametrize(
    ("relpages", "reltuples", "with_stats", "note"),
    [
        (10, -1, None, "row count unknown"),  # PostgreSQL 14+: never vacuumed or analyzed
        (10, None, None, "row count unknown"),
        (10, 500, 1, "no statistics for 1 of 2 column(s)"),
        (10, 500, 0, "no statistics for 2 of 2 column(s)"),
    ],
)
def test_table_without_estimate(relpages: int, reltuples: float | None, with_stats: int | None, note: str) -> None:
    estimate = table(relpages, reltuples, with_stats=with_stats)
    assert estimate.bloat_ratio is None and estimate.bloat_bytes is None and estimate.expected_bytes is None
    assert estimate.note is not None and note in estimate.note
    assert estimate.size_bytes == relpages * PAGE


@pytest.mark.parametrize(
    ("relpages", "reltuples", "with_stats", "ratio", "waste_pages"),
    [
        (0, 0, 0, 0.0, 0),  # no storage (an empty or partitioned table)
        (0, -1, 0, 0.0, 0),
        (10, 0, 0, 1.0, 10),  # no rows left: every page is waste, statistics or not
    ],
)
def test_table_edges(relpages: int, reltuples: float, with_stats: int, ratio: float, waste_pages: int) -> None:
    estimate = table(relpages, reltuples, with_stats=with_stats)
    assert estimate.bloat_ratio == ratio and estimate.bloat_bytes == waste_pages * PAGE


@pytest.mark.parametrize(
    ("relpages", "reltuples", "width", "columns", "kw", "expected_pages"),
    [
        (2745, 100000, 4, 1, {}, 275),  # int4 key: 4 + 8 + 8 = 20 bytes, 366 a page at fillfactor 90, + metapage
        (276, 100000, 4, 1, {}, 275),  # the same after REINDEX: one page of leeway (internal pages)
        (1648, 600000, 4, 1, {}, 1641),  # a fresh index on 600000 rows
        (388, 100000, 12, 3, {}, 383),  # (v * 2, id) INCLUDE (v): 4 + 8 + 16 = 28, 262 a page
        (2745, 100000, 4, 1, {"fillfactor": 100}, 247),  # 407 a page
        (2745, 100000, 4, 1, {"fillfactor": 50}, 494),  # 203 a page
        (1000, 100000, 33, 1, {}, 711),  # md5 text: 4 + 8 + 40 = 52, 141 a page
        (10, 0, 4, 1, {}, 1),  # no rows: the metapage
    ],
)
def test_btree_bloat(relpages: int, reltuples: float, width: float, columns: int, kw: dict[str, Any],
                     expected_pages: int) -> None:
    estimate = btree(relpages, reltuples, width, columns, **kw)
    assert estimate.note is None
    assert estimate.expected_bytes == expected_pages * PAGE
    assert estimate.bloat_bytes == max(relpages - expected_pages, 0) * PAGE
    assert estimate.bloat_ratio == pytest.approx(max(relpages - expected_pages, 0) / relpages)


def test_btree_bloat_of_the_real_case() -> None:
    before, after = btree(2745, 100000).figures(), btree(276, 100000).figures()
    assert before["bloat_ratio"] == 0.8998 and before["bloat_bytes"] == 2470 * PAGE
    assert after["bloat_ratio"] == 0.0036 and after["bloat_bytes"] == PAGE


@pytest.mark.parametrize(("null_frac", "expected_pages"), [(0.0, 275), (0.2, 383)])
def test_btree_null_bitmap(null_frac: float, expected_pages: int) -> None:
    # a nullable key adds the 4-byte bitmap: the header 12 aligns to 16, 4 + 16 + 8 = 28, 262 a page;
    # the width counts only the non-null share (3.2 rounds up to 8 all the same)
    assert btree(2745, 100000, 4 * (1 - null_frac), null_frac=null_frac).expected_bytes == expected_pages * PAGE


@pytest.mark.parametrize(
    ("kw", "note"),
    [
        ({"method": "gist"}, "no estimate for gist indexes"),
        ({"method": "hash"}, "btree only"),
        ({"valid": False}, "invalid index"),
        ({"reltuples": -1}, "row count unknown"),
        ({"with_stats": 0}, "no statistics for 1 of 1 column(s)"),
    ],
)
def test_btree_without_estimate(kw: dict[str, Any], note: str) -> None:
    args = {"relpages": 2745, "reltuples": 100000, **kw}
    estimate = btree(**args)
    assert estimate.bloat_ratio is None and estimate.bloat_bytes is None
    assert estimate.note is not None and note in estimate.note
    assert estimate.figures()["bloat_note"] == estimate.note
    assert estimate.size_bytes == 2745 * PAGE
