# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup and runbook.ops.pg_backup_verify against the sandbox PostgreSQL.

The sandbox server is shared: every test works only in databases of its own (backup_test_*) and in its own
temporary backup_dir. The modules run through small playbooks generated per test, with the inventory's login
(role runbook.ops.pg_login as module_defaults for group/runbook.ops.pg), the way the roles will run them.

Where a test needs pg_dump to misbehave (exit 0 with a truncated or empty archive or a warning) or a writer to
commit between the snapshot and the dump, it gives the module a bindir whose pg_dump is a small shell script
around the real one. PostgreSQL itself is never mocked: the real pg_dump dumps from the real server.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql

from tests.conftest import Target
from tests.lib import pg_fixtures
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
BINDIR = Path("/usr/lib/postgresql/15/bin")
# Quotes, a space, $HOME and '=' (which makes pg_dump --dbname a connection string): the name must reach
# pg_dump exactly as it is, and be a directory name under backup_dir.
SOURCE_DB = "backup_test_src 'q' \"dq\" $HOME x=y"
RESTORE_DB = "backup_test_restore"
WRITER_DB = "backup_test_writer"
HOSTILE_TABLE = 'Hostile x"; DROP TABLE y; --'
REVISION = "ae1027a6acf"
EXPECTED_TABLES = [("Odd Schema", HOSTILE_TABLE), ("public", "alembic_version"), ("public", "empty_table"),
                   ("public", "events_a"), ("public", "events_b"), ("public", "items")]
TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ ", re.MULTILINE)

SOURCE_SQL = [
    'CREATE SCHEMA "Odd Schema"',
    "CREATE TABLE public.items (id bigserial PRIMARY KEY, name text NOT NULL, payload jsonb, created timestamptz, "
    "blob bytea)",
    "INSERT INTO public.items (name, payload, created, blob) SELECT 'item ' || g, jsonb_build_object('g', g), "
    "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', decode(md5(g::text), 'hex') "
    "FROM generate_series(1, 20000) g",
    sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(sql.Identifier("Odd Schema", HOSTILE_TABLE)),
    sql.SQL("INSERT INTO {} SELECT g, E'it''s a \\\\ line\\nbreak\\t' || g FROM generate_series(1, 50) g").format(
        sql.Identifier("Odd Schema", HOSTILE_TABLE)),
    "CREATE TABLE public.empty_table (id int)",
    "CREATE TABLE public.events (id int, kind text NOT NULL) PARTITION BY LIST (kind)",
    "CREATE TABLE public.events_a PARTITION OF public.events FOR VALUES IN ('a')",
    "CREATE TABLE public.events_b PARTITION OF public.events FOR VALUES IN ('b')",
    "INSERT INTO public.events SELECT g, CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 300) g",
    "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)",
    f"INSERT INTO public.alembic_version VALUES ('{REVISION}')",
    "CREATE VIEW public.item_names AS SELECT name FROM public.items",
    "ANALYZE",
]


# --- the database side ---------------------------------------------------------------------------------------

def fingerprint(target: Target, dbname: str) -> dict[str, tuple[int, str]]:
    """Per table: row count and md5 of its rows in order; per sequence: its last value."""
    found: dict[str, tuple[int, str]] = {}
    with pg_fixtures.connect(target, dbname) as conn:
        for schema, name in pg_fixtures.user_tables(conn):
            count, digest = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {} t"
            ).format(sql.Identifier(schema, name))).fetchone()
            found[f"{schema}.{name}"] = (count, digest)
        for schema, name, value in conn.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences"):
            found[f"sequence {schema}.{name}"] = (value or 0, "")
    return found


