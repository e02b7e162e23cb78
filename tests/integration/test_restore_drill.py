# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/restore_drill.yml against the sandbox: real backups, real scratch databases, the evidence read back.

Other developers share the server, so the drills here never touch the app database: the "live" database is
drill_test_rd_<token> (tables of our own and an alembic revision), backed up once by playbooks/backup.yml into a
temporary backup_dir and uploaded under an S3 key prefix of our own. The local drills use a copy of that
backup_dir; the bucket test deletes the backup from it and drills the bucket's copy. A second backup, made
with backup_row_counts=estimate, has no exact count of any table: its drill must not call those counts
passed. After every drill the scratch database must be gone and the live database's rows (md5 of each table)
as before; the evidence JSON is read from the run's own evidence directory.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.conftest import Target
from tests.lib.restore_helpers import Bucket, evidence_files, expected_counts, s3_bucket, table_digests
from tests.lib.runner import PlaybookResult, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
TOKEN = secrets.token_hex(3)
DB = f"drill_test_rd_{TOKEN}"
PREFIX = f"drilltest-{TOKEN}"
REVISION = "d7a1c0ffee42"
REPORT_TASK = "Report | the drill"
VERDICT_TASK = "Verdict | the drill passed every check"
PLAN_TASK = "Plan | what the drill will do"
TABLES = ["public.alembic_version", "public.empty_table", "public.items", "public.orders"]
NO_COUNT = "the manifest has no exact count for this table"
SCHEMA_SQL = [
    "CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)",
    f"INSERT INTO public.alembic_version VALUES ('{REVISION}')",
    "CREATE TABLE public.items (id int PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 700) g",
    "CREATE TABLE public.orders (id int PRIMARY KEY, item_id int REFERENCES public.items, total numeric(10, 2))",
    "INSERT INTO public.orders SELECT g, 1 + g % 700, g * 0.5 FROM generate_series(1, 123) g",
    "CREATE TABLE public.empty_table (id int)",
]


def _connect(target: Target, dbname: str = "postgres") -> psycopg.Connection:
    env = target.env
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True,
                           application_name="runbook.ops-tests-restore-drill")


def ours(target: Target) -> list[str]:
    """Our live database and every database named after it (scratch databases of drills), sorted."""
    with _connect(target) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE left(datname, length(%s)) = %s",
                            [DB, DB]).fetchall()
    return sorted(r[0] for r in rows)


def digests(target: Target, dbname: str = DB) -> dict[str, str]:
    with _connect(target, dbname) as conn:
        return table_digests(conn)


def run(target: Target, evidence: Path, check: bool = False, **more: Any) -> PlaybookResult:
    return run_playbook("restore_drill.yml", target.inventory, limit=HOST, check=check,
                        extravars={"restore_drill_database": DB, "restore_drill_evidence_dir": str(evidence), **more})


def report(result: PlaybookResult) -> str:
    found = [r for r in result.host_results(HOST, REPORT_TASK) if r["event"] == "runner_on_ok"]
    assert found, result.stdout[-3000:]
    return str(found[-1]["msg"])


def failed_tasks(result: PlaybookResult) -> list[dict[str, Any]]:
    return [r for r in result.host_results(HOST) if r["event"] == "runner_on_failed"]


def only_evidence(directory: Path) -> dict[str, Any]:
    files = evidence_files(directory)
    assert len(files) == 1, files
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    return json.loads(files[0].read_text())


@dataclass(frozen=True)
class Live:
    target: Target
    backup_dir: Path  # a copy of the backup for the local drills
    uploaded_dir: Path  # where backup.yml made it (and uploaded it from); the bucket test deletes it
    backup_id: str
    manifest: dict[str, Any]
    digests: dict[str, str]
    bucket: Bucket

    @property
    def scratch(self) -> str:
        return f"{DB}_drill_{self.backup_id}"


