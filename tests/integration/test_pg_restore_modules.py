# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_restore and runbook.ops.pg_database_swap against the sandbox PostgreSQL.

Other developers share the server, so every database here is named restore_test_<tag>_* (tag: random, per
test) and dropped at the end; sessions are ended only in those databases. Backups are made in a temporary
directory in the runbook.ops layout: with plain pg_dump and a manifest written by the backup module_utils, and
once through runbook.ops.pg_backup itself. The modules run through small generated playbooks against the
inventory's sandbox-db, with the login of roles/pg_login's mapping (the modules are not in the pg action group
yet, so the mapping is passed to each task).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.rows import dict_row

from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    MANIFEST_VERSION,
    read_manifest,
    tree_files,
    write_manifest,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_snapshot import (
    manifest_tables,
    read_identity,
    read_migration,
    read_tables,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_toc import parse_toc
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import conninfo
from tests.conftest import ROOT, Target
from tests.lib.runner import PlaybookResult, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
BINDIR = Path("/usr/lib/postgresql/15/bin")
TEST_APP = "restore_test_client"
LOGIN = yaml.safe_load((ROOT / "roles" / "pg_login" / "vars" / "main.yml").read_text())["__pg_login_module_defaults"]
HOSTILE_SCHEMA = 'Weird "Schema"'
HOSTILE_TABLE = 'odd; DROP TABLE items; --'


# ------------------------------------------------------------------------------------------------- helpers


class Env:
    """The sandbox's admin login, our own databases (restore_test_<tag>_*) and a temporary backup_dir."""

    def __init__(self, target: Target, tmp: Path) -> None:
        self.target = target
        self.tag = secrets.token_hex(4)
        self.tmp = tmp
        self.backup_dir = tmp / "backups"
        self.backup_dir.mkdir(mode=0o700)
        self.password = target.env["RUNBOOK_PG_ADMIN_PASSWORD"]

    def name(self, suffix: str) -> str:
        return f"restore_test_{self.tag}_{suffix}"

    def connect(self, dbname: str = "postgres", **kw: Any) -> psycopg.Connection:
        env = self.target.env
        kw.setdefault("application_name", "runbook.ops-tests")
        return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                               password=self.password, dbname=dbname, autocommit=True, **kw)

    def admin(self, query: Any, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def ours(self) -> list[str]:
        return [r[0] for r in self.admin("SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                         "ORDER BY 1", [f"restore_test_{self.tag}_"])]

    def oid(self, db: str) -> int | None:
        rows = self.admin("SELECT oid::int8 FROM pg_database WHERE datname = %s", [db])
        return rows[0][0] if rows else None

    def drop_ours(self) -> None:
        for db in self.ours():
            self.admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

    def run(self, module: str, args: dict[str, Any], *, check: bool = False,
            extravars: dict[str, Any] | None = None) -> tuple[PlaybookResult, dict[str, Any]]:
        """Run one task of module (with the pg_login mapping) on sandbox-db; the run and the task's result."""
        task = {"name": f"under test: {module}", f"runbook.ops.{module}": {**LOGIN, "login_db": "postgres", **args}}
        path = self.tmp / f"play-{secrets.token_hex(3)}.yml"
        path.write_text(yaml.safe_dump([{"name": "test", "hosts": HOST, "gather_facts": False, "tasks": [task]}],
                                       sort_keys=False))
        result = run_playbook(str(path), self.target.inventory, check=check, extravars=extravars)
        found = [r for r in result.host_results(HOST, "under test")
                 if r["event"] in ("runner_on_ok", "runner_on_failed")]
        assert found, f"the task did not run (rc={result.rc}):\n{result.stdout[-3000:]}"
        return result, found[-1]


def ok(result: PlaybookResult, res: dict[str, Any]) -> dict[str, Any]:
    assert result.rc == 0 and res["event"] == "runner_on_ok", res.get("msg") or result.stdout[-3000:]
    return res


def failed(result: PlaybookResult, res: dict[str, Any]) -> dict[str, Any]:
    assert result.rc != 0 and res["event"] == "runner_on_failed", f"expected a failure, got {res}"
    return res


def no_secret(result: PlaybookResult, secret: str) -> None:
    assert secret not in result.stdout
    assert secret not in json.dumps(result.events)


def fill(env: Env, db: str, *, items: int = 5000, revision: str | None = "ae1027a6acf") -> None:
    """db owned by app with tables, a hostile-named one, an alembic revision, settings, an ACL and a comment."""
    ident = sql.Identifier(db)
    env.admin(sql.SQL("CREATE DATABASE {} OWNER app TEMPLATE template0").format(ident))
    env.admin(sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(ident))
    env.admin(sql.SQL("ALTER DATABASE {} SET search_path = \"$user\", public, \"we ird\"").format(ident))
    env.admin(sql.SQL("ALTER DATABASE {} SET \"myext.flag\" = 'a b'").format(ident))
    env.admin(sql.SQL("ALTER ROLE app IN DATABASE {} SET statement_timeout = '5s'").format(ident))
    env.admin(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
    env.admin(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO app WITH GRANT OPTION").format(ident))
    env.admin(sql.SQL("COMMENT ON DATABASE {} IS 'restore test, it''s ours'").format(ident))
    with env.connect(db) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2))")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g, g / 7.0 FROM generate_series(1, %s) g", [items])
        conn.execute("CREATE TABLE empty_one (id int)")
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(HOSTILE_SCHEMA)))
        conn.execute(sql.SQL("CREATE TABLE {} (v text)").format(sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)))
        conn.execute(sql.SQL("INSERT INTO {} SELECT 'v' || g FROM generate_series(1, 10) g").format(
            sql.Identifier(HOSTILE_SCHEMA, HOSTILE_TABLE)))
        if revision:
            conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
            conn.execute("INSERT INTO alembic_version VALUES (%s)", [revision])