def restore(target: Target, archive: str, jobs: int = 1) -> dict[str, tuple[int, str]]:
    """pg_restore archive into a fresh scratch database and return its fingerprint."""
    pg_fixtures.recreate(target, RESTORE_DB, [])
    env = target.env
    argv = [str(BINDIR / "pg_restore"), "--no-owner", "--exit-on-error", f"--jobs={jobs}",
            f"--dbname=host={env['PGHOST']} port={env['PGPORT']} user={env['RUNBOOK_PG_ADMIN_USER']} "
            f"dbname={RESTORE_DB}", archive]
    proc = subprocess.run(argv, env=pg_fixtures.password_env(target), capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return fingerprint(target, RESTORE_DB)


def toc_count(archive: str) -> int:
    proc = subprocess.run([str(BINDIR / "pg_restore"), "--list", archive], capture_output=True, text=True,
                          check=True)
    return len(TOC_ENTRY.findall(proc.stdout))


@pytest.fixture(scope="module")
def source(sandbox: Target) -> Iterator[Target]:
    """SOURCE_DB with the tables of EXPECTED_TABLES (a hostile name, partitions, bytea, jsonb) and alembic."""
    pg_fixtures.recreate(sandbox, SOURCE_DB, SOURCE_SQL)
    yield sandbox
    pg_fixtures.drop(sandbox, SOURCE_DB)
    pg_fixtures.drop(sandbox, RESTORE_DB)


# --- the playbook side ---------------------------------------------------------------------------------------

def play(tmp_path: Path, tasks: list[dict[str, Any]], name: str = "play.yml") -> Path:
    """A playbook running tasks on the sandbox database host with the shared inventory login."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump([{
        "name": "pg_backup modules under test",
        "hosts": HOST,
        "gather_facts": False,
        "roles": ["runbook.ops.pg_login"],
        "tasks": [{
            "name": "With the inventory's PostgreSQL login",
            "module_defaults": {"group/runbook.ops.pg": "{{ __pg_login_module_defaults }}"},
            "block": tasks,
        }],
    }], sort_keys=False))
    return path


def backup_task(backup_dir: Path, dbname: str = SOURCE_DB, register: str = "backup", **options: Any) -> dict:
    return {"name": f"Back up ({register})",
            "runbook.ops.pg_backup": {"login_db": dbname, "backup_dir": str(backup_dir),
                                      "bindir": "{{ runbook_pg_bindir }}", **options},
            "register": register}


def verify_task(register: str = "verified", **options: Any) -> dict:
    return {"name": f"Verify ({register})",
            "runbook.ops.pg_backup_verify": {"bindir": "{{ runbook_pg_bindir }}", **options},
            "register": register}


def result(run: PlaybookResult, register: str) -> dict[str, Any]:
    """The result of the task registered as register (its name ends with it)."""
    found = run.host_results(HOST, f"({register})")
    assert found, f"no task ({register}) in the run (rc={run.rc}):\n{run.stdout[-3000:]}"
    return found[-1]


def run(sandbox: Target, playbook: Path, **kwargs: Any) -> PlaybookResult:
    return run_playbook(str(playbook), sandbox.inventory, **kwargs)


def backups_on_disk(backup_dir: Path, dbname: str = SOURCE_DB) -> list[tuple[str, str | None]]:
    """(directory, verified_at) of everything under backup_dir/dbname, partial directories included."""
    root = backup_dir / dbname
    if not root.exists():
        return []
    state = []
    for entry in sorted(root.iterdir()):
        manifest = entry / "manifest.json"
        state.append((entry.name, json.loads(manifest.read_text())["verified_at"] if manifest.exists() else None))
    return state


def fake_bindir(tmp_path: Path, body: str) -> Path:
    """A bindir whose pg_dump runs body (sh, $REAL is the real pg_dump, $OUT its --file) and the real pg_restore."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pg_dump"
    script.write_text(f"""#!/bin/sh
# test double: the real pg_dump, plus what a broken tool or a concurrent writer would do
set -e
REAL={BINDIR}/pg_dump
if [ "$1" = "--version" ]; then exec "$REAL" --version; fi
OUT=
for arg in "$@"; do case "$arg" in --file=*) OUT="${{arg#--file=}}";; esac; done
{body}
""")
    script.chmod(0o755)
    (bindir / "pg_restore").symlink_to(BINDIR / "pg_restore")
    return bindir


# --- backups -------------------------------------------------------------------------------------------------

def test_four_runs_custom_backup_then_reuse(source: Target, tmp_path: Path) -> None:
    """check, real, check, real: a backup, its verification, then reuse_within keeps both later runs at 0."""
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    playbook = play(tmp_path, [
        backup_task(backup_dir, reuse_within="1h"),
        {**verify_task(backup_dir=str(backup_dir), database=SOURCE_DB, id="latest"),
         "when": "backup.reused or not ansible_check_mode"},
    ])
    runs = run_four_times(str(playbook), source.inventory, read_state=lambda: backups_on_disk(backup_dir))
    password = source.env["RUNBOOK_PG_ADMIN_PASSWORD"]

    planned = result(runs.check, "backup")
    assert planned["changed"] and not planned["reused"]
    assert runs.before == [] and planned["backup_path"].startswith(f"{backup_dir}/{SOURCE_DB}/")
    cmd = planned["cmd"]
    assert cmd[0] == str(BINDIR / "pg_dump") and "--format=custom" in cmd and "--compress=1" in cmd
    assert f"dbname='{SOURCE_DB}'".replace("'q'", "\\'q\\'") in cmd[1]
    assert any(a.startswith("--snapshot=") for a in cmd)
    assert f"--file={planned['backup_path']}.partial/dump.custom" in cmd
    assert password not in json.dumps(cmd)
    assert [(t["schema"], t["name"]) for t in planned["manifest"]["tables"]] == EXPECTED_TABLES
    assert planned["manifest"]["files"] == [] and planned["manifest"]["toc_entries"] is None

    made = result(runs.real, "backup")
    manifest = made["manifest"]
    path = Path(made["backup_path"])
    assert path.parent == backup_dir / SOURCE_DB and path.name == made["id"] == manifest["id"]
    assert re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", made["id"])
    assert json.loads((path / "manifest.json").read_text())["toc_entries"] == manifest["toc_entries"]
    assert result(runs.real, "verified")["changed"] is True
    assert runs.after == [(made["id"], result(runs.real, "verified")["verified_at"])]

    again = result(runs.real_again, "backup")
    assert again["reused"] is True and again["changed"] is False and again["backup_path"] == made["backup_path"]
    assert result(runs.check_again, "backup")["reused"] is True
    assert result(runs.real_again, "verified")["changed"] is False


def test_manifest_describes_the_backup(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [backup_task(backup_dir)]))
    assert done.rc == 0, done.stdout[-3000:]
    made = result(done, "backup")
    path, manifest = Path(made["backup_path"]), made["manifest"]
    assert json.loads((path / "manifest.json").read_text()) == manifest

    with pg_fixtures.connect(source, SOURCE_DB) as conn:
        sysid, version_num, version = conn.execute(
            "SELECT system_identifier::text, current_setting('server_version_num')::int, "
            "current_setting('server_version') FROM pg_control_system()").fetchone()
    env = source.env
    assert manifest["format_version"] == 1
    assert manifest["database"] == SOURCE_DB
    assert (manifest["host"], manifest["port"]) == (env["PGHOST"], int(env["PGPORT"]))
    assert manifest["system_identifier"] == sysid
    assert (manifest["server_version_num"], manifest["server_version"]) == (version_num, version)
    assert manifest["pg_dump_version"].startswith("15.")
    assert (manifest["format"], manifest["compression"], manifest["jobs"]) == ("custom", "gzip:1", 1)
    assert (manifest["migration_tool"], manifest["migration_revision"]) == ("alembic", REVISION)
    assert manifest["verified_at"] is None and manifest["duration_s"] > 0
    # checked whole by default (a compressed custom archive: walked block by block), so the verification need
    # not read it again
    assert (manifest["data_checked"], manifest["data_check"]) == (True, "blocks")
    # where the time went; the counts ran while pg_dump did, so they do not add up to the total
    timings = made["timings"]
    assert set(timings) == {"row_counts_s", "pg_dump_s", "pg_restore_list_s", "check_data_s", "checks_and_sha256_s",
                            "manifest_s", "total_s"}, timings
    assert timings["pg_dump_s"] + timings["checks_and_sha256_s"] <= timings["total_s"]
    assert manifest["created_at"].startswith(f"{made['id'][:4]}-{made['id'][4:6]}-{made['id'][6:8]}T")

    archive = path / "dump.custom"
    assert manifest["archive"] == "dump.custom" and made["archive"] == str(archive)
    assert manifest["files"] == [{"path": "dump.custom", "size": archive.stat().st_size,
                                  "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}]
    assert manifest["size_bytes"] == archive.stat().st_size
    assert manifest["toc_entries"] == toc_count(str(archive)) > 10

    rows = {(t["schema"], t["name"]): t for t in manifest["tables"]}
    assert list(rows) == EXPECTED_TABLES
    live = fingerprint(source, SOURCE_DB)
    for (schema, name), table in rows.items():
        assert table["rows"] == live[f"{schema}.{name}"][0], (schema, name)
    assert rows[("public", "items")]["rows_estimate"] == 20000  # ANALYZE read every row of it
    assert (rows[("public", "events_a")]["rows"], rows[("public", "events_b")]["rows"]) == (100, 200)

    assert sorted(os.listdir(path.parent)) == [made["id"]]  # no partial left
    assert (path.stat().st_mode & 0o777, (path.parent).stat().st_mode & 0o777) == (0o700, 0o700)
    assert {(p.stat().st_mode & 0o777) for p in path.iterdir()} == {0o600}
    assert env["RUNBOOK_PG_ADMIN_PASSWORD"] not in (path / "manifest.json").read_text()
    assert restore(source, str(archive)) == live


def test_directory_format_with_jobs_restores_identical_data(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [backup_task(backup_dir, format="directory", jobs=2, compression="6")]))
    assert done.rc == 0, done.stdout[-3000:]
    made = result(done, "backup")
    manifest, archive = made["manifest"], Path(made["archive"])
    assert "--jobs=2" in made["cmd"] and "--compress=6" in made["cmd"] and "--format=directory" in made["cmd"]
    assert (manifest["format"], manifest["compression"], manifest["jobs"]) == ("directory", "gzip:6", 2)
    # one compressed file per table: only decompressing finds one cut short
    assert (manifest["data_checked"], manifest["data_check"]) == (True, "read_back")
    on_disk = sorted(str(p.relative_to(archive.parent)) for p in archive.rglob("*") if p.is_file())
    assert [f["path"] for f in manifest["files"]] == on_disk
    assert "dump/toc.dat" in on_disk and sum(p.endswith(".dat.gz") for p in on_disk) == len(EXPECTED_TABLES)
    assert manifest["toc_entries"] == toc_count(str(archive))
    assert restore(source, str(archive), jobs=2) == fingerprint(source, SOURCE_DB)


def test_exact_counts_are_the_snapshot_while_a_writer_inserts(sandbox: Target, tmp_path: Path) -> None:
    """A writer commits all through the backup, and 100 rows certainly between the snapshot and pg_dump's start:
    the manifest's count and the restored rows agree with each other, not with the live table."""
    pg_fixtures.recreate(sandbox, WRITER_DB, ["CREATE TABLE ticks (id bigserial PRIMARY KEY, note text)",
                                   "INSERT INTO ticks (note) SELECT 'before' FROM generate_series(1, 1000)"])
    env = sandbox.env
    argv_log, env_log = tmp_path / "argv.log", tmp_path / "env.log"
    bindir = fake_bindir(tmp_path, f"""
printf '%s\\n' "$@" > {argv_log}
if [ -n "$PGPASSWORD" ]; then echo PGPASSWORD=set > {env_log}; fi
{BINDIR}/psql -X -q -v ON_ERROR_STOP=1 "host={env['PGHOST']} port={env['PGPORT']} user={env['RUNBOOK_PG_ADMIN_USER']} \
dbname={WRITER_DB}" -c "INSERT INTO ticks (note) SELECT 'after the snapshot' FROM generate_series(1, 100)"
exec "$REAL" "$@"
""")
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    stop, inserted = threading.Event(), [0]

    def writer() -> None:
        with pg_fixtures.connect(sandbox, WRITER_DB) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO ticks (note) VALUES ('writer')")
                inserted[0] += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        done = run(sandbox, play(tmp_path, [backup_task(backup_dir, dbname=WRITER_DB, bindir=str(bindir))]))
    finally:
        stop.set()
        thread.join()
    try:
        assert done.rc == 0, done.stdout[-3000:]
        made = result(done, "backup")
        counted = {t["name"]: t["rows"] for t in made["manifest"]["tables"]}["ticks"]
        with pg_fixtures.connect(sandbox, WRITER_DB) as conn:
            live = conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        assert counted >= 1000
        assert live >= counted + 100 and inserted[0] > 0
        assert restore(sandbox, made["archive"])["public.ticks"][0] == counted
        # the password reached pg_dump in its environment only
        assert env["RUNBOOK_PG_ADMIN_PASSWORD"] not in argv_log.read_text()
        assert any(a.startswith("--snapshot=") for a in argv_log.read_text().splitlines())
        assert env_log.read_text().strip() == "PGPASSWORD=set"
    finally:
        pg_fixtures.drop(sandbox, WRITER_DB)


def test_wrong_password_fails_clearly_and_leaks_nothing(source: Target, tmp_path: Path) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [backup_task(backup_dir, login_password=wrong)]))
    assert done.rc != 0 and HOST in done.failed_hosts()
    failed = result(done, "backup")
    assert failed["event"] == "runner_on_failed"
    assert "password authentication failed" in failed["msg"]
    assert f"cannot connect to PostgreSQL at {source.env['PGHOST']}:{source.env['PGPORT']}" in failed["msg"]
    everything = done.stdout + json.dumps(done.events)
    assert wrong not in everything
    assert source.env["RUNBOOK_PG_ADMIN_PASSWORD"] not in everything
    assert os.listdir(backup_dir) == []


