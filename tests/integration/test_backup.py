# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/backup.yml and playbooks/verify_backup.yml against the sandbox PostgreSQL and its S3 server.

The sandbox is shared with other developers' tests: everything here works in databases of its own
(backup_pb_test_<token>_*), in a backup_dir of its own (pytest's tmp_path) and under an S3 key prefix of its
own (pbtest-<token>/<test>), and removes them afterwards. State is always read back for real: the directories
under backup_dir, and the bucket's keys through boto3 with the inventory's credentials.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import yaml
from psycopg import sql

from tests.conftest import ROOT, Target
from tests.lib import pg_fixtures
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
BINDIR = Path("/usr/lib/postgresql/15/bin")
TOKEN = secrets.token_hex(3)
DB = f"backup_pb_test_{TOKEN}"  # pgbench schema and tables of our own
SMALL_DB = f"backup_pb_test_{TOKEN}_small"  # a few rows: cheap to copy many times
RESTORE_DB = f"backup_pb_test_{TOKEN}_restore"
MISSING_DB = f"backup_pb_test_{TOKEN}_missing"
PREFIX = f"pbtest-{TOKEN}"
ODD_TABLE = 'Odd "name"; --'
OWN_TABLES_SQL = [
    "CREATE TABLE public.orders (id int PRIMARY KEY, total numeric NOT NULL)",
    "INSERT INTO public.orders SELECT g, g * 1.5 FROM generate_series(1, 1234) g",
    sql.SQL("CREATE TABLE public.{} (id int, v text)").format(sql.Identifier(ODD_TABLE)),
    sql.SQL("INSERT INTO public.{} SELECT g, 'v' || g FROM generate_series(1, 57) g").format(
        sql.Identifier(ODD_TABLE)),
    "CREATE TABLE public.empty_table (id int)",
]
ID_RE = re.compile(r"\d{8}T\d{6}Z(-\d+)?")


# --- PostgreSQL --------------------------------------------------------------------------------------------

def _pg_args(target: Target) -> list[str]:
    env = target.env
    return ["-h", env["PGHOST"], "-p", env["PGPORT"], "-U", env["RUNBOOK_PG_ADMIN_USER"]]


def row_counts(target: Target, dbname: str) -> dict[str, int]:
    """count(*) of every ordinary table outside the system schemas, by schema.name."""
    counts: dict[str, int] = {}
    with pg_fixtures.connect(target, dbname) as conn:
        for schema, name in pg_fixtures.user_tables(conn):
            query = sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(schema, name))
            counts[f"{schema}.{name}"] = conn.execute(query).fetchone()[0]
    return counts


@pytest.fixture(scope="module")
def db(sandbox: Target) -> Iterator[Target]:
    """DB: a pgbench -i -s 1 schema (100000 accounts) and tables of our own, one with a hostile name."""
    pg_fixtures.recreate(sandbox, DB, OWN_TABLES_SQL)
    proc = subprocess.run([str(BINDIR / "pgbench"), *_pg_args(sandbox), "-i", "-s", "1", "-q", DB],
                          env=pg_fixtures.password_env(sandbox), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    yield sandbox
    pg_fixtures.drop(sandbox, DB)
    pg_fixtures.drop(sandbox, RESTORE_DB)


@pytest.fixture(scope="module")
def small_db(sandbox: Target) -> Iterator[Target]:
    pg_fixtures.recreate(sandbox, SMALL_DB, ["CREATE TABLE public.items (id int PRIMARY KEY)",
                                "INSERT INTO public.items SELECT generate_series(1, 10)"])
    yield sandbox
    pg_fixtures.drop(sandbox, SMALL_DB)


@dataclass(frozen=True)
class SmallBackup:
    target: Target
    path: Path  # <backup_dir>/<SMALL_DB>/<id>

    def copy_to(self, backup_dir: Path) -> str:
        """A copy in backup_dir/SMALL_DB/ under the same id; the id."""
        shutil.copytree(self.path, backup_dir / SMALL_DB / self.path.name)
        return self.path.name


# --- the bucket --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bucket:
    client: Any
    name: str

    def keys(self, prefix: str) -> list[str]:
        """Every key under prefix/, all pages."""
        found: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix + "/"):
            found += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(found)

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def empty(self, prefix: str) -> None:
        for key in self.keys(prefix):
            self.client.delete_object(Bucket=self.name, Key=key)

    @classmethod
    def of_inventory(cls, inventory: dict[str, Any]) -> Bucket:
        """The inventory's bucket (its all:vars), with the inventory's credentials."""
        client = boto3.client("s3", endpoint_url=inventory["runbook_s3_endpoint_url"],
                              region_name=inventory["runbook_s3_region"],
                              aws_access_key_id=inventory["runbook_s3_access_key"],
                              aws_secret_access_key=inventory["runbook_s3_secret_key"])
        return cls(client, inventory["runbook_s3_bucket"])