def digests(env: Env, db: str) -> dict[str, str]:
    """md5 of every user table's rows in a fixed order, by schema.table."""
    out = {}
    with env.connect(db) as conn:
        tables = conn.execute("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
                              "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()
        for schema, table in tables:
            query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                            "FROM {} t").format(sql.Identifier(schema, table))
            count, digest = conn.execute(query).fetchone()
            out[f"{schema}.{table}"] = f"{count}:{digest}"
    return out


def database_look(env: Env, db: str) -> dict[str, Any]:
    """What must be the same for a database created like another: owner, locale, ACL, settings, comment."""
    row = env.admin("""
        SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype, datallowconn,
               shobj_description(oid, 'pg_database'),
               (SELECT array_agg(a::text ORDER BY a::text) FROM unnest(datacl) a)
          FROM pg_database WHERE datname = %s""", [db])[0]
    settings = env.admin("""
        SELECT coalesce(r.rolname, '*'), s.setconfig FROM pg_db_role_setting s
          JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
         WHERE d.datname = %s ORDER BY 1""", [db])
    return {"owner": row[0], "encoding": row[1], "collate": row[2], "ctype": row[3], "allow_connections": row[4],
            "comment": row[5], "acl": row[6], "settings": [(r, sorted(c)) for r, c in settings]}


def make_backup(env: Env, db: str, fmt: str = "custom", backup_id: str | None = None) -> Path:
    """A backup of db in the runbook.ops layout: pg_dump in an exported snapshot, counts and manifest from it."""
    backup_id = backup_id or f"20261201T0830{secrets.randbelow(60):02d}Z-{secrets.token_hex(2)}"
    path = env.backup_dir / db / backup_id
    path.mkdir(parents=True, mode=0o700)
    archive = path / ("dump.custom" if fmt == "custom" else "dump")
    tenv = env.target.env
    keywords = {"host": tenv["PGHOST"], "port": tenv["PGPORT"], "user": tenv["RUNBOOK_PG_ADMIN_USER"], "dbname": db}
    with env.connect(db, row_factory=dict_row) as conn:
        conn.autocommit = False
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot() AS s").fetchone()["s"]
        identity = read_identity(conn)
        tables = read_tables(conn, "exact")
        tool, revision, warning = read_migration(conn)
        assert warning is None
        subprocess.run([str(BINDIR / "pg_dump"), f"--dbname={conninfo(keywords)}", "--no-password",
                        f"--format={fmt}", f"--file={archive}", f"--snapshot={snapshot}"],
                       env={**os.environ, "PGPASSWORD": env.password}, check=True, capture_output=True)
        conn.rollback()
    listing = subprocess.run([str(BINDIR / "pg_restore"), "--list", str(archive)], check=True, capture_output=True,
                             text=True).stdout
    files = tree_files(str(path))
    write_manifest(str(path), {
        "format_version": MANIFEST_VERSION, "id": backup_id, "created_at": "2026-12-01T08:30:00.000Z",
        "database": db, "host": tenv["PGHOST"], "port": int(tenv["PGPORT"]),
        "server_version": identity["server_version"], "server_version_num": identity["server_version_num"],
        "system_identifier": identity["system_identifier"], "pg_dump_version": "15", "format": fmt,
        "compression": "gzip", "jobs": 1, "archive": archive.name, "files": files,
        "size_bytes": sum(f["size"] for f in files), "toc_entries": parse_toc(listing).count, "row_counts": "exact",
        "tables": manifest_tables(tables), "migration_tool": tool, "migration_revision": revision,
        "duration_s": 0.1, "verified_at": None,
    })
    return path