def test_check_mode_reads_for_real_and_writes_nothing(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [
        backup_task(backup_dir, register="exact", format="directory", jobs=2),
        backup_task(backup_dir, register="estimate", row_counts="estimate"),
        backup_task(backup_dir, register="no_counts", row_counts="none"),
    ]), check=True)
    assert done.rc == 0, done.stdout[-3000:]
    assert os.listdir(backup_dir) == []
    exact, estimate, none = (result(done, r) for r in ("exact", "estimate", "no_counts"))
    assert all(r["changed"] and not r["reused"] for r in (exact, estimate, none))
    assert "--jobs=2" in exact["cmd"] and f"--file={exact['backup_path']}.partial/dump" in exact["cmd"]
    items = {r: {t["name"]: t for t in res["manifest"]["tables"]}["items"]
             for r, res in (("exact", exact), ("estimate", estimate), ("none", none))}
    assert items["exact"] == {"schema": "public", "name": "items", "rows": 20000, "rows_estimate": 20000}
    assert items["estimate"] == {"schema": "public", "name": "items", "rows": None, "rows_estimate": 20000}
    assert items["none"] == {"schema": "public", "name": "items", "rows": None, "rows_estimate": None}


def test_an_existing_id_is_returned_unchanged(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [backup_task(backup_dir, register="first", id="nightly-1"),
                                       backup_task(backup_dir, register="second", id="nightly-1")]))
    assert done.rc == 0, done.stdout[-3000:]
    first, second = result(done, "first"), result(done, "second")
    assert first["changed"] and not first["reused"] and first["id"] == "nightly-1"
    assert not second["changed"] and second["reused"] and second["manifest"] == first["manifest"]
    assert backups_on_disk(backup_dir) == [("nightly-1", None)]


