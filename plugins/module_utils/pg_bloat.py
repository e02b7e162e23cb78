# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Estimated bloat of PostgreSQL tables and btree indexes from the catalog statistics alone.

No extension (pgstattuple) and no database access here: the module reads pg_class.relpages and
reltuples, the fillfactor and the pg_stats null_frac and avg_width of the columns, and these
functions turn them into the pages a freshly packed copy would take (the well-known statistics-based
estimate of check_postgres and pgsql-bloat-estimation). Bloat is the real size minus that.

What the estimate does not see: alignment padding between columns (a packed table can read a little
bloated), btree deduplication (a deduplicated index reads less bloated than it is), internal btree
pages, and TOAST (a table's estimate is its main heap only).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PAGE_HEADER = 24  # SizeOfPageHeaderData
ITEM_ID = 4  # ItemIdData: the line pointer every tuple takes on its page
HEAP_TUPLE_HEADER = 23  # SizeofHeapTupleHeader, before alignment
INDEX_TUPLE_HEADER = 8  # IndexTupleData
INDEX_NULL_BITMAP = 4  # IndexAttributeBitMapData: INDEX_MAX_KEYS (32) bits, present once any key is nullable
BTREE_OPAQUE = 16  # BTPageOpaqueData at the end of every btree page
BTREE_META_PAGES = 1
HEAP_FILLFACTOR = 100  # the defaults when reloptions set none
BTREE_FILLFACTOR = 90


@dataclass(frozen=True)
class Estimate:
    """A relation's real size and, when the statistics allow, what a packed copy would take."""

    size_bytes: int
    expected_bytes: int | None = None
    bloat_bytes: int | None = None
    bloat_ratio: float | None = None
    note: str | None = None  # why there is no estimate

    def figures(self) -> dict[str, Any]:
        """The keys the module returns for a table or an index."""
        return {"size_bytes": self.size_bytes, "expected_bytes": self.expected_bytes, "bloat_bytes": self.bloat_bytes,
                "bloat_ratio": None if self.bloat_ratio is None else round(self.bloat_ratio, 4),
                "bloat_note": self.note}


def align(size: int, maxalign: int) -> int:
    """size rounded up to a multiple of maxalign (MAXALIGN)."""
    return (size + maxalign - 1) // maxalign * maxalign


def _compare(relpages: int, expected_pages: int, block_size: int) -> Estimate:
    real = max(int(relpages), 0)
    waste = max(real - expected_pages, 0)
    return Estimate(size_bytes=real * block_size, expected_bytes=expected_pages * block_size,
                    bloat_bytes=waste * block_size, bloat_ratio=waste / real if real else 0.0)


def _missing(relpages: int, reltuples: float | None, columns: int, columns_with_stats: int,
             block_size: int) -> Estimate | None:
    """The estimate when the figures cannot give one, else None."""
    size = max(int(relpages), 0) * block_size
    if reltuples is None or reltuples < 0:
        # -1 from PostgreSQL 14 on: never vacuumed or analyzed, the row count is unknown
        return Estimate(size_bytes=size, note="row count unknown (never vacuumed or analyzed)")
    if reltuples > 0 and columns_with_stats < columns:
        return Estimate(size_bytes=size, note=f"no statistics for {columns - columns_with_stats} of {columns} "
                                              "column(s) (ANALYZE the table)")
    return None


def table_bloat(*, relpages: int, reltuples: float | None, columns: int, columns_with_stats: int, data_width: float,
                max_null_frac: float, fillfactor: int | None = None, block_size: int = 8192,
                maxalign: int = 8) -> Estimate:
    """The heap's bloat: relpages against reltuples tuples of the average width, packed to the fillfactor.

    data_width is sum((1 - null_frac) * avg_width) over the live columns; a null bitmap is counted
    once any column has nulls.
    """
    if relpages <= 0:
        return _compare(0, 0, block_size)
    missing = _missing(relpages, reltuples, columns, columns_with_stats, block_size)
    if missing:
        return missing
    header = HEAP_TUPLE_HEADER + ((columns + 7) // 8 if max_null_frac > 0 else 0)
    tuple_size = ITEM_ID + align(header, maxalign) + align(math.ceil(data_width), maxalign)
    per_page = max(1, (block_size - PAGE_HEADER) * (fillfactor or HEAP_FILLFACTOR) // (100 * tuple_size))
    return _compare(relpages, math.ceil(float(reltuples or 0) / per_page), block_size)


def btree_bloat(*, relpages: int, reltuples: float | None, columns: int, columns_with_stats: int, data_width: float,
                max_null_frac: float, fillfactor: int | None = None, block_size: int = 8192, maxalign: int = 8,
                method: str = "btree", valid: bool = True) -> Estimate:
    """A btree index's bloat: relpages against its metapage and reltuples leaf tuples, packed to the fillfactor.

    columns and data_width cover every column the index stores (keys, expressions, INCLUDE).
    """
    size = max(int(relpages), 0) * block_size
    if method != "btree":
        return Estimate(size_bytes=size, note=f"no estimate for {method} indexes (btree only)")
    if not valid:
        return Estimate(size_bytes=size, note="invalid index (left by a failed CREATE or REINDEX CONCURRENTLY)")
    if relpages <= 0:
        return _compare(0, 0, block_size)
    missing = _missing(relpages, reltuples, columns, columns_with_stats, block_size)
    if missing:
        return missing
    header = INDEX_TUPLE_HEADER + (INDEX_NULL_BITMAP if max_null_frac > 0 else 0)
    tuple_size = ITEM_ID + align(header, maxalign) + align(math.ceil(data_width), maxalign)
    usable = block_size - PAGE_HEADER - BTREE_OPAQUE
    per_page = max(1, usable * (fillfactor or BTREE_FILLFACTOR) // (100 * tuple_size))
    return _compare(relpages, BTREE_META_PAGES + math.ceil(float(reltuples or 0) / per_page), block_size)