def edit_manifest(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = read_manifest(str(path))
    change(manifest)
    write_manifest(str(path), manifest)


@pytest.fixture
def env(sandbox: Target, tmp_path: Path) -> Iterator[Env]:
    e = Env(sandbox, tmp_path)
    yield e
    e.drop_ours()


@pytest.fixture
def source(env: Env) -> tuple[str, Path]:
    """A filled source database and a custom-format backup of it."""
    db = env.name("src")
    fill(env, db)
    return db, make_backup(env, db)


def restore_args(env: Env, backup: Path, target: str, like: str, **over: Any) -> dict[str, Any]:
    return {"backup_path": str(backup), "target_db": target, "like_db": like, "bindir": str(BINDIR), "jobs": 2,
            **over}


# ------------------------------------------------------------------------------------------------- pg_restore


def test_restore_into_a_new_database_gives_identical_data_and_looks_like_the_original(env: Env, source) -> None:
    src, backup = source
    target = env.name("new")
    args = restore_args(env, backup, target, src, smoke_sql=["SELECT count(*) = 5000 FROM items",
                                                             "SELECT version_num = 'ae1027a6acf' FROM alembic_version"])

    run, res = env.run("pg_restore", args, check=True)
    res = ok(run, res)
    assert run.changed(HOST) == 1 and env.oid(target) is None, "check mode created the target"
    assert res["argv"][0] == str(BINDIR / "pg_restore") and "--jobs=2" in res["argv"]
    assert res["argv"][-1] == str(backup / "dump.custom")
    assert res["statements"][0].startswith(f'CREATE DATABASE "{target}" WITH OWNER "app" TEMPLATE template0')
    assert any("\"work_mem\" TO '7MB'" in s for s in res["statements"])
    assert "checks" not in res
    no_secret(run, env.password)

    run, res = env.run("pg_restore", args)
    res = ok(run, res)
    assert run.changed(HOST) == 1
    assert digests(env, target) == digests(env, src)
    assert f"{HOSTILE_SCHEMA}.{HOSTILE_TABLE}" in digests(env, target)
    assert database_look(env, target) == database_look(env, src)
    names = {c["name"]: c for c in res["checks"]}
    assert all(c["ok"] for c in res["checks"]) and res["failed_checks"] == []
    assert names["rows public.items"]["actual"] == 5000
    assert names["migration_revision"]["actual"] == {"tool": "alembic", "revision": "ae1027a6acf"}
    assert {"database_properties", "database_acl", "database_settings", "smoke_sql 1", "smoke_sql 2"} <= set(names)
    assert res["restore_s"] > 0 and res["verify_s"] > 0 and res["dropped"] is False
    assert res["toc_entries"] == read_manifest(str(backup))["toc_entries"]
    no_secret(run, env.password)

    # a second run must not overwrite what the first restored, in check mode or for real
    oid = env.oid(target)
    for check in (True, False):
        run, res = env.run("pg_restore", args, check=check)
        assert "already exists" in failed(run, res)["msg"] and res["dropped"] is False
    assert env.oid(target) == oid and digests(env, target) == digests(env, src)

    # verify_only reads, reports no change, in check mode as well
    for check in (True, False):
        run, res = env.run("pg_restore", {**args, "verify_only": True}, check=check)
        assert ok(run, res)["failed_checks"] == [] and run.changed(HOST) == 0


def test_a_directory_format_backup_restores_as_well(env: Env) -> None:
    src = env.name("dsrc")
    fill(env, src, items=300, revision=None)
    backup = make_backup(env, src, fmt="directory")
    target = env.name("dnew")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src, jobs=3))
    ok(run, res)
    assert digests(env, target) == digests(env, src)
    assert {c["name"]: c for c in res["checks"]}["migration_revision"]["msg"] == "no migration table, as in the backup"


def test_an_existing_target_is_refused_and_untouched(env: Env, source) -> None:
    src, backup = source
    target = env.name("busy")
    env.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    env.admin("CREATE TABLE precious (v text); INSERT INTO precious VALUES ('keep me')", dbname=target)
    oid = env.oid(target)
    run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    res = failed(run, res)
    assert f"target_db '{target}' already exists" in res["msg"] and "never overwrites" in res["msg"]
    assert res["changed"] is False and res["dropped"] is False
    assert env.oid(target) == oid
    assert env.admin("SELECT v FROM precious", dbname=target) == [("keep me",)]


def test_a_row_count_mismatch_fails_names_the_table_and_drops_the_target(env: Env, source) -> None:
    src, backup = source

    def one_more_item(manifest: dict[str, Any]) -> None:
        for table in manifest["tables"]:
            if table["name"] == "items":
                table["rows"] += 1
    edit_manifest(backup, one_more_item)
    target = env.name("count")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    res = failed(run, res)
    assert "rows public.items: 5000 rows, the backup has 5001" in res["msg"]
    assert res["failed_checks"] == ["rows public.items"]
    assert res["dropped"] is True and "was dropped" in res["msg"]
    assert env.oid(target) is None