def test_the_migration_revision_of_prisma_or_none(sandbox: Target, tmp_path: Path) -> None:
    prisma, plain = "backup_test_prisma", "backup_test_plain"
    pg_fixtures.recreate(sandbox, prisma, [
        "CREATE TABLE _prisma_migrations (id varchar(36) PRIMARY KEY, migration_name varchar(255) NOT NULL, "
        "finished_at timestamptz, rolled_back_at timestamptz)",
        "INSERT INTO _prisma_migrations VALUES "
        "('1', '20260101000000_init', '2026-01-01', NULL), ('2', '20260201000000_orders', '2026-02-01', NULL), "
        "('3', '20260301000000_rolled_back', '2026-03-01', '2026-03-02'), "
        "('4', '20260401000000_unfinished', NULL, NULL)",
    ])
    pg_fixtures.recreate(sandbox, plain, ["CREATE TABLE t (id int)"])
    try:
        backup_dir = tmp_path / "backups"
        backup_dir.mkdir()
        done = run(sandbox, play(tmp_path, [backup_task(backup_dir, dbname=prisma, register="prisma"),
                                            backup_task(backup_dir, dbname=plain, register="plain")]), check=True)
        assert done.rc == 0, done.stdout[-3000:]
        found = result(done, "prisma")["manifest"]
        assert (found["migration_tool"], found["migration_revision"]) == ("prisma", "20260201000000_orders")
        found = result(done, "plain")["manifest"]
        assert (found["migration_tool"], found["migration_revision"]) == (None, None)
    finally:
        pg_fixtures.drop(sandbox, prisma)
        pg_fixtures.drop(sandbox, plain)


