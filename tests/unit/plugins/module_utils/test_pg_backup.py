# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure logic of runbook.ops.pg_backup: compression vs pg_dump versions, TOC counting, argv, ids, listing."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    BackupError,
    check_database_name,
    check_id,
    format_utc,
    id_sort_key,
    new_id,
    parse_utc,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_catalog import (
    discard,
    find_backup,
    find_reusable,
    list_backups,
    next_id,
    reserve,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import tree_files, write_manifest
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_toc import parse_toc
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import (
    Compression,
    ToolVersion,
    compression_args,
    conninfo,
    dump_argv,
    parse_compression,
    parse_tool_version,
    tool_problems,
)

# pg_restore --list of a custom archive, as pg_restore 15 prints it (a table in a schema with a space in its name)
TOC_CUSTOM = """\
;
; Archive created at 2026-12-01 08:31:29 UTC
;     dbname: backup_test_probe
;     TOC Entries: 14
;     Compression: 1
;     Dump Version: 1.14-0
;     Format: CUSTOM
;     Integer: 4 bytes
;     Offset: 8 bytes
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)
;
;
; Selected TOC Entries:
;
6; 2615 16568 SCHEMA - s runbook_admin
217; 1259 16572 SEQUENCE public sq runbook_admin
215; 1259 16561 TABLE public t runbook_admin
3360; 0 0 COMMENT public TABLE t runbook_admin
218; 1259 16573 VIEW public vv runbook_admin
216; 1259 16569 TABLE s Odd name runbook_admin
3351; 0 16561 TABLE DATA public t runbook_admin
3352; 0 16569 TABLE DATA s Odd name runbook_admin
3361; 0 0 SEQUENCE SET public sq runbook_admin
3207; 2606 16567 CONSTRAINT public t t_pkey runbook_admin
"""

# An empty database: a header, no entries
TOC_EMPTY = """\
;
; Archive created at 2026-12-01 08:34:15 UTC
;     dbname: backup_test_empty
;     TOC Entries: 4
;     Compression: -1
;     Dump Version: 1.14-0
;     Format: DIRECTORY
;     Integer: 4 bytes
;     Offset: 8 bytes
;     Dumped from database version: 15.18 (Debian 15.18-0+deb12u1)
;     Dumped by pg_dump version: 15.18 (Debian 15.18-0+deb12u1)
;
;
; Selected TOC Entries:
;
"""

PG15 = parse_tool_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")
PG16 = parse_tool_version("pg_dump (PostgreSQL) 16.4")
PG17DEV = parse_tool_version("pg_dump (PostgreSQL) 17devel")
NOW = datetime(2026, 12, 1, 8, 30, 0, tzinfo=timezone.utc)
SYSID = "7441234567890123456"


# --- tool versions ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "major", "minor"), [
    ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 15, 18),
    ("pg_dump (PostgreSQL) 16.4\n", 16, 4),
    ("pg_restore (PostgreSQL) 17devel", 17, 0),
    ("pg_dump (PostgreSQL) 16beta2", 16, 0),
    ("pg_dump (PostgreSQL) 9.6.24", 9, 6),
])
def test_parse_tool_version(text: str, major: int, minor: int) -> None:
    version = parse_tool_version(text)
    assert (version.major, version.minor) == (major, minor)


def test_tool_version_release_is_what_follows_the_product_name() -> None:
    assert PG15.release == "15.18 (Debian 15.18-0+deb12u1)"
    assert PG15.number == "15.18"


@pytest.mark.parametrize("text", ["", "pg_dump: command not found", "PostgreSQL 15.18"])
def test_parse_tool_version_refuses_other_output(text: str) -> None:
    with pytest.raises(ValueError):
        parse_tool_version(text)