def test_a_migration_revision_mismatch_fails(env: Env, source) -> None:
    src, backup = source
    edit_manifest(backup, lambda m: m.update(migration_revision="0000newer"))
    target = env.name("rev")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    res = failed(run, res)
    assert res["failed_checks"] == ["migration_revision"] and "the backup has alembic 0000newer" in res["msg"]
    assert env.oid(target) is None


def test_a_failing_smoke_sql_fails_and_drops_the_target(env: Env, source) -> None:
    src, backup = source
    target = env.name("smoke")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src, smoke_sql=[
        "SELECT count(*) > 0 FROM items",
        "SELECT count(*) > 1000000 FROM items",
    ]))
    res = failed(run, res)
    assert res["failed_checks"] == ["smoke_sql 2"] and "smoke_sql 2: returned False, expected true" in res["msg"]
    assert res["dropped"] is True and env.oid(target) is None


def test_smoke_sql_runs_read_only(env: Env, source) -> None:
    src, backup = source
    target = env.name("ro")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    ok(run, res)
    run, res = env.run("pg_restore", restore_args(env, backup, target, None, verify_only=True, smoke_sql=[
        "WITH gone AS (DELETE FROM items RETURNING 1) SELECT true"]))
    res = failed(run, res)
    assert "read-only transaction" in res["msg"] and res["dropped"] is False
    assert env.admin("SELECT count(*) FROM items", dbname=target) == [(5000,)]


def test_pg_restore_killed_midway_fails_cleanly_and_drops_the_target(env: Env) -> None:
    """Fault injection: a second thread terminates the restore's sessions while one COPY is under way.

    The table slow has a CHECK that sleeps per row only for sessions named runbook.ops (pg_restore's), so
    its COPY is slow during the restore whatever the machine, and never while the test fills it.
    """
    src = env.name("ksrc")
    fill(env, src, items=100, revision=None)
    with env.connect(src) as conn:
        conn.execute("""CREATE FUNCTION public.slow_check(v int) RETURNS boolean LANGUAGE plpgsql AS $$
                        BEGIN
                          IF current_setting('application_name') = 'runbook.ops' THEN PERFORM pg_sleep(0.5); END IF;
                          RETURN v IS NOT NULL;
                        END $$""")
        conn.execute("CREATE TABLE slow (v int CHECK (public.slow_check(v)))")
        conn.execute("INSERT INTO slow SELECT generate_series(1, 120)")
    backup = make_backup(env, src)
    target = env.name("killed")
    stop = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        with env.connect() as conn:
            while not stop.is_set() and not killed:
                rows = conn.execute("SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                    "AND application_name = 'runbook.ops' AND query ILIKE 'COPY public.slow%%'",
                                    [target]).fetchall()
                killed.extend(pid for pid, done in rows if done)
                time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    finally:
        stop.set()
        thread.join()
    assert killed, "the fault was never injected: no COPY of slow was seen"
    res = failed(run, res)
    assert "pg_restore failed (exit code 1)" in res["msg"] and "was dropped" in res["msg"]
    assert res["dropped"] is True and env.oid(target) is None
    assert "checks" not in res


def _corrupt(path: Path) -> None:
    """Overwrite the middle of the largest data file with garbage, keeping its size."""
    data = max((p for p in (path / "dump").glob("*.dat*")), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 64] = b"\xff" * 64
    data.write_bytes(bytes(raw))


def test_a_corrupt_data_file_is_caught_before_or_during_the_restore(env: Env) -> None:
    src = env.name("csrc")
    fill(env, src, items=20000, revision=None)
    backup = make_backup(env, src, fmt="directory")
    _corrupt(backup)
    target = env.name("corrupt")

    # checksums first: nothing is created
    run, res = env.run("pg_restore", restore_args(env, backup, target, src))
    res = failed(run, res)
    assert "sha256 differs" in res["msg"] and res["changed"] is False and env.oid(target) is None

    # without them, pg_restore itself trips over the data, and the half-restored target goes
    run, res = env.run("pg_restore", restore_args(env, backup, target, src, verify_checksums=False))
    res = failed(run, res)
    assert "pg_restore failed" in res["msg"] and res["dropped"] is True and env.oid(target) is None


def test_keep_failed_keeps_the_target(env: Env, source) -> None:
    src, backup = source
    target = env.name("kept")
    run, res = env.run("pg_restore", restore_args(env, backup, target, src, keep_failed=True,
                                                  smoke_sql=["SELECT false"]))
    res = failed(run, res)
    assert "was kept (keep_failed=true)" in res["msg"] and res["dropped"] is False
    assert env.oid(target) is not None