HALF = '"$REAL" "$@"\nsize=$(stat -c %s "$OUT")\ntruncate -s $((size / 2)) "$OUT"'


@pytest.mark.parametrize(("body", "options", "message"), [
    # compressed (the default, gzip:1): the block walk finds where the archive ends
    (HALF, {}, "pg_dump exited 0 but dump.custom is not whole: the archive ends inside the data of TABLE DATA public"),
    # uncompressed: read back with pg_restore
    (HALF, {"compression": "none"}, "reading back dump.custom (pg_restore --file=/dev/null) failed"),
    ('"$REAL" "$@"\necho "pg_dump: warning: the operator must hear of this" >&2', {},
     "pg_dump exited 0 but reported: pg_dump: warning: the operator must hear of this"),
    (': > "$OUT"', {}, "pg_dump exited 0 but dump.custom is empty"),
    ("exit 0", {}, "pg_dump exited 0 but wrote no dump.custom"),
], ids=["truncated", "truncated-uncompressed", "warning", "empty", "no-archive"])
def test_a_pg_dump_that_exits_0_with_a_bad_archive_is_refused(source: Target, tmp_path: Path, body: str,
                                                              options: dict[str, Any], message: str) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    bindir = fake_bindir(tmp_path, body)
    done = run(source, play(tmp_path, [backup_task(backup_dir, bindir=str(bindir), **options)]))
    assert done.rc != 0
    failed = result(done, "backup")
    assert failed["event"] == "runner_on_failed" and message in failed["msg"], failed["msg"]
    assert backups_on_disk(backup_dir) == []  # the partial directory is gone too
    assert not (backup_dir / SOURCE_DB).exists()  # and the database directory this first backup created