def make_backup(target: Target, backup_dir: Path, **more: Any) -> tuple[str, dict[str, Any]]:
    """One real backup of DB through backup.yml (retention off); its id and manifest."""
    result = run_playbook("backup.yml", target.inventory, limit=HOST, extravars={
        "backup_databases": [DB], "backup_dir": str(backup_dir), "backup_retention": False, **more})
    assert result.rc == 0, result.stdout[-3000:]
    ids = [p.name for p in (backup_dir / DB).iterdir()]
    assert len(ids) == 1, ids
    return ids[0], json.loads((backup_dir / DB / ids[0] / "manifest.json").read_text())


def _bucket(target: Target) -> Bucket:
    """The inventory's bucket with the inventory's credentials."""
    return s3_bucket(yaml.safe_load((target.inventory / "hosts.yml").read_text())["all"]["vars"])


@pytest.fixture(scope="module")
def live(sandbox: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """DB with its tables and one verified backup of it, made by backup.yml and uploaded under our prefix."""
    bucket = _bucket(sandbox)
    with _connect(sandbox) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(DB)))
    try:
        with _connect(sandbox, DB) as conn:
            for statement in SCHEMA_SQL:
                conn.execute(statement)
        uploaded_dir = tmp_path_factory.mktemp("drill-uploaded")
        backup_id, manifest = make_backup(sandbox, uploaded_dir, backup_s3_prefix=PREFIX)
        assert manifest["verified_at"] and manifest["migration_revision"] == REVISION
        backup_dir = tmp_path_factory.mktemp("drill-backups")
        shutil.copytree(uploaded_dir / DB, backup_dir / DB)
        yield Live(sandbox, backup_dir, uploaded_dir, backup_id, manifest, digests(sandbox), bucket)
    finally:
        with _connect(sandbox) as conn:
            for name in ours(sandbox):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        bucket.delete(PREFIX + "/")


def assert_untouched(live: Live) -> None:
    assert ours(live.target) == [DB], "a scratch database was left behind"
    assert digests(live.target) == live.digests, "the live database changed"


def test_drill_passes_writes_the_evidence_and_leaves_nothing_behind(live: Live, tmp_path: Path) -> None:
    """Every drill here restores the same backup into the same scratch name: a drill run again is a new drill
    (changed), and each one is checked to leave nothing behind."""
    evidence = tmp_path / "evidence"
    first = run(live.target, evidence, restore_drill_backup_dir=str(live.backup_dir),
                restore_drill_smoke_sql=["SELECT count(*) = 700 FROM public.items"])
    assert first.rc == 0, first.stdout[-3000:]
    assert first.changed(HOST) > 0
    assert_untouched(live)

    found = only_evidence(evidence)
    m = live.manifest
    assert found["format_version"] == 2
    assert found["passed"] is True and found["failed_checks"] == [] and found["error"] is None
    assert found["verdict"] == "passed" and found["counts_compared"] is True and found["not_compared_checks"] == []
    assert found["summary"] == {"checks": len(found["checks"]), "passed": len(found["checks"]), "failed": 0,
                                "not_compared": 0, "tables": len(TABLES)}
    assert (found["host"], found["database"], found["scratch_database"]) == (HOST, DB, live.scratch)
    assert found["scratch_dropped"] is True
    assert found["backup"]["id"] == live.backup_id and found["backup"]["source"] == "local"
    assert found["backup"]["created_at"] == m["created_at"] and found["backup"]["verified_at"] == m["verified_at"]
    assert found["backup"]["location"] == str(live.backup_dir / DB / live.backup_id)
    assert found["row_counts"] == expected_counts(m)
    assert found["row_counts"]["public.items"]["restored"] == 700
    checks = {c["name"]: c for c in found["checks"]}
    assert all(c["passed"] is True and c["status"] == "passed" for c in checks.values())
    assert checks["migration_revision"]["actual"] == {"tool": "alembic", "revision": REVISION}
    assert checks["smoke_sql 1"]["sql"] == "SELECT count(*) = 700 FROM public.items"
    assert found["versions"]["pg_dump"] == m["pg_dump_version"]
    assert found["versions"]["pg_restore"].startswith("pg_restore (PostgreSQL) ")
    assert found["started_at"] < found["finished_at"]
    assert found["durations_s"]["restore"] > 0 and found["durations_s"]["verification"] > 0
    assert found["durations_s"]["download"] is None
    assert "PASSED, " in report(first) and str(evidence_files(evidence)[0]) in report(first)
    assert f"{len(found['checks'])} passed, 0 failed, 0 not compared" in report(first)
    plan = [r for r in first.host_results(HOST, PLAN_TASK) if r["event"] == "runner_on_ok"]
    assert plan and plan[0]["msg"][2] == "row counts: the manifest has an exact count of every table", plan