# --- compression ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (6, "gzip:6"), ("6", "gzip:6"), (" 9 ", "gzip:9"), (0, "none"), ("0", "none"), ("none", "none"),
    ("NONE", "none"), ("gzip", "gzip"), ("gzip:1", "gzip:1"), ("gzip:level=4", "gzip:4"), ("lz4", "lz4"),
    ("lz4:12", "lz4:12"), ("zstd", "zstd"), ("zstd:3", "zstd:3"), ("zstd:level=19", "zstd:19"),
    ("ZSTD:22", "zstd:22"),
])
def test_parse_compression(value: Any, expected: str) -> None:
    assert str(parse_compression(value)) == expected


@pytest.mark.parametrize(("value", "message"), [
    (10, "a bare level is gzip's, 0-9"), ("gzip:0", "gzip levels are 1-9"), ("gzip:10", "gzip levels are 1-9"),
    ("lz4:13", "lz4 levels are 1-12"), ("zstd:23", "zstd levels are 1-22"), ("zstd:fast", "must be a number"),
    ("zstd:workers=4", "must be a number"), ("brotli", "is not valid"), ("", "is not valid"),
    ("none:1", "is not valid"), (True, "is not valid"), (None, "is not valid"), ("-1", "is not valid"),
])
def test_parse_compression_refuses(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_compression(value)


@pytest.mark.parametrize(("compression", "version", "args"), [
    ("none", PG15, ["--compress=0"]),
    ("gzip", PG15, []),  # pg_dump 15's own default: zlib's default level
    ("gzip:1", PG15, ["--compress=1"]),
    ("9", PG15, ["--compress=9"]),
    ("none", PG16, ["--compress=none"]),
    ("gzip:6", PG16, ["--compress=gzip:6"]),
    ("lz4", PG16, ["--compress=lz4"]),
    ("zstd:3", PG16, ["--compress=zstd:3"]),
    ("lz4:1", PG17DEV, ["--compress=lz4:1"]),
])
def test_compression_args(compression: str, version: ToolVersion, args: list[str]) -> None:
    assert compression_args(parse_compression(compression), version) == args


@pytest.mark.parametrize("compression", ["lz4", "lz4:4", "zstd", "zstd:3"])
def test_pg_dump_15_refuses_lz4_and_zstd_with_the_reason(compression: str) -> None:
    with pytest.raises(ValueError) as err:
        compression_args(parse_compression(compression), PG15)
    assert "pg_dump 15.18 supports only gzip" in str(err.value)
    assert "needs pg_dump 16 or later" in str(err.value)


# --- the TOC -------------------------------------------------------------------------------------------------

def test_parse_toc_counts_the_listed_entries_not_the_header() -> None:
    toc = parse_toc(TOC_CUSTOM)
    assert toc.count == 10
    assert toc.header["TOC Entries"] == "14"  # includes ENCODING, STDSTRINGS... which --list does not print
    assert toc.header["Format"] == "CUSTOM"
    assert toc.header["Dumped by pg_dump version"] == "15.18 (Debian 15.18-0+deb12u1)"
    assert "Archive created at 2026-12-01 08" not in toc.header


def test_parse_toc_data_oids_are_the_tables_with_data() -> None:
    toc = parse_toc(TOC_CUSTOM)
    assert toc.data_oids == {16561, 16569}
    assert [e.dump_id for e in toc.entries[:2]] == [6, 217]


def test_parse_toc_of_an_empty_database_has_no_entries() -> None:
    toc = parse_toc(TOC_EMPTY)
    assert toc.count == 0
    assert toc.header["Format"] == "DIRECTORY"


def test_parse_toc_skips_commented_entries() -> None:
    # a list edited for pg_restore -L comments entries out with ';'
    text = TOC_CUSTOM.replace("3352; 0 16569 TABLE DATA", ";3352; 0 16569 TABLE DATA")
    toc = parse_toc(text)
    assert toc.count == 9
    assert toc.data_oids == {16561}


def test_parse_toc_of_materialized_view_data() -> None:
    toc = parse_toc(TOC_EMPTY + "3400; 0 16600 MATERIALIZED VIEW DATA public mv owner\n")
    assert toc.count == 1 and toc.data_oids == {16600}


@pytest.mark.parametrize(("stderr", "problem"), [
    ("", False),
    ("\n  \n", False),
    ("pg_dump: warning: could not find where to insert IF EXISTS in statement", True),
    ("pg_dump: error: query failed: ERROR:  permission denied for table t", True),
    ("pg_restore: error: could not read from input file: end of file", True),
    ("pg_dump: FATAL: out of memory", True),
    ("pg_dump: last built-in OID is 16383", False),  # --verbose chatter is not a problem
])
def test_tool_problems(stderr: str, problem: bool) -> None:
    assert bool(tool_problems(stderr)) is problem


# --- argv ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "quoted"), [
    ("app", "dbname='app'"),
    ("x=y host=evil", "dbname='x=y host=evil'"),
    ("it's", "dbname='it\\'s'"),
    ("back\\slash", "dbname='back\\\\slash'"),
    ("$HOME", "dbname='$HOME'"),
])
def test_conninfo_quotes_every_value(value: str, quoted: str) -> None:
    assert conninfo({"dbname": value}) == quoted