def test_what_this_pg_dump_cannot_do_is_refused_before_anything_runs(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    cases = {
        "lz4": ({"compression": "lz4"}, "compression lz4: pg_dump 15.18 supports only gzip (levels 1-9) or none; "
                                        "lz4 needs pg_dump 16 or later"),
        "zstd": ({"compression": "zstd:3"}, "zstd needs pg_dump 16 or later"),
        "level": ({"compression": "gzip:12"}, "compression 'gzip:12': gzip levels are 1-9"),
        "jobs": ({"jobs": 2}, "jobs > 1 needs format=directory"),
        "id": ({"id": "../escape"}, "id '../escape' is not valid"),
        "reuse": ({"reuse_within": "soon"}, "reuse_within: not a duration"),
    }
    tasks = [{**backup_task(backup_dir, register=name, **options), "ignore_errors": True}
             for name, (options, _message) in cases.items()]
    tasks.append({**backup_task(tmp_path / "missing", register="missing_dir"), "ignore_errors": True})
    done = run(source, play(tmp_path, tasks))
    for name, (_options, message) in cases.items():
        failed = result(done, name)
        assert failed["event"] == "runner_on_failed" and message in failed["msg"], (name, failed["msg"])
    assert "does not exist or is not a directory" in result(done, "missing_dir")["msg"]
    assert os.listdir(backup_dir) == [] and not (tmp_path / "missing").exists()


# --- verification --------------------------------------------------------------------------------------------

@pytest.fixture
def directory_backup(source: Target, tmp_path: Path) -> dict[str, Any]:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    done = run(source, play(tmp_path, [backup_task(backup_dir, format="directory")], name="backup.yml"))
    assert done.rc == 0, done.stdout[-3000:]
    return result(done, "backup")


def test_verify_passes_once_then_finds_every_damage(source: Target, tmp_path: Path,
                                                    directory_backup: dict[str, Any]) -> None:
    path = Path(directory_backup["backup_path"])
    playbook = play(tmp_path, [verify_task(path=str(path))], name="verify.yml")
    manifest_file = path / "manifest.json"

    planned = run(source, playbook, check=True)
    assert planned.rc == 0 and result(planned, "verified")["changed"] is True, planned.stdout[-3000:]
    assert json.loads(manifest_file.read_text())["verified_at"] is None  # check mode wrote nothing

    first = run(source, playbook, diff=True)
    assert first.rc == 0 and first.changed(HOST) == 1, first.stdout[-3000:]
    verified = result(first, "verified")
    assert verified["verified_at"] == verified["checked_at"]
    assert verified["diff"] == {"before": {"verified_at": None}, "after": {"verified_at": verified["verified_at"]}}
    assert json.loads(manifest_file.read_text())["verified_at"] == verified["verified_at"]
    assert verified["files_checked"] == len(directory_backup["manifest"]["files"])
    good_manifest = manifest_file.read_bytes()

    again = run(source, playbook)
    assert again.rc == 0 and again.changed(HOST) == 0, again.stdout[-3000:]
    assert result(again, "verified")["verified_at"] == verified["verified_at"]
    assert result(again, "verified")["checked_at"] > verified["checked_at"]

    data = max((path / "dump").glob("*.dat.gz"), key=lambda p: p.stat().st_size)
    original = data.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    data.write_bytes(bytes(flipped))
    broken = run(source, playbook)
    failed = result(broken, "verified")
    assert broken.rc != 0 and f"dump/{data.name}: sha256 differs" in failed["msg"], failed["msg"]
    assert [(p["path"], p["problem"]) for p in failed["problems"]] == [(f"dump/{data.name}", "sha256")]
    assert manifest_file.read_bytes() == good_manifest  # a failed verification changes nothing
    data.write_bytes(original)

    data.unlink()
    failed = result(run(source, playbook), "verified")
    assert f"dump/{data.name}: missing" in failed["msg"], failed["msg"]
    data.write_bytes(original)

    (path / "dump" / "9999.dat.gz").write_bytes(b"stray")
    failed = result(run(source, playbook), "verified")
    assert "dump/9999.dat.gz: extra file" in failed["msg"], failed["msg"]
    (path / "dump" / "9999.dat.gz").unlink()

    tampered = json.loads(good_manifest)
    tampered["toc_entries"] += 1
    manifest_file.write_text(json.dumps(tampered))
    failed = result(run(source, playbook), "verified")
    count = tampered["toc_entries"] - 1
    assert f"pg_restore --list counts {count} TOC entries, the manifest {count + 1}" in failed["msg"], failed["msg"]
    manifest_file.write_bytes(good_manifest)

    repaired = run(source, playbook)
    assert repaired.rc == 0 and repaired.changed(HOST) == 0, repaired.stdout[-3000:]


def test_verify_refuses_a_truncated_custom_dump(source: Target, tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    made = run(source, play(tmp_path, [backup_task(backup_dir)], name="backup.yml"))
    assert made.rc == 0, made.stdout[-3000:]
    path = Path(result(made, "backup")["backup_path"])
    archive, manifest_file = path / "dump.custom", path / "manifest.json"
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    playbook = play(tmp_path, [verify_task(backup_dir=str(backup_dir), database=SOURCE_DB)], name="verify.yml")

    failed = result(run(source, playbook), "verified")
    assert f"dump.custom: size differs (manifest {len(whole)}, on disk {len(whole) // 2})" in failed["msg"]

    # the same archive, with a manifest that agrees with it: the data reading back is what still catches it,
    # asked for (check_data=true), or by default when the manifest says the backup's run did not read it back
    manifest = json.loads(manifest_file.read_text())
    manifest["files"] = [{"path": "dump.custom", "size": len(whole) // 2,
                          "sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}]
    manifest["size_bytes"] = len(whole) // 2
    assert manifest["data_checked"] is True
    manifest_file.write_text(json.dumps(manifest))
    asked = play(tmp_path, [verify_task(backup_dir=str(backup_dir), database=SOURCE_DB, check_data=True)],
                 name="verify-data.yml")
    done = run(source, asked)
    failed = result(done, "verified")
    assert done.rc != 0 and "reading back dump.custom (pg_restore --file=/dev/null) failed" in failed["msg"]
    manifest_file.write_text(json.dumps({**manifest, "data_checked": False}))
    done = run(source, playbook)
    failed = result(done, "verified")
    assert done.rc != 0 and "reading back dump.custom (pg_restore --file=/dev/null) failed" in failed["msg"]
    assert json.loads(manifest_file.read_text())["verified_at"] is None


def test_verify_reads_the_data_back_only_when_the_backup_did_not(source: Target, tmp_path: Path) -> None:
    """Once per backup: pg_backup checks the data by default and says so in the manifest (data_checked);
    the verification then checks the files and the TOC only, unless told to read the data, or the backup did
    not (check_data=false), or the manifest is from before data_checked was recorded."""
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    made = run(source, play(tmp_path, [backup_task(backup_dir, register="read"),
                                       backup_task(backup_dir, register="unread", check_data=False)],
                            name="backup.yml"))
    assert made.rc == 0, made.stdout[-3000:]
    read, unread = result(made, "read"), result(made, "unread")
    assert (read["manifest"]["data_checked"], unread["manifest"]["data_checked"]) == (True, False)
    assert (read["manifest"]["data_check"], unread["manifest"]["data_check"]) == ("blocks", None)
    assert "check_data_s" in read["timings"] and "check_data_s" not in unread["timings"]
    old_style = Path(read["backup_path"]).parent / "old-style"
    shutil.copytree(read["backup_path"], old_style)
    manifest = json.loads((old_style / "manifest.json").read_text())
    del manifest["data_checked"]
    (old_style / "manifest.json").write_text(json.dumps({**manifest, "id": "old-style"}))
    done = run(source, play(tmp_path, [
        verify_task(register="of_read", path=read["backup_path"]),
        verify_task(register="of_unread", path=unread["backup_path"]),
        verify_task(register="of_old", path=str(old_style)),
        verify_task(register="asked", path=read["backup_path"], check_data=True),
        verify_task(register="never", path=unread["backup_path"], check_data=False),
    ], name="verify.yml"))
    assert done.rc == 0, done.stdout[-3000:]
    checked = {name: result(done, name)["data_checked"] for name in ("of_read", "of_unread", "of_old", "asked", "never")}
    assert checked == {"of_read": False, "of_unread": True, "of_old": True, "asked": True, "never": False}
    assert all(result(done, name)["duration_s"] >= 0 for name in checked)