@pytest.fixture(scope="module")
def bucket(sandbox: Target) -> Iterator[Bucket]:
    """The inventory's bucket, with the inventory's credentials; our prefix is emptied afterwards."""
    found = Bucket.of_inventory(yaml.safe_load((sandbox.inventory / "hosts.yml").read_text())["all"]["vars"])
    yield found
    found.empty(PREFIX)


# --- the playbooks -----------------------------------------------------------------------------------------

def backup_vars(backup_dir: Path | str, prefix: str, database: str = DB, **more: Any) -> dict[str, Any]:
    return {"backup_databases": [database], "backup_dir": str(backup_dir), "backup_s3_prefix": prefix, **more}


def run(playbook: str, target: Target, extravars: dict[str, Any], **kwargs: Any) -> PlaybookResult:
    return run_playbook(playbook, target.inventory, extravars=extravars, limit=HOST, **kwargs)


def report(result: PlaybookResult, task: str = "Report | what was backed up") -> list[str]:
    found = [r for r in result.host_results(HOST, task) if r["event"] == "runner_on_ok"]
    assert found, f"no {task!r} in the run (rc={result.rc}):\n{result.stdout[-3000:]}"
    return list(found[-1]["msg"])


def failures(result: PlaybookResult) -> list[dict[str, Any]]:
    return [r for r in result.host_results(HOST) if r["event"] == "runner_on_failed" and not r.get("ignore_errors")]