def test_conninfo_leaves_out_the_password_and_empty_values() -> None:
    text = conninfo({"host": "db1", "port": 5432, "user": "u", "password": "s3cret", "dbname": "app",
                     "sslrootcert": None, "options": ""})
    assert text == "host='db1' port='5432' user='u' dbname='app'"
    assert "s3cret" not in text


@pytest.mark.parametrize(("fmt", "jobs", "has_jobs"), [("custom", 1, False), ("directory", 1, False),
                                                       ("directory", 4, True), ("custom", 4, False)])
def test_dump_argv(fmt: str, jobs: int, has_jobs: bool) -> None:
    argv = dump_argv("/bin/pg_dump", connection="dbname='app'", fmt=fmt, archive="/b/app/x.partial/dump",
                     jobs=jobs, compression=["--compress=1"], snapshot="00000003-0000001B-1")
    assert argv[:5] == ["/bin/pg_dump", "--dbname=dbname='app'", "--no-password", f"--format={fmt}",
                        "--file=/b/app/x.partial/dump"]
    assert ("--jobs=4" in argv) is has_jobs
    assert argv[-2:] == ["--compress=1", "--snapshot=00000003-0000001B-1"]


# --- ids, names, times ---------------------------------------------------------------------------------------

def test_new_id_is_the_utc_second() -> None:
    assert new_id(NOW) == "20261201T083000Z"
    assert new_id(NOW.astimezone(timezone(timedelta(hours=2)))) == "20261201T083000Z"
    assert new_id(NOW, 2) == "20261201T083000Z-2"


def test_id_sort_key_orders_suffixes_numerically() -> None:
    ids = ["20261201T083000Z-10", "20261201T083001Z", "20261201T083000Z", "20261201T083000Z-2"]
    assert sorted(ids, key=id_sort_key) == ["20261201T083000Z", "20261201T083000Z-2", "20261201T083000Z-10",
                                            "20261201T083001Z"]


@pytest.mark.parametrize(("value", "ok"), [
    ("20261201T083000Z", True), ("nightly-2026.12.01_a", True), ("a" * 128, True), ("a" * 129, False),
    ("", False), ("-x", False), (".hidden", False), ("a/b", False), ("a b", False), ("latest", False),
    ("x.partial", False), ("ünïcode", False), ("..", False),
])
def test_check_id(value: str, ok: bool) -> None:
    assert (check_id(value) is None) is ok


@pytest.mark.parametrize(("name", "ok"), [("app", True), ("my db 'x' $HOME", True), ("a/b", False), (".", False),
                                          ("..", False), ("", False)])
def test_check_database_name(name: str, ok: bool) -> None:
    assert (check_database_name(name) is None) is ok


def test_utc_times_round_trip() -> None:
    text = format_utc(NOW + timedelta(microseconds=123456))
    assert text == "2026-12-01T08:30:00.123Z"
    assert parse_utc(text) == NOW + timedelta(milliseconds=123)