def test_failing_smoke_sql_fails_naming_it_and_still_drops_the_scratch_database(live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, restore_drill_backup_dir=str(live.backup_dir),
                 restore_drill_smoke_sql=["SELECT count(*) > 0 FROM public.orders",
                                          "SELECT count(*) > 1000000 FROM public.items"])
    assert result.rc != 0 and result.changed(HOST) > 0
    verdict = [r for r in failed_tasks(result) if r["task"] == VERDICT_TASK]
    assert verdict and "failed checks: smoke_sql 2" in verdict[0]["msg"], result.stdout[-3000:]
    assert_untouched(live)

    found = only_evidence(evidence)
    assert found["passed"] is False and found["failed_checks"] == ["smoke_sql 2"]
    assert found["scratch_dropped"] is True
    checks = {c["name"]: c for c in found["checks"]}
    assert checks["smoke_sql 1"]["passed"] is True and checks["smoke_sql 2"]["passed"] is False
    assert checks["smoke_sql 2"]["status"] == "failed" and found["verdict"] == "failed"
    assert found["summary"]["failed"] == 1 and found["summary"]["not_compared"] == 0
    assert found["row_counts"] == expected_counts(live.manifest)


@pytest.fixture(scope="module")
def uncounted(live: Live, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A real backup of DB without exact counts (backup_row_counts=estimate, kept local): its backup_dir and id."""
    backup_dir = tmp_path_factory.mktemp("drill-estimate")
    backup_id, manifest = make_backup(live.target, backup_dir, backup_row_counts="estimate", backup_s3_bucket="")
    assert manifest["row_counts"] == "estimate" and manifest["verified_at"]
    assert sorted(f"{t['schema']}.{t['name']}" for t in manifest["tables"]) == TABLES
    assert all(t["rows"] is None for t in manifest["tables"]), manifest["tables"]
    return backup_dir, backup_id


def assert_not_compared(row: dict[str, Any], restored: int | None) -> None:
    assert row == {"backup": None, "restored": restored, "status": "not_compared", "passed": None,
                   "reason": NO_COUNT}, row


def test_drill_of_a_backup_without_exact_counts_fails_naming_the_tables(live: Live, uncounted: tuple[Path, str],
                                                                        tmp_path: Path) -> None:
    """restore_drill_require_counts=true (the default): presence alone is no drill of the rows."""
    backup_dir, backup_id = uncounted
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, restore_drill_backup_dir=str(backup_dir))
    assert result.rc != 0 and result.changed(HOST) > 0, result.stdout[-3000:]
    verdict = [r for r in failed_tasks(result) if r["task"] == VERDICT_TASK]
    assert verdict, result.stdout[-3000:]
    assert (f"FAILED: the row counts of 4 table(s) were not compared ({', '.join(TABLES)}): the manifest has no "
            "exact count for them") in verdict[0]["msg"], verdict[0]["msg"]
    assert "restore_drill_require_counts=false" in verdict[0]["msg"]
    plan = [r for r in result.host_results(HOST, PLAN_TASK) if r["event"] == "runner_on_ok"]
    assert plan and plan[0]["msg"][2].startswith("4 of 4 tables have no exact row count in the manifest "
                                                 "(row_counts estimate)"), plan
    assert "the drill will fail" in plan[0]["msg"][2]
    assert_untouched(live)

    found = only_evidence(evidence)
    assert found["backup"]["id"] == backup_id and found["scratch_dropped"] is True
    assert found["passed"] is False and found["verdict"] == "failed"
    assert found["counts_compared"] is False and found["require_counts"] is True
    # nothing failed: the counts were not compared, which is what fails this drill
    assert found["failed_checks"] == [] and found["error"] is None
    assert found["not_compared_checks"] == [f"rows {t}" for t in TABLES]
    assert sorted(found["row_counts"]) == TABLES
    for row in found["row_counts"].values():
        assert_not_compared(row, None)  # no table counted: no count to compare with
    checks = {c["name"]: c for c in found["checks"]}
    assert all(checks[f"rows {t}"]["status"] == "not_compared" and checks[f"rows {t}"]["passed"] is None
               for t in TABLES), checks
    assert found["summary"] == {"checks": len(checks), "passed": len(checks) - 4, "failed": 0, "not_compared": 4,
                                "tables": 4}
    assert "FAILED, " in report(result) and f"{len(checks) - 4} passed, 0 failed, 4 not compared" in report(result)


def test_drill_with_require_counts_off_passes_with_a_warning_marking_the_uncounted_table(live: Live,
                                                                                       tmp_path: Path) -> None:
    """One table without a count, as a manifest written before its table was counted has it (rows: null); the
    other tables are compared as ever. The manifest's own content is not checksummed: the files it lists are."""
    backup_dir = tmp_path / "backups"
    shutil.copytree(live.backup_dir / DB / live.backup_id, backup_dir / DB / live.backup_id)
    manifest = json.loads(json.dumps(live.manifest))
    orders = next(t for t in manifest["tables"] if t["name"] == "orders")
    orders["rows"] = None
    (backup_dir / DB / live.backup_id / "manifest.json").write_text(json.dumps(manifest, indent=2))
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, restore_drill_backup_dir=str(backup_dir),
                 restore_drill_require_counts=False)
    assert result.rc == 0, result.stdout[-3000:]
    assert_untouched(live)

    found = only_evidence(evidence)
    assert found["passed"] is True and found["verdict"] == "passed_with_warnings"
    assert found["counts_compared"] is False and found["require_counts"] is False
    assert found["failed_checks"] == [] and found["not_compared_checks"] == ["rows public.orders"]
    # counted in the scratch database (the other tables have counts), but there is nothing to compare it with
    assert_not_compared(found["row_counts"].pop("public.orders"), 123)
    assert found["row_counts"] == {k: v for k, v in expected_counts(live.manifest).items() if k != "public.orders"}
    checks = len(found["checks"])
    assert found["summary"] == {"checks": checks, "passed": checks - 1, "failed": 0, "not_compared": 1, "tables": 4}
    line = report(result)
    assert "PASSED WITH WARNINGS, " in line and f"{checks - 1} passed, 0 failed, 1 not compared" in line, line
    assert "the row counts of 1 table(s) were not compared (public.orders)" in line, line