def test_an_unfinished_or_foreign_backup_is_refused_before_connecting(env: Env, source) -> None:
    src, backup = source
    partial = backup.with_name(backup.name + ".partial")
    backup.rename(partial)
    run, res = env.run("pg_restore", restore_args(env, partial, env.name("x"), src), check=True)
    assert ".partial marks unfinished backups" in failed(run, res)["msg"]
    partial.rename(backup)
    (backup / "manifest.json").unlink()
    run, res = env.run("pg_restore", restore_args(env, backup, env.name("x"), src), check=True)
    assert "no manifest.json" in failed(run, res)["msg"]
    assert env.oid(env.name("x")) is None


# ------------------------------------------------------------------------------------------- pg_database_swap


def _marked(env: Env, db: str, marker: str) -> None:
    env.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    env.admin("CREATE TABLE marker (v text)", dbname=db)
    env.admin("INSERT INTO marker VALUES (%s)", [marker], dbname=db)


def _marker(env: Env, db: str) -> str:
    return env.admin("SELECT v FROM marker", dbname=db)[0][0]


def _sleeper(env: Env, db: str) -> tuple[int, threading.Thread, list[BaseException]]:
    """A session of our own in db running a long query in a thread; (pid, thread, its error once ended)."""
    conn = env.connect(db, application_name=TEST_APP)
    pid = conn.info.backend_pid
    errors: list[BaseException] = []

    def sleep() -> None:
        try:
            conn.execute("SELECT pg_sleep(600)")
        except psycopg.Error as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=sleep, daemon=True)
    thread.start()
    return pid, thread, errors