@pytest.mark.parametrize("text", ["2026-12-01T08:30:00", "2026-12-01T08:30:00+00:00", "yesterday", None, 5])
def test_parse_utc_refuses_times_that_are_not_utc(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_utc(text)


# --- listing, reuse, reserving ------------------------------------------------------------------------------

def make_backup(root: Path, database: str, backup_id: str, created: datetime, *, verified: bool = False,
                sysid: str | None = SYSID) -> Path:
    path = root / database / backup_id
    path.mkdir(parents=True)
    (path / "dump.custom").write_bytes(b"PGDMP" + backup_id.encode())
    files = tree_files(str(path))
    write_manifest(str(path), {
        "format_version": 1, "id": backup_id, "created_at": format_utc(created), "database": database,
        "host": "127.0.0.1", "port": 5432, "server_version": "15.18", "server_version_num": 150018,
        "system_identifier": sysid, "pg_dump_version": "15.18", "format": "custom", "compression": "gzip:1",
        "jobs": 1, "archive": "dump.custom", "files": files, "size_bytes": sum(f["size"] for f in files),
        "toc_entries": 3, "row_counts": "exact", "tables": [], "migration_tool": None, "migration_revision": None,
        "duration_s": 0.5, "verified_at": format_utc(created + timedelta(minutes=1)) if verified else None,
    })
    return path


def test_list_backups_newest_first_by_created_at_not_by_name(tmp_path: Path) -> None:
    make_backup(tmp_path, "app", "zzz-oldest", NOW - timedelta(days=2))
    make_backup(tmp_path, "app", "20261201T083000Z", NOW)
    make_backup(tmp_path, "app", "20261201T083000Z-2", NOW)  # the same second: the suffix decides
    make_backup(tmp_path, "app", "aaa-middle", NOW - timedelta(days=1))
    make_backup(tmp_path, "other", "20261202T000000Z", NOW + timedelta(days=1))
    listing = list_backups(str(tmp_path), "app")
    assert [b.id for b in listing.backups] == ["20261201T083000Z-2", "20261201T083000Z", "aaa-middle", "zzz-oldest"]
    assert listing.invalid == [] and listing.partial == []


def test_list_backups_sets_aside_partial_and_invalid_directories(tmp_path: Path) -> None:
    make_backup(tmp_path, "app", "good", NOW)
    (tmp_path / "app" / "20261201T090000Z.partial").mkdir()
    (tmp_path / "app" / "no-manifest").mkdir()
    (tmp_path / "app" / "bad-json").mkdir()
    (tmp_path / "app" / "bad-json" / "manifest.json").write_text("{not json")
    wrong = make_backup(tmp_path, "app", "renamed", NOW)
    os.rename(wrong, tmp_path / "app" / "renamed-by-hand")  # the manifest's id no longer matches its directory
    (tmp_path / "app" / "stray-file").write_text("x")
    listing = list_backups(str(tmp_path), "app")
    assert [b.id for b in listing.backups] == ["good"]
    assert listing.partial == [str(tmp_path / "app" / "20261201T090000Z.partial")]
    errors = {bad["id"]: bad["error"] for bad in listing.invalid}
    assert set(errors) == {"no-manifest", "bad-json", "renamed-by-hand"}
    assert "no manifest.json" in errors["no-manifest"]
    assert "cannot be read as JSON" in errors["bad-json"]
    assert "not 'renamed-by-hand'" in errors["renamed-by-hand"]


def test_list_backups_of_a_database_never_backed_up_is_empty(tmp_path: Path) -> None:
    assert list_backups(str(tmp_path), "app").backups == []


def test_find_backup(tmp_path: Path) -> None:
    make_backup(tmp_path, "app", "old", NOW - timedelta(hours=1))
    make_backup(tmp_path, "app", "new", NOW)
    (tmp_path / "app" / "broken").mkdir()
    assert find_backup(str(tmp_path), "app", "latest")[0].id == "new"
    assert find_backup(str(tmp_path), "app", "old")[0].id == "old"
    with pytest.raises(BackupError, match="no manifest.json"):
        find_backup(str(tmp_path), "app", "broken")
    with pytest.raises(BackupError, match="no backup 'gone'"):
        find_backup(str(tmp_path), "app", "gone")
    with pytest.raises(BackupError, match="no complete backup of database 'other'"):
        find_backup(str(tmp_path), "other", "latest")


@pytest.mark.parametrize(("age", "verified", "sysid", "reused"), [
    (timedelta(minutes=30), True, SYSID, True),
    (timedelta(minutes=30), True, None, True),  # identity unknown on one side: the name decides
    (timedelta(minutes=30), False, SYSID, False),  # never verified
    (timedelta(minutes=61), True, SYSID, False),  # too old
    (timedelta(minutes=30), True, "1111111111111111111", False),  # another cluster's database of that name
    (timedelta(minutes=-5), True, SYSID, False),  # from the future: a clock went wrong, do not trust it
])
def test_find_reusable(tmp_path: Path, age: timedelta, verified: bool, sysid: str | None, reused: bool) -> None:
    make_backup(tmp_path, "app", "b1", NOW - age, verified=verified, sysid=sysid)
    found = find_reusable(list_backups(str(tmp_path), "app").backups, max_age_s=3600, now=NOW,
                          system_identifier=SYSID)
    assert (found is not None) is reused


def test_find_reusable_skips_a_backup_with_a_missing_file_and_zero_means_never(tmp_path: Path) -> None:
    gone = make_backup(tmp_path, "app", "newer", NOW - timedelta(minutes=1), verified=True)
    make_backup(tmp_path, "app", "older", NOW - timedelta(minutes=2), verified=True)
    (gone / "dump.custom").unlink()
    backups = list_backups(str(tmp_path), "app").backups
    assert find_reusable(backups, max_age_s=3600, now=NOW, system_identifier=SYSID).id == "older"
    assert find_reusable(backups, max_age_s=0, now=NOW, system_identifier=SYSID) is None


def test_reserve_takes_the_next_free_id_of_the_second(tmp_path: Path) -> None:
    first = reserve(str(tmp_path), "app", NOW)
    second = reserve(str(tmp_path), "app", NOW)
    assert first == ("20261201T083000Z", str(tmp_path / "app" / "20261201T083000Z.partial"))
    assert second[0] == "20261201T083000Z-2"
    assert os.stat(first[1]).st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "app").st_mode & 0o777 == 0o700
    assert next_id(str(tmp_path), "app", NOW) == "20261201T083000Z-3"
    assert next_id(str(tmp_path), "app", NOW, "mine") == "mine"