def test_check_mode_plans_and_creates_and_writes_nothing(live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, check=True, restore_drill_backup_dir=str(live.backup_dir))
    assert result.rc == 0, result.stdout[-3000:]
    plan = [r for r in result.host_results(HOST, PLAN_TASK) if r["event"] == "runner_on_ok"]
    assert plan and live.backup_id in plan[0]["msg"][0] and live.scratch in plan[0]["msg"][1]
    assert "no evidence written" in report(result)
    assert not evidence.exists()
    assert_untouched(live)


def test_refuses_a_scratch_name_that_exists_and_leaves_it_alone(live: Live, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    with _connect(live.target) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(live.scratch)))
    try:
        with _connect(live.target, live.scratch) as conn:
            conn.execute("CREATE TABLE someone_elses (id int)")
        result = run(live.target, evidence, restore_drill_backup_dir=str(live.backup_dir))
        assert result.rc != 0
        failed = failed_tasks(result)
        assert failed and failed[0]["task"].startswith("Plan | "), result.stdout[-3000:]
        assert f"database {live.scratch} exists" in failed[0]["msg"]
        assert not result.host_results(HOST, "Drill | restore")
        with _connect(live.target, live.scratch) as conn:  # still there, still theirs
            assert conn.execute("SELECT to_regclass('public.someone_elses') IS NOT NULL").fetchone()[0]
        assert not evidence.exists()
    finally:
        with _connect(live.target) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(live.scratch)))
    assert_untouched(live)