def tree(root: Path) -> list[str]:
    """Everything under root (directories and files), relative, sorted; [] when root does not exist."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def manifest_of(backup_dir: Path, database: str, backup_id: str) -> dict[str, Any]:
    return json.loads((backup_dir / database / backup_id / "manifest.json").read_text())


def one_backup(backup_dir: Path, database: str) -> str:
    ids = [p.name for p in (backup_dir / database).iterdir()]
    assert len(ids) == 1 and ID_RE.fullmatch(ids[0]), ids
    return ids[0]


def make_backup(target: Target, backup_dir: Path, database: str, **more: Any) -> str:
    """One real local backup through backup.yml (no upload, no retention); its id."""
    done = run("backup.yml", target, backup_vars(backup_dir, PREFIX, database, backup_s3_bucket="",
                                                 backup_retention=False, **more))
    assert done.rc == 0, done.stdout[-3000:]
    return one_backup(backup_dir, database)


@pytest.fixture(scope="module")
def small_backup(small_db: Target, tmp_path_factory: pytest.TempPathFactory) -> SmallBackup:
    """One real backup of SMALL_DB made with backup_verify=false (so verified_at is null); tests copy it."""
    backup_dir = tmp_path_factory.mktemp("small-backup")
    backup_id = make_backup(small_db, backup_dir, SMALL_DB, backup_verify=False)
    return SmallBackup(small_db, backup_dir / SMALL_DB / backup_id)


# --- backup.yml: four steps ------------------------------------------------------------------------------------

def test_four_runs_make_one_verified_backup_locally_and_in_the_bucket(small_db: Target, bucket: Bucket,
                                                                      tmp_path: Path) -> None:
    db = small_db
    prefix = f"{PREFIX}/four"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()

    def state() -> tuple[list[str], list[str]]:
        return tree(backup_dir), bucket.keys(prefix)

    runs = run_four_times("backup.yml", db.inventory, read_state=state, limit=HOST,
                          extravars=backup_vars(backup_dir, prefix, SMALL_DB, backup_reuse_within="1h"))
    assert runs.before == ([], [])
    planned = report(runs.check)
    assert planned[0].startswith(f"{SMALL_DB}: would back up into {backup_dir}/{SMALL_DB}/"), planned
    assert "--format=custom" in planned[0] and db.env["RUNBOOK_PG_ADMIN_PASSWORD"] not in runs.check.stdout

    backup_id = one_backup(backup_dir, SMALL_DB)
    manifest = manifest_of(backup_dir, SMALL_DB, backup_id)
    assert manifest["verified_at"] is not None and manifest["toc_entries"] > 0
    files = [f["path"] for f in manifest["files"]]
    assert files == ["dump.custom"]
    assert runs.after[0] == [SMALL_DB, f"{SMALL_DB}/{backup_id}", f"{SMALL_DB}/{backup_id}/dump.custom",
                             f"{SMALL_DB}/{backup_id}/manifest.json"]
    # every file and the manifest, nothing else, and each object is the file it stands for
    base = f"{prefix}/{SMALL_DB}/{backup_id}"
    assert runs.after[1] == sorted(f"{base}/{name}" for name in files + ["manifest.json"])
    for entry in manifest["files"]:
        assert hashlib.sha256(bucket.read(f"{base}/{entry['path']}")).hexdigest() == entry["sha256"]
    remote_manifest = json.loads(bucket.read(f"{base}/manifest.json"))
    assert remote_manifest == manifest and remote_manifest["verified_at"] is not None

    made = report(runs.real)[0]
    assert made.startswith(f"{SMALL_DB}: backup {backup_id} in {backup_dir}/{SMALL_DB}/{backup_id} "), made
    assert made.endswith(f", verified, uploaded to s3://{bucket.name}/{prefix}/{SMALL_DB}/{backup_id}"), made
    assert report(runs.real_again)[0].startswith(f"{SMALL_DB}: reused verified backup {backup_id} of ")
    assert report(runs.check_again)[0].startswith(f"{SMALL_DB}: reused verified backup {backup_id} of ")


# --- backup.yml: the manifest's row counts -----------------------------------------------------------------

def test_manifest_row_counts_are_the_counts_at_backup_time(db: Target, tmp_path: Path) -> None:
    """The manifest holds count(*) of every table as dumped: equal to a restore of the archive, not to later data."""
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    at_backup = row_counts(db, DB)
    assert at_backup["public.pgbench_accounts"] == 100000 and at_backup[f"public.{ODD_TABLE}"] == 57
    backup_id = make_backup(db, backup_dir, DB)

    with pg_fixtures.connect(db, DB) as conn:
        conn.execute("INSERT INTO public.orders SELECT g, 1 FROM generate_series(100001, 100500) g")
        conn.execute("DELETE FROM public.pgbench_accounts WHERE aid <= 250")
        conn.execute(sql.SQL("DELETE FROM public.{}").format(sql.Identifier(ODD_TABLE)))
        conn.execute("INSERT INTO public.pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 5, now())")
    now = row_counts(db, DB)
    assert now != at_backup

    manifest = manifest_of(backup_dir, DB, backup_id)
    assert manifest["row_counts"] == "exact"
    counted = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    assert counted == at_backup
    assert {"public.pgbench_accounts", "public.pgbench_branches", "public.pgbench_tellers",
            "public.pgbench_history"} <= set(counted)

    # and they are the rows the archive holds
    pg_fixtures.recreate(db, RESTORE_DB, [])
    proc = subprocess.run([str(BINDIR / "pg_restore"), *_pg_args(db), "--no-owner", "--exit-on-error",
                           "-d", RESTORE_DB, str(backup_dir / DB / backup_id / "dump.custom")],
                          env=pg_fixtures.password_env(db), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert row_counts(db, RESTORE_DB) == counted
    pg_fixtures.drop(db, RESTORE_DB)


# --- backup.yml: retention over made-up dates --------------------------------------------------------------

# (backup id, verified) spread over ten months: two in some months, weeks and days (the older one goes), a
# backup nearly every day at the end, an unverified one older than the newest verified (it goes) and one newer
# (it stays: in flight).
MADE_UP = [
    ("20260115T020000Z", True), ("20260331T020000Z", True), ("20260520T020000Z", True),
    ("20260704T020000Z", True), ("20260816T020000Z", True), ("20260831T020000Z", True),
    ("20260928T020000Z", True), ("20261004T020000Z", True),
    ("20261012T020000Z", True), ("20261019T020000Z", True), ("20261020T020000Z", True),
    ("20261021T020000Z", True), ("20261021T140000Z", True), ("20261022T020000Z", False),
    ("20261023T020000Z", True), ("20261025T020000Z", True), ("20261026T020000Z", True),
    ("20261027T020000Z", True), ("20261028T020000Z", False),
]
NEWEST_VERIFIED = "20261027T020000Z"
IN_FLIGHT = "20261028T020000Z"
# With every count at 0: only the newest verified and the one in flight may stay.
BARE = [("20260601T020000Z", True), ("20260602T020000Z", False), ("20260604T020000Z", True),
        ("20260605T020000Z", False)]
# Never deleted: a local directory without a manifest, and keys whose id is no backup time (the second one
# looks like a date to a lenient parser: 2026121T... is not an id pg_backup makes).
INVALID_DIR = "20260701T020000Z"
UNDATED_IDS = ["before-upgrade", "2026121T020000Z"]


def _when(backup_id: str) -> datetime:
    return datetime.strptime(backup_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def expected_deletions(backups: list[tuple[str, bool]], daily: int, weekly: int, monthly: int) -> set[str]:
    """What a 'newest of each of the last N days/ISO weeks/months' retention deletes, computed per period."""
    verified = [b for b, ok in backups if ok]
    keep: set[str] = set()
    periods: list[tuple[int, Callable[[datetime], tuple[int, ...]]]] = [
        (daily, lambda t: (t.year, t.month, t.day)),
        (weekly, lambda t: tuple(t.isocalendar())[:2]),
        (monthly, lambda t: (t.year, t.month)),
    ]
    for count, period in periods:
        for chosen in sorted({period(_when(b)) for b in verified}, reverse=True)[:count]:
            keep.add(max((b for b in verified if period(_when(b)) == chosen), key=_when))
    newest = max(verified, key=_when)
    keep.add(newest)
    keep |= {b for b, ok in backups if not ok and _when(b) > _when(newest)}
    return {b for b, _ok in backups} - keep


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class MadeUp:
    """Copies of one real backup under made-up ids, in backup_dir and under prefix in the bucket."""

    backup_dir: Path
    bucket: Bucket
    prefix: str
    backups: list[tuple[str, bool]]

    def state(self) -> tuple[list[str], list[str]]:
        """The directory names under backup_dir/SMALL_DB and the keys under prefix."""
        return sorted(p.name for p in (self.backup_dir / SMALL_DB).iterdir()), self.bucket.keys(self.prefix)

    def expected_state(self, ids: set[str] | list[str]) -> tuple[list[str], list[str]]:
        """The state with only these backups left (and what retention never touches)."""
        verified = dict(self.backups)
        base = f"{self.prefix}/{SMALL_DB}"
        keys = [f"{base}/{b}/dump.custom" for b in list(ids) + UNDATED_IDS]
        keys += [f"{base}/{b}/manifest.json" for b in ids if verified[b]]
        keys += [f"{base}/{b}/manifest.json" for b in UNDATED_IDS]
        return sorted(list(ids) + [INVALID_DIR]), sorted(keys)


def build_made_up_backups(source: SmallBackup, backup_dir: Path, bucket: Bucket, prefix: str,
                          backups: list[tuple[str, bool]]) -> MadeUp:
    """Copies of the real backup under the made-up ids, locally and in the bucket, with valid manifests.

    An unverified copy has verified_at null locally and no manifest.json in the bucket (an upload that never
    finished: the role uploads manifest.json last, and only for verified backups).
    """
    manifest = json.loads((source.path / "manifest.json").read_text())
    dump = (source.path / "dump.custom").read_bytes()
    for backup_id, verified in backups:
        target = backup_dir / SMALL_DB / backup_id
        target.mkdir(mode=0o700, parents=True)
        (target / "dump.custom").write_bytes(dump)
        created = _when(backup_id)
        copy = dict(manifest, id=backup_id, created_at=_iso(created),
                    verified_at=_iso(created + timedelta(minutes=3)) if verified else None)
        (target / "manifest.json").write_text(json.dumps(copy, indent=2))
        bucket.put(f"{prefix}/{SMALL_DB}/{backup_id}/dump.custom", dump)
        if verified:
            bucket.put(f"{prefix}/{SMALL_DB}/{backup_id}/manifest.json", (target / "manifest.json").read_bytes())
    (backup_dir / SMALL_DB / INVALID_DIR).mkdir()
    (backup_dir / SMALL_DB / INVALID_DIR / "dump.custom").write_bytes(dump)
    for undated in UNDATED_IDS:
        bucket.put(f"{prefix}/{SMALL_DB}/{undated}/dump.custom", dump)
        bucket.put(f"{prefix}/{SMALL_DB}/{undated}/manifest.json", b"{}")
    made = MadeUp(backup_dir, bucket, prefix, backups)
    assert made.state() == made.expected_state([b for b, _ok in backups])
    return made


def _deleted_in(lines: list[str], where: str) -> set[str]:
    pattern = re.compile(rf"^{SMALL_DB}: would delete {where} (\S+)")
    return {m.group(1) for m in map(pattern.match, lines) if m}


def test_retention_deletes_exactly_what_the_counts_drop(small_backup: SmallBackup, bucket: Bucket,
                                                        tmp_path: Path) -> None:
    made = build_made_up_backups(small_backup, tmp_path / "backups", bucket, f"{PREFIX}/retention", MADE_UP)
    doomed = expected_deletions(MADE_UP, 7, 4, 6)
    # the dates exercise the rules: a month beyond the 6, the older of two in a month (and in no week or day
    # slot), the older of two in a day, and an unverified one older than the newest verified
    assert doomed == {"20260115T020000Z", "20260816T020000Z", "20261021T020000Z", "20261022T020000Z"}
    assert NEWEST_VERIFIED not in doomed and IN_FLIGHT not in doomed

    runs = run_four_times("backup.yml", small_backup.target.inventory, read_state=made.state, limit=HOST,
                          tags="backup_retention",
                          extravars=backup_vars(made.backup_dir, made.prefix, SMALL_DB, backup_keep_daily=7,
                                                backup_keep_weekly=4, backup_keep_monthly=6))

    # --check listed exactly those, locally and in the bucket, named what it never touches, and dumped nothing
    lines = report(runs.check)
    assert _deleted_in(lines, "local backup") == doomed, lines
    assert _deleted_in(lines, "backup") == doomed, lines
    assert f"{SMALL_DB}: kept {made.backup_dir / SMALL_DB / INVALID_DIR} (not a complete backup: " \
        f"{made.backup_dir / SMALL_DB / INVALID_DIR}: no manifest.json, so not a complete backup)" in lines, lines
    for undated in UNDATED_IDS:
        assert f"{SMALL_DB}: kept s3://{bucket.name}/{made.prefix}/{SMALL_DB}/{undated}/dump.custom " \
            "(not a dated backup id)" in lines, lines
    assert not runs.check.host_results(HOST, "Dump |"), "--tags backup_retention ran the dump"
    # the real run deleted exactly those, in both places
    assert runs.after == made.expected_state({b for b, _ok in MADE_UP} - doomed)


def test_retention_always_keeps_the_newest_verified_and_newer_unverified(small_backup: SmallBackup,
                                                                        bucket: Bucket, tmp_path: Path) -> None:
    made = build_made_up_backups(small_backup, tmp_path / "backups", bucket, f"{PREFIX}/bare", BARE)
    assert expected_deletions(BARE, 0, 0, 0) == {"20260601T020000Z", "20260602T020000Z"}
    done = run("backup.yml", small_backup.target,
               backup_vars(made.backup_dir, made.prefix, SMALL_DB, backup_keep_daily=0, backup_keep_weekly=0,
                           backup_keep_monthly=0), tags="backup_retention")
    assert done.rc == 0, done.stdout[-3000:]
    assert made.state() == made.expected_state(["20260604T020000Z", "20260605T020000Z"])


# --- backup.yml: bad input ---------------------------------------------------------------------------------

WRONG_PASSWORD = f"Wrong-{secrets.token_hex(8)}"
BAD_INPUT = {
    "jobs_with_custom": ({"backup_jobs": 2, "backup_format": "custom"},
                         "backup_jobs=2 needs backup_format=directory"),
    "relative_backup_dir": ({"backup_dir": f"backup_pb_test_{TOKEN}_relative/backups"},
                            f"backup_dir must be an absolute path, not backup_pb_test_{TOKEN}_relative/backups"),
    "missing_backup_dir": ({"backup_dir": "{tmp}/missing"}, "backup_dir {tmp}/missing does not exist"),
    "missing_database": ({"backup_databases": [MISSING_DB]}, f'database "{MISSING_DB}" does not exist'),
    "wrong_password": ({"runbook_pg_password": WRONG_PASSWORD},
                       'password authentication failed for user "runbook_admin"'),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_clear_error_and_creates_nothing(case: str, db: Target, bucket: Bucket,
                                                          tmp_path: Path) -> None:
    prefix = f"{PREFIX}/bad-{case}"
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    more, expected = BAD_INPUT[case]
    more = json.loads(json.dumps(more).replace("{tmp}", str(tmp_path)))
    expected = expected.replace("{tmp}", str(tmp_path))

    done = run("backup.yml", db, {**backup_vars(backup_dir, prefix), **more})
    assert done.rc != 0 and done.stats[HOST]["failures"] == 1, done.stdout[-3000:]
    failed = failures(done)
    assert len(failed) == 1, failed
    assert expected in failed[0]["msg"], failed[0]["msg"]
    assert not done.host_results(HOST, "Report |"), "the run went on after the error"
    # nothing was created: no directory (partial or not), no object
    assert tree(backup_dir) == [] and bucket.keys(prefix) == []
    assert not (ROOT / f"backup_pb_test_{TOKEN}_relative").exists()
    assert not (tmp_path / "missing").exists()
    if case == "wrong_password":
        assert WRONG_PASSWORD not in done.stdout
        assert not [ev["event"] for ev in done.events if WRONG_PASSWORD in json.dumps(ev)]


def test_check_mode_with_backup_create_dir_plans_without_the_directory(db: Target, tmp_path: Path) -> None:
    """--check on a host that has no backup_dir yet: a change and a plan, and still no directory."""
    missing = tmp_path / "new-volume"
    done = run("backup.yml", db, backup_vars(missing, PREFIX, backup_create_dir=True, backup_s3_bucket=""),
               check=True)
    assert done.rc == 0, done.stdout[-3000:]
    assert done.changed(HOST) > 0
    assert report(done)[0] == (f"{DB}: would create {missing} (mode 0700) and back up into it; the pg_dump "
                               "command is known once it exists")
    assert not missing.exists()


# --- verify_backup.yml -------------------------------------------------------------------------------------

def test_verify_backup_records_verified_at_once_and_fails_on_a_flipped_byte(small_backup: SmallBackup,
                                                                            tmp_path: Path) -> None:
    small_db = small_backup.target
    backup_dir = tmp_path / "backups"
    backup_id = small_backup.copy_to(backup_dir)
    assert manifest_of(backup_dir, SMALL_DB, backup_id)["verified_at"] is None
    extravars = {"verify_backup_databases": [SMALL_DB], "verify_backup_dir": str(backup_dir)}

    runs = run_four_times("verify_backup.yml", small_db.inventory, limit=HOST, extravars=extravars,
                          read_state=lambda: manifest_of(backup_dir, SMALL_DB, backup_id)["verified_at"])
    assert runs.before is None and runs.after is not None
    assert runs.real.changed(HOST) == 1
    assert report(runs.check, "Report |")[0].endswith("verified_at would be recorded")
    assert report(runs.real, "Report |")[0].startswith(f"{SMALL_DB}: backup {backup_id} verified (1 files, ")
    # the backup read its data back when it was made: by default the verification does not read it again
    assert "data read back" not in report(runs.real, "Report |")[0]
    again = run("verify_backup.yml", small_db, {**extravars, "verify_backup_check_data": True})
    assert again.rc == 0 and ", data read back, in " in report(again, "Report |")[0], again.stdout[-3000:]
    assert report(runs.real_again, "Report |")[0].endswith(f"verified before, at {runs.after}")

    dump = backup_dir / SMALL_DB / backup_id / "dump.custom"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    manifest_before = (backup_dir / SMALL_DB / backup_id / "manifest.json").read_bytes()
    files_before = tree(backup_dir)

    done = run("verify_backup.yml", small_db, extravars)
    assert done.rc != 0 and done.changed(HOST) == 0, done.stdout[-3000:]
    failed = failures(done)
    assert len(failed) == 1, failed
    assert "does not match its manifest: dump.custom: sha256 differs" in failed[0]["msg"], failed[0]["msg"]
    assert (backup_dir / SMALL_DB / backup_id / "manifest.json").read_bytes() == manifest_before
    assert tree(backup_dir) == files_before


def test_verify_backup_finds_the_backup_itself_and_a_missing_one_changes_nothing(small_backup: SmallBackup,
                                                                                 tmp_path: Path) -> None:
    """One database: its verification call finds the backup (a newer directory that is not a complete backup is
    reported) or fails, changing nothing. Several: a database without that backup fails the run before the
    backup of the other is verified."""
    small_db = small_backup.target
    backup_dir = tmp_path / "backups"
    backup_id = small_backup.copy_to(backup_dir)
    (backup_dir / "no_backup_here").mkdir()
    files_before = tree(backup_dir)
    extravars = {"verify_backup_dir": str(backup_dir)}
    for databases in (["no_backup_here"], ["no_backup_here", SMALL_DB]):
        done = run("verify_backup.yml", small_db, {**extravars, "verify_backup_databases": databases})
        assert done.rc != 0 and done.changed(HOST) == 0, done.stdout[-3000:]
        failed = failures(done)
        assert len(failed) == 1, failed
        assert failed[0]["msg"].startswith(f"no_backup_here: no complete backup of database 'no_backup_here' in "
                                           f"{backup_dir}"), failed[0]["msg"]
        assert manifest_of(backup_dir, SMALL_DB, backup_id)["verified_at"] is None
        assert tree(backup_dir) == files_before

    newer = backup_dir / SMALL_DB / "29991231T000000Z"
    newer.mkdir()
    done = run("verify_backup.yml", small_db, {**extravars, "verify_backup_databases": [SMALL_DB]})
    assert done.rc == 0 and done.changed(HOST) == 1, done.stdout[-3000:]
    lines = report(done, "Report |")
    assert lines[0].startswith(f"{SMALL_DB}: backup {backup_id} verified (1 files, "), lines
    assert lines[1].startswith(f"{SMALL_DB}: not a complete backup, not verified: {newer} ("), lines