def test_reserve_refuses_an_explicit_id_that_exists(tmp_path: Path) -> None:
    make_backup(tmp_path, "app", "nightly", NOW)
    with pytest.raises(BackupError, match="already exists"):
        reserve(str(tmp_path), "app", NOW, "nightly")
    reserve(str(tmp_path), "app", NOW, "other")
    with pytest.raises(BackupError, match="already exists"):
        reserve(str(tmp_path), "app", NOW, "other")  # its .partial is being written


def test_discard_removes_the_database_dir_only_when_new_and_empty(tmp_path: Path) -> None:
    partial = reserve(str(tmp_path), "new", NOW)[1]
    discard(partial, remove_database_dir=True)
    assert not (tmp_path / "new").exists()  # a failed first backup leaves nothing behind
    partial = reserve(str(tmp_path), "old", NOW)[1]
    discard(partial, remove_database_dir=False)
    assert os.listdir(tmp_path / "old") == []  # it existed before this run: kept, even empty
    partial = reserve(str(tmp_path), "busy", NOW)[1]
    other = reserve(str(tmp_path), "busy", NOW)[1]  # another run's backup being written
    discard(partial, remove_database_dir=True)
    assert os.listdir(tmp_path / "busy") == [os.path.basename(other)]


def test_compression_is_a_value() -> None:
    assert Compression("gzip", 6) == parse_compression("6")