def test_refuses_a_scratch_name_over_63_bytes(live: Live, tmp_path: Path) -> None:
    """A backup with a long id (pg_backup accepts up to 128 characters): <db>_drill_<id> would be cut."""
    long_id = "monthly-drill-" + "x" * 30
    backup_dir = tmp_path / "backups"
    shutil.copytree(live.backup_dir / DB / live.backup_id, backup_dir / DB / long_id)
    manifest_path = backup_dir / DB / long_id / "manifest.json"
    manifest_path.write_text(json.dumps({**live.manifest, "id": long_id}))
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, restore_drill_backup_dir=str(backup_dir), restore_drill_backup=long_id)
    assert result.rc != 0
    failed = failed_tasks(result)
    assert failed and failed[0]["task"].startswith("Plan | "), result.stdout[-3000:]
    assert f"{DB}_drill_{long_id} is {len(DB) + 7 + len(long_id)} bytes, more than the 63" in failed[0]["msg"]
    assert not result.host_results(HOST, "Drill | restore")
    assert not evidence.exists()
    assert_untouched(live)


def test_drill_from_the_bucket(live: Live, tmp_path: Path) -> None:
    base = f"{PREFIX}/{DB}/{live.backup_id}"
    uploaded = sorted([f"{base}/{f['path']}" for f in live.manifest["files"]] + [f"{base}/manifest.json"])
    assert live.bucket.keys(PREFIX + "/") == uploaded
    shutil.rmtree(live.uploaded_dir / DB / live.backup_id)  # where backup.yml made it: only the bucket has it now

    download_dir = tmp_path / "downloads"
    download_dir.mkdir()
    evidence = tmp_path / "evidence"
    result = run(live.target, evidence, restore_drill_from_bucket=True, restore_drill_s3_prefix=PREFIX,
                 restore_drill_backup_dir=str(live.uploaded_dir), restore_drill_download_dir=str(download_dir))
    assert result.rc == 0, result.stdout[-3000:]
    # the same backup id, so the same scratch name as the drills before: each run is a new drill
    assert result.changed(HOST) > 0
    assert_untouched(live)
    assert os.listdir(download_dir) == [], "the download was left behind"
    assert list((live.uploaded_dir / DB).iterdir()) == [], "the drill wrote into the backup directory"

    found = only_evidence(evidence)
    assert found["passed"] is True and found["scratch_dropped"] is True
    assert found["scratch_database"] == live.scratch
    assert found["backup"]["source"] == "bucket" and found["backup"]["id"] == live.backup_id
    assert found["backup"]["location"] == f"s3://{live.bucket.name}/{base}/"
    assert found["backup"]["created_at"] == live.manifest["created_at"]
    assert found["row_counts"] == expected_counts(live.manifest)
    assert found["durations_s"]["download"] > 0
    downloads = [r for r in result.host_results(HOST, "Fetch | download every object")
                 if r["event"] == "runner_on_ok"]
    assert downloads, result.stdout[-3000:]
    got = [item["item"]["key"] for item in downloads[0]["results"]]
    assert sorted(got) == uploaded and got[-1] == f"{base}/manifest.json"