def _alive(env: Env, pids: list[int]) -> set[int]:
    return {r[0] for r in env.admin("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])}


def test_swap_terminates_sessions_renames_atomically_and_swaps_back(env: Env) -> None:
    live, new, keep, failed_name = env.name("live"), env.name("new"), env.name("keep"), env.name("failedrestore")
    _marked(env, live, "old")
    _marked(env, new, "new")
    live_oid, new_oid = env.oid(live), env.oid(new)
    idle = env.connect(live, application_name=TEST_APP)
    pid_busy, busy_thread, busy_errors = _sleeper(env, live)
    pids = [idle.info.backend_pid, pid_busy]
    args = {"live": live, "replacement": new, "keep_as": keep}

    run, res = env.run("pg_database_swap", args, check=True)
    res = ok(run, res)
    assert run.changed(HOST) == 1 and res["state"] == "swap"
    assert set(pids) <= set(res["would_terminate"])
    assert res["statements"][:2] == [f'ALTER DATABASE "{live}" ALLOW_CONNECTIONS false',
                                     f'ALTER DATABASE "{new}" ALLOW_CONNECTIONS false']
    assert f'ALTER DATABASE "{live}" RENAME TO "{keep}"' in res["statements"]
    assert _alive(env, pids) == set(pids) and env.oid(live) == live_oid and env.oid(keep) is None

    # While the swap runs, a reader of the catalog must always find the name, and a client that keeps
    # reconnecting must see the old data, then the new, never the old again (or a refused connection).
    stop = threading.Event()
    counts: list[int] = []
    seen: list[str] = []
    refusals: list[str] = []

    def catalog_reader() -> None:
        with env.connect() as conn:
            while not stop.is_set():
                counts.append(conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [live]).fetchone()[0])

    def reconnecting_client() -> None:
        while not stop.is_set():
            try:
                with env.connect(live, application_name=TEST_APP) as conn:
                    seen.append(conn.execute("SELECT v FROM marker").fetchone()[0])
            except psycopg.Error as exc:
                refusals.append(str(exc))
            time.sleep(0.01)

    threads = [threading.Thread(target=catalog_reader, daemon=True),
               threading.Thread(target=reconnecting_client, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        run, res = env.run("pg_database_swap", args)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    res = ok(run, res)
    assert run.changed(HOST) == 1 and set(pids) <= set(res["terminated"])
    assert env.oid(live) == new_oid and env.oid(keep) == live_oid and env.oid(new) is None
    assert _marker(env, live) == "new" and _marker(env, keep) == "old"
    assert database_look(env, live)["allow_connections"] and database_look(env, keep)["allow_connections"]
    busy_thread.join(timeout=30)
    assert busy_errors and "terminating connection" in str(busy_errors[0])
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    assert counts and set(counts) == {1}, "the live name was missing for a reader"
    assert "old" in seen or "new" in seen
    assert seen == sorted(seen, key=lambda v: v == "new"), f"old data after new: {seen}"
    expected = ("not currently accepting connections", "terminating connection", "renamed",
                "server closed the connection", "does not exist")
    assert all(any(e in r for e in expected) for r in refusals), refusals

    # idempotent: check and real again change nothing
    for check in (True, False):
        run, res = env.run("pg_database_swap", args, check=check)
        assert ok(run, res)["state"] == "done" and run.changed(HOST) == 0
    assert _marker(env, live) == "new"

    # the rescue path: the same module, the names the other way round
    run, res = env.run("pg_database_swap", {"live": live, "replacement": keep, "keep_as": failed_name})
    ok(run, res)
    assert _marker(env, live) == "old" and env.oid(live) == live_oid and _marker(env, failed_name) == "new"
    no_secret(run, env.password)


def test_swap_refuses_without_terminating_and_leaves_connections_allowed(env: Env) -> None:
    live, new, keep = env.name("live2"), env.name("new2"), env.name("keep2")
    _marked(env, live, "old")
    _marked(env, new, "new")
    with env.connect(live, application_name=TEST_APP) as idle:
        run, res = env.run("pg_database_swap", {"live": live, "replacement": new, "keep_as": keep,
                                                "terminate_sessions": False})
        res = failed(run, res)
        assert "terminate_sessions=false" in res["msg"] and str(idle.info.backend_pid) in res["msg"]
        assert idle.execute("SELECT v FROM marker").fetchone() == ("old",)
    assert _marker(env, live) == "old" and env.oid(keep) is None
    assert database_look(env, live)["allow_connections"] and database_look(env, new)["allow_connections"]


@pytest.mark.parametrize(("present", "error"), [
    (("live", "new", "keep"), "(keep_as) already exists"),
    (("live",), "(replacement) does not exist"),
    (("new",), "(live) does not exist"),
])
def test_swap_refuses_states_it_must_not_touch(env: Env, present: tuple[str, ...], error: str) -> None:
    for suffix in present:
        _marked(env, env.name(f"s{suffix}"), suffix)
    before = {db: env.oid(db) for db in env.ours()}
    run, res = env.run("pg_database_swap", {"live": env.name("slive"), "replacement": env.name("snew"),
                                            "keep_as": env.name("skeep")})
    assert error in failed(run, res)["msg"]
    assert {db: env.oid(db) for db in env.ours()} == before


def test_a_swap_that_cannot_lock_rolls_back_and_reopens_both(env: Env) -> None:
    """An open transaction that commented on the live database holds a lock on it that the rename needs."""
    live, new, keep = env.name("live4"), env.name("new4"), env.name("keep4")
    _marked(env, live, "old")
    _marked(env, new, "new")
    with env.connect() as holder:
        holder.autocommit = False
        holder.execute(sql.SQL("COMMENT ON DATABASE {} IS 'busy'").format(sql.Identifier(live)))
        run, res = env.run("pg_database_swap", {"live": live, "replacement": new, "keep_as": keep,
                                                "lock_timeout": "1s"})
        holder.rollback()
    res = failed(run, res)
    assert "waited longer than lock_timeout 1s" in res["msg"] and "nothing was renamed" in res["msg"]
    assert _marker(env, live) == "old" and _marker(env, new) == "new" and env.oid(keep) is None
    assert database_look(env, live)["allow_connections"] and database_look(env, new)["allow_connections"]


def test_a_database_that_refused_connections_keeps_refusing_after_the_swap(env: Env) -> None:
    live, new, keep = env.name("live3"), env.name("new3"), env.name("keep3")
    _marked(env, live, "old")
    _marked(env, new, "new")
    env.admin(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(live)))
    run, res = env.run("pg_database_swap", {"live": live, "replacement": new, "keep_as": keep})
    ok(run, res)
    assert any("does not allow connections" in w for w in res.get("warnings", []))
    assert database_look(env, keep)["allow_connections"] is False
    assert database_look(env, live)["allow_connections"] is True and _marker(env, live) == "new"


# ------------------------------------------------------------------------- the whole path, and the password


def test_backup_restore_swap_verify_keeps_acl_and_settings(env: Env) -> None:
    """runbook.ops.pg_backup -> pg_restore like live -> swap -> verify_only: the new live behaves as the old."""
    live = env.name("app")
    fill(env, live, items=2000)
    backup = Path(run_playbook_backup(env, live)["backup_path"])
    restored, keep = env.name("app_restore"), env.name("app_pre_restore")
    before = database_look(env, live)
    data = digests(env, live)

    run, res = env.run("pg_restore", restore_args(env, backup, restored, live))
    ok(run, res)
    run, res = env.run("pg_database_swap", {"live": live, "replacement": restored, "keep_as": keep})
    ok(run, res)
    assert database_look(env, live) == before == database_look(env, keep)
    assert digests(env, live) == data
    with env.connect(live) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public, "we ird"',)
    run, res = env.run("pg_restore", {"backup_path": str(backup), "target_db": live, "like_db": keep,
                                      "verify_only": True, "smoke_sql": ["SELECT count(*) = 2000 FROM items"]})
    assert ok(run, res)["failed_checks"] == [] and run.changed(HOST) == 0


def test_the_swap_record_tells_an_unchanged_database_from_an_updated_one(env: Env) -> None:
    """swap with record_path -> verify_only with swap_record: passes after VACUUM FREEZE and ANALYZE (nothing
    written), fails after an UPDATE that keeps every row count; a record of another backup, of a database
    replaced since, or none, cannot vouch."""
    live = env.name("app")
    fill(env, live, items=2000)
    backup = Path(run_playbook_backup(env, live)["backup_path"])
    restored, keep = env.name("app_restore"), env.name("app_pre_restore")
    record = env.backup_dir / f"{live}.swap.json"
    ok(*env.run("pg_restore", restore_args(env, backup, restored, live)))
    swap = {"live": live, "replacement": restored, "keep_as": keep, "record_path": str(record),
            "record_data": {"backup_id": backup.name}}
    run, res = env.run("pg_database_swap", swap)
    ok(run, res)
    written = json.loads(record.read_text())
    assert res["swapped"] is True and written == res["record"]
    assert written["xid"] == res["xid"] and written["oid"] == env.oid(live) and written["backup_id"] == backup.name
    # the ledger drop_safety_copies.yml ages the copies by: the database kept, by oid, since this swap
    assert written["safety_copies"] == {keep: {"oid": env.oid(keep), "swapped_at": written["swapped_at"],
                                               "backup_id": backup.name}}
    verify = {"backup_path": str(backup), "target_db": live, "like_db": keep, "verify_only": True,
              "swap_record": str(record)}

    def unchanged() -> dict[str, Any]:
        run, res = env.run("pg_restore", verify)
        return next(c for c in res["checks"] if c["name"] == "unchanged_since_swap")

    with env.connect(live) as conn:
        conn.execute("VACUUM (FREEZE, ANALYZE)")
    assert unchanged()["ok"], unchanged()
    with env.connect(live) as conn:
        conn.execute("UPDATE items SET id = id WHERE id <= 3")  # same rows, same count, new row versions
    found = unchanged()
    assert not found["ok"] and "rows written since the swap" in found["msg"] and "(3)" in found["msg"], found
    failed(*env.run("pg_restore", verify))

    record.write_text(json.dumps({**written, "backup_id": "20000101T000000Z"}))
    assert "not '" + backup.name + "'" in unchanged()["msg"]
    record.write_text(json.dumps({**written, "oid": written["oid"] + 1}))
    assert "it was replaced since" in unchanged()["msg"]
    record.unlink()
    assert "there is no swap record" in unchanged()["msg"]


def run_playbook_backup(env: Env, db: str) -> dict[str, Any]:
    run, res = env.run("pg_backup", {"login_db": db, "backup_dir": str(env.backup_dir), "bindir": str(BINDIR)})
    return ok(run, res)


@pytest.mark.parametrize("module", ["pg_restore", "pg_database_swap"])
def test_a_wrong_password_fails_clearly_and_is_never_shown(env: Env, source, module: str) -> None:
    src, backup = source
    wrong = f"wrong-{secrets.token_hex(8)}"
    args = (restore_args(env, backup, env.name("pw"), src) if module == "pg_restore"
            else {"live": src, "replacement": env.name("pw"), "keep_as": env.name("pwkeep")})
    run, res = env.run(module, args, extravars={"runbook_pg_password": wrong})
    res = failed(run, res)
    assert "cannot connect to PostgreSQL" in res["msg"] and "password authentication failed" in res["msg"]
    no_secret(run, wrong)
    no_secret(run, env.password)
    assert env.oid(env.name("pw")) is None and env.oid(src) is not None


def test_a_second_swap_keeps_the_first_copy_in_the_ledger(env: Env) -> None:
    """Each swap's record carries the earlier safety copies over, with when each was made."""
    live, first, second = env.name("app"), env.name("one"), env.name("two")
    for db in (live, first, second):
        env.admin(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(db)))
    record = env.backup_dir / "ledger.swap.json"
    kept = {}
    for n, replacement in enumerate((first, second)):
        keep = env.name(f"pre_{n}")
        kept[keep] = env.oid(live)
        ok(*env.run("pg_database_swap", {"live": live, "replacement": replacement, "keep_as": keep,
                                         "record_path": str(record), "record_data": {"backup_id": f"b{n}"}}))
    ledger = json.loads(record.read_text())["safety_copies"]
    assert {name: entry["oid"] for name, entry in ledger.items()} == kept
    assert [ledger[name]["backup_id"] for name in sorted(kept)] == ["b0", "b1"]
    assert ledger[env.name("pre_0")]["swapped_at"] <= ledger[env.name("pre_1")]["swapped_at"]


@pytest.mark.parametrize(("identifier", "error"), [
    ("1234567890123456789", "was taken on cluster 1234567890123456789, this is cluster"),
    (None, "cannot tell whether backup"),
])
def test_the_guards_refuse_a_backup_of_another_or_an_unknown_cluster(env: Env, source, identifier: str | None,
                                                                     error: str) -> None:
    src, backup = source
    edit_manifest(backup, lambda m: m.update(system_identifier=identifier))
    guards = restore_args(env, backup, env.name("new"), src, check_only=True, keep_as=env.name("safety"))
    res = failed(*env.run("pg_restore", guards))
    assert error in res["msg"] and "allow another cluster (allow_other_cluster)" in res["msg"]
    assert "Nothing was changed." in res["msg"] and env.oid(env.name("new")) is None
    res = ok(*env.run("pg_restore", {**guards, "allow_other_cluster": True}))
    assert res["already_restored"] is False and res["keep_as_exists"] is False


class CommitCutter:
    """A TCP proxy to the sandbox PostgreSQL (sslmode=disable: the bytes are plain) that, once, passes on the
    COMMIT a session sends after renaming a database and then cuts that session before the answer: the client
    cannot know whether its transaction committed. Every other session is passed through untouched."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            renamed = threading.Event()
            threading.Thread(target=self._pump, args=(client, server, renamed, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, renamed, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, renamed: threading.Event, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if not from_client and self.cut.is_set() and renamed.is_set():
                    break  # the server's answer to that COMMIT: never passed on
                if from_client and b"RENAME TO" in data:
                    renamed.set()
                if from_client and renamed.is_set() and b"COMMIT" in data and not self.cut.is_set():
                    self.cut.set()
                    dst.sendall(data)
                    time.sleep(0.5)  # the server commits meanwhile
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_a_swap_whose_commit_answer_is_lost_is_reported_as_swapped(env: Env) -> None:
    """The connection dies with the swap's COMMIT in flight, and the swap had committed: the module must say
    swapped=true (restore.yml's rescue then swaps back), and must not drop the database that is live now."""
    live = env.name("app")
    fill(env, live, items=500)
    backup = make_backup(env, live)
    restored, keep = env.name("app_restore"), env.name("app_pre_restore")
    before = env.oid(live)
    proxy = CommitCutter(env.target.env["PGHOST"], int(env.target.env["PGPORT"]))
    try:
        args = restore_args(env, backup, restored, live, swap=True, keep_as=keep, login_host="127.0.0.1",
                            login_port=proxy.port)
        res = failed(*env.run("pg_restore", args))
    finally:
        proxy.close()
    assert proxy.cut.is_set(), "the proxy never saw the swap's COMMIT"
    assert res.get("swapped") is True, res.get("msg")
    assert f"but the swap had committed: {live} is the restored database now" in res["msg"]
    # committed: the old database is the safety copy, the restored one is live, nothing was dropped
    assert env.oid(keep) == before and env.oid(live) not in (None, before) and env.oid(restored) is None
    assert res["dropped"] is False
    assert digests(env, live) == digests(env, keep)


def test_a_swap_refused_after_the_restore_fails_with_its_cause_and_drops_the_target(env: Env) -> None:
    """The restore verified, then the swap cannot happen (the safety copy's name is taken): the run fails with
    that cause, not swapped, the target it created dropped, the live database and the name's holder untouched."""
    live = env.name("app")
    fill(env, live, items=500)
    backup = make_backup(env, live)
    restored, keep = env.name("app_restore"), env.name("app_pre_restore")
    env.admin(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(keep)))
    before = {live: env.oid(live), keep: env.oid(keep)}
    res = failed(*env.run("pg_restore", restore_args(env, backup, restored, live, swap=True, keep_as=keep)))
    assert "(keep_as) already exists" in res["msg"] and f"the target {restored} was dropped" in res["msg"], res["msg"]
    assert res["swapped"] is False and res["dropped"] is True
    assert {live: env.oid(live), keep: env.oid(keep)} == before and env.oid(restored) is None


def test_the_guards_create_the_lock_directory_only_for_real(env: Env, source) -> None:
    """A database restored here for the first time has no state directory yet: --check says it would take the lock
    and creates nothing; the real guards create the directory (0700) and take the lock."""
    src, backup = source
    lock = env.tmp / "state" / src / ".restore.lock"
    guards = restore_args(env, backup, env.name("new"), src, check_only=True, keep_as=env.name("safety"),
                          lock_path=str(lock), lock_owner="test")
    res = ok(*env.run("pg_restore", guards, check=True))
    assert res["lock"]["would_acquire"] is True and not (env.tmp / "state").exists()
    res = ok(*env.run("pg_restore", guards))
    assert res["lock"]["acquired"] is True and lock.is_file()
    assert oct(lock.parent.stat().st_mode & 0o777) == "0o700"
    assert json.loads(lock.read_text())["token"] == res["lock"]["token"]
