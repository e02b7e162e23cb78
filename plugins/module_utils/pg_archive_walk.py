# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Walk a pg_dump custom-format archive's blocks without decompressing them: find one cut short.

pg_restore --list reads only the header and the TOC, so an archive truncated after its TOC lists fine. This reads
the header, the TOC (with each data entry's offset) and then every data block's chunk lengths, seeking over the
chunks themselves. It proves that each data entry the TOC promises is there, whole, where the TOC says, and that the
file ends where the last block does. It does not decompress the data, so it cannot tell a flipped bit inside a
chunk (the sha256 in the manifest does that later); a pg_restore read-back can.

The layout (pg_backup_archiver.c WriteHead/WriteToc, pg_backup_custom.c) of archive version 1.14, which pg_dump 12
to 15 write; it is the only version walked, because it is the one the tests make (pg_dump 15). Others, such as pg_dump
16's 1.15 (a compression algorithm byte in the header) and 17's 1.16, raise ArchiveVersionUnknown: read them back.
  "PGDMP" vmaj vmin vrev intSize offSize format, then compression, the creation time (7 ints), three strings
  TOC: int count, then per entry dumpId, hadDumper, tableoid, oid, tag, desc, section, defn, dropStmt, copyStmt,
       namespace, tablespace, tableam, owner, "false", dependencies up to a null string,
       and the data offset: a flag byte (1 not set, 2 set, 3 no data) and offSize bytes, least significant first
  data: per block a type byte (1 data, 3 blobs), int dumpId, chunks (int length, bytes) up to a zero length;
        a blobs block has (int oid, chunks ...) per large object up to oid 0
An int is a sign byte and intSize bytes, least significant first; a string is an int length (-1: null) and bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO

MAGIC = b"PGDMP"
FORMAT_CUSTOM = 1
BLOCK_DATA, BLOCK_BLOBS = 1, 3
OFFSET_SET, OFFSET_NO_DATA = 2, 3
WALKED = (1, 14)


class ArchiveDamaged(Exception):
    """The archive is not whole; the message says where."""


class ArchiveVersionUnknown(Exception):
    """A custom archive of a version other than 1.14 (pg_dump 11 and before, 16 and later): read it back."""


@dataclass(frozen=True)
class DataEntry:
    dump_id: int
    label: str  # "TABLE DATA public accounts"
    offset: int | None  # None: pg_dump wrote no position (output was not seekable)


@dataclass
class Walk:
    version: tuple[int, int, int]
    toc_entries: int
    data_entries: list[DataEntry] = field(default_factory=list)
    blocks: dict[int, int] = field(default_factory=dict)  # dump id -> offset of its block
    size: int = 0


class _Reader:
    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.size = stream, size
        self.int_size, self.offset_size = 4, 8  # read from the header

    def bytes(self, n: int, what: str) -> bytes:
        at = self.stream.tell()
        data = self.stream.read(n)
        if len(data) != n:
            raise ArchiveDamaged(f"the archive ends inside {what} at byte {at + len(data)} of {self.size}")
        return data

    def byte(self, what: str) -> int:
        return self.bytes(1, what)[0]

    def int(self, what: str) -> int:
        raw = self.bytes(1 + self.int_size, what)
        value = int.from_bytes(raw[1:], "little")
        return -value if raw[0] else value

    def str(self, what: str) -> str | None:
        length = self.int(what)
        if length < 0:
            return None
        return self.bytes(length, what).decode("utf-8", "replace")

    def skip(self, n: int, what: str) -> None:
        at = self.stream.tell()
        if n < 0 or at + n > self.size:
            raise ArchiveDamaged(f"the archive ends inside {what} at byte {self.size}: a chunk of {n} bytes "
                                 f"starts at byte {at}")
        self.stream.seek(n, os.SEEK_CUR)


def _header(r: _Reader) -> tuple[int, int, int]:
    if r.bytes(5, "the header") != MAGIC:
        raise ArchiveDamaged("not a pg_dump archive (no PGDMP signature)")
    version = (r.byte("the header"), r.byte("the header"), r.byte("the header"))
    if version[:2] != WALKED:
        raise ArchiveVersionUnknown(f"archive version {'.'.join(map(str, version))} is not one this walk knows "
                                    f"({'.'.join(map(str, WALKED))}, of pg_dump 12 to 15)")
    r.int_size = r.byte("the header")
    offset_size = r.byte("the header")
    if r.byte("the header") != FORMAT_CUSTOM:
        raise ArchiveDamaged("not a custom-format archive")
    r.int("the header")  # the compression level
    for _field in range(7):  # the creation time
        r.int("the header")
    for _field in range(3):  # the database name, the server's and pg_dump's versions
        r.str("the header")
    r.offset_size = offset_size
    return version


def _toc(r: _Reader, walk: Walk) -> None:
    walk.toc_entries = r.int("the TOC")
    for n in range(walk.toc_entries):
        what = f"TOC entry {n + 1} of {walk.toc_entries}"
        dump_id = r.int(what)
        has_data = r.int(what)
        r.str(what)  # tableoid
        r.str(what)  # oid
        tag, desc = r.str(what), r.str(what)
        r.int(what)  # section
        namespace = None
        for name in ("defn", "dropStmt", "copyStmt", "namespace", "tablespace"):
            value = r.str(what)
            if name == "namespace":
                namespace = value
        r.str(what)  # tableam
        r.str(what)  # owner
        r.str(what)  # "false": with oids
        while r.str(what) is not None:  # dependencies
            pass
        flag = r.byte(what)
        offset = int.from_bytes(r.bytes(r.offset_size, what), "little")
        if has_data and flag != OFFSET_NO_DATA:
            label = " ".join(part for part in (desc, namespace, tag) if part)
            walk.data_entries.append(DataEntry(dump_id, label, offset if flag == OFFSET_SET else None))


def _chunks(r: _Reader, what: str) -> None:
    while True:
        length = r.int(what)
        if length == 0:
            return
        r.skip(length, what)


def _blocks(r: _Reader, walk: Walk, labels: dict[int, str]) -> None:
    while r.stream.tell() < r.size:
        at = r.stream.tell()
        kind = r.byte("a data block")
        dump_id = r.int("a data block")
        what = f"the data of {labels.get(dump_id, f'dump id {dump_id}')}"
        if kind == BLOCK_DATA:
            _chunks(r, what)
        elif kind == BLOCK_BLOBS:
            while r.int(what) != 0:  # each large object's oid, then its chunks
                _chunks(r, what)
        else:
            raise ArchiveDamaged(f"unknown block type {kind} at byte {at} of {r.size}")
        walk.blocks[dump_id] = at


def walk_custom_archive(path: str) -> Walk:
    """The header, the TOC's data entries and every data block of the custom archive at path.

    ArchiveDamaged when the archive ends inside any of them, or when a data entry the TOC lists has no block (or
    not where its offset points).
    """
    with open(path, "rb") as stream:
        return walk_custom_stream(stream, os.path.getsize(path))


def walk_custom_stream(stream: BinaryIO, size: int) -> Walk:
    """walk_custom_archive() of a seekable stream of size bytes, read from its start."""
    r = _Reader(stream, size)
    walk = Walk(version=_header(r), toc_entries=0, size=size)
    _toc(r, walk)
    labels = {entry.dump_id: entry.label for entry in walk.data_entries}
    _blocks(r, walk, labels)
    missing = [e for e in walk.data_entries if e.dump_id not in walk.blocks]
    if missing:
        raise ArchiveDamaged(f"the TOC lists data for {len(missing)} entr{'y' if len(missing) == 1 else 'ies'} that "
                             f"the archive does not hold: " + ", ".join(e.label for e in missing[:5]))
    moved = [e for e in walk.data_entries if e.offset is not None and walk.blocks[e.dump_id] != e.offset]
    if moved:
        raise ArchiveDamaged("the TOC points elsewhere than the data of " + ", ".join(e.label for e in moved[:5]))
    return walk
