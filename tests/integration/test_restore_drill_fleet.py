# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""restore_drill.yml across hosts on the podman fleet: a backup taken on db1, drilled on db2 from the bucket.

db1 (group postgres) backs up its app database (the demo app's tables) through backup.yml to the fleet's
S3 server (moto on the fleet's own bridge), under a key prefix of this run's own. Then restore_drill.yml
runs on db2 alone (`restore_drill_hosts=drill`, its own cluster: another system identifier, an empty app
database, no local backup): it finds the newest complete backup under that prefix, downloads it,
restores it into the scratch database app_drill_<id>, verifies it, writes the evidence on the controller
and drops the scratch database and the download. A smoke SQL statement that only db1's data satisfies
(the exact count of db1's tenders: db2 has no such table) proves that db1's backup is what db2 restored.

Other engineers may run fleet tests at the same time: db1's live database is only read, the backup goes
to a backup_dir and prefix of our own, and everything the run made (the backup, its objects, a scratch
database our drill left) is removed at the end. The drill never connects to db1; db1's rows are compared
before and after all the same, so a restore of db1 running at the same time (test_backup_restore_fleet.py)
makes this test fail: run the two one after the other, as one pytest session does.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Target
from tests.lib.restore_helpers import DIGEST_SQL, Bucket, backup_results, evidence_files, expected_counts
from tests.lib.restore_helpers import fleet_backup_dir, group_vars, parse_digests, psql, run_every, s3_bucket, ssh
from tests.lib.runner import PlaybookResult, run_playbook

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root podman")]

BACKUP_HOST, DRILL_HOST = "db1", "db2"
DATABASE = "app"
# the demo app's table: db1's app database has its rows, db2's (empty) has no such table
PROBE = "public.tenders"
# well-formed (time-based), never made: backup.yml names backups after the time they were taken
MISSING_ID = "20000101T000000Z"
RAN_EVENTS = ("runner_on_ok", "runner_on_failed")


# ------------------------------------------------------------------------------------------------- helpers


def databases(target: Target, host: str) -> list[str]:
    return psql(target, host, "SELECT datname FROM pg_database ORDER BY 1", "postgres")


def digests(target: Target, host: str) -> dict[str, str]:
    return parse_digests(psql(target, host, DIGEST_SQL, DATABASE))


def listing(target: Target, host: str, directory: str) -> list[str]:
    """Every path under directory on host (find, sorted), or ["missing"]."""
    out = ssh(target, host, "sh", "-c", 'test -e "$1" && find "$1" -mindepth 1 | sort || echo missing', "sh", directory)
    return out.split()


def ran(result: PlaybookResult, host: str, task: str) -> list[dict[str, Any]]:
    """Results of the tasks named like task on host that ran (ok or failed), not skipped."""
    return [r for r in result.host_results(host, task) if r["event"] in RAN_EVENTS]


def report(result: PlaybookResult) -> str:
    found = [r for r in result.host_results(DRILL_HOST, "Report | the drill") if r["event"] == "runner_on_ok"]
    assert found, result.stdout[-3000:]
    return str(found[-1]["msg"])


@dataclass
class Drill:
    """This run's prefix and backup, the state read around the drills, and the runs."""

    target: Target
    bucket: Bucket
    evidence_root: Path
    tag: str = field(default_factory=lambda: f"fleet-drill-{secrets.token_hex(4)}")
    backup_id: str = ""
    probe_rows: int = -1
    # true only in a restore of db1's app database as it was at the backup (set with probe_rows)
    smoke_sql: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, PlaybookResult] = field(default_factory=dict)
    backup_dir: str = field(init=False)
    # a directory of our own on db2 for the runs that must download nothing (the drill uses the default)
    download_dir: str = field(init=False)

    def __post_init__(self) -> None:
        self.backup_dir = fleet_backup_dir(self.target, self.tag)
        self.download_dir = f"/var/tmp/{self.tag}"

    @property
    def scratch(self) -> str:
        return f"{DATABASE}_drill_{self.backup_id}"

    def evidence(self, name: str) -> Path:
        return self.evidence_root / name

    def drill(self, name: str, check: bool = False, **extravars: Any) -> PlaybookResult:
        self.runs[name] = run_playbook("restore_drill.yml", self.target.inventory, limit=DRILL_HOST, check=check,
                                       extravars={"restore_drill_hosts": "drill", "restore_drill_from_bucket": True,
                                                  "restore_drill_s3_prefix": self.tag,
                                                  "restore_drill_evidence_dir": str(self.evidence(name)),
                                                  **extravars})
        return self.runs[name]

    def snapshot(self) -> dict[str, Any]:
        """What a drill on db2 must leave as it found it, on both hosts."""
        drill_vars = group_vars(self.target, "drill")
        # the scratch databases of other runs' drills (other engineers) are theirs, not ours to judge
        others = f"{DATABASE}_drill_"
        return {"db1 rows": digests(self.target, BACKUP_HOST), "db1 databases": databases(self.target, BACKUP_HOST),
                "db2 databases": [d for d in databases(self.target, DRILL_HOST)
                                  if d == self.scratch or not d.startswith(others)],
                "db2 backup_dir": listing(self.target, DRILL_HOST, drill_vars["runbook_backup_dir"]),
                "db2 download_dir": listing(self.target, DRILL_HOST, self.download_dir)}

    def scratch_left_by_us(self) -> bool:
        """Our drill's pg_restore created the scratch database and no drop of it succeeded."""
        result = self.runs.get("drill")
        return bool(result and any(r.get("changed") for r in ran(result, DRILL_HOST, "Drill | restore"))
                    and not any(r.get("changed") for r in ran(result, DRILL_HOST, "Cleanup | drop the scratch")))


@pytest.fixture(scope="module")
def bucket(fleet: Target) -> Bucket:
    return s3_bucket(group_vars(fleet, "all"))


@pytest.fixture(scope="module")
def done(fleet: Target, bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """A backup of db1's app database in the bucket; then on db2: --check, the drill, a drill of a missing id.

    db1's live database is only read (pg_dump, counts, digests): other fleet tests compare its rows too.
    """
    run = Drill(fleet, bucket, tmp_path_factory.mktemp("drill-evidence"))
    try:
        run.probe_rows = int(psql(fleet, BACKUP_HOST, f"SELECT count(*) FROM {PROBE}", DATABASE)[0])
        run.smoke_sql = f"SELECT count(*) = {run.probe_rows} FROM {PROBE}"
        backup = run_playbook("backup.yml", fleet.inventory, limit=BACKUP_HOST, extravars={
            "backup_dir": run.backup_dir, "backup_create_dir": True, "backup_s3_prefix": run.tag})
        run.runs["backup"] = backup
        assert backup.rc == 0, backup.stdout[-3000:]
        made = backup_results(backup, BACKUP_HOST)
        assert len(made) == 1, made
        run.backup_id = made[0]["id"]
        run.manifest = json.loads(bucket.read(f"{run.tag}/{DATABASE}/{run.backup_id}/manifest.json"))

        ssh(fleet, DRILL_HOST, "install", "-d", "-m", "0700", run.download_dir)
        run.state["before"] = run.snapshot()
        run.drill("check", check=True, restore_drill_download_dir=run.download_dir)
        run.state["after check"] = run.snapshot()
        run.drill("drill", restore_drill_smoke_sql=[run.smoke_sql])
        run.state["after drill"] = run.snapshot()
        run.drill("missing", restore_drill_backup=MISSING_ID, restore_drill_download_dir=run.download_dir)
        run.state["after missing"] = run.snapshot()
        yield run
    finally:
        cleanup(run)


def cleanup(run: Drill) -> None:
    """Drop the scratch database if our drill left it; remove the backup, its objects and our directory on db2."""
    run_every(
        lambda: run.scratch_left_by_us() and psql(run.target, DRILL_HOST,
                                                  f'DROP DATABASE IF EXISTS "{run.scratch}" WITH (FORCE)', "postgres"),
        lambda: ssh(run.target, DRILL_HOST, "rm", "-rf", "--", run.download_dir),
        lambda: ssh(run.target, BACKUP_HOST, "rm", "-rf", "--", run.backup_dir),
        lambda: run.bucket.delete(f"{run.tag}/"),
    )


# --------------------------------------------------------------------------------------------------- tests


def test_db2_is_another_server_without_the_backup(done: Drill) -> None:
    """The premise of a cross-host drill: another cluster, an app database without db1's tables, no local copy."""
    ident = "SELECT system_identifier FROM pg_control_system()"
    assert psql(done.target, BACKUP_HOST, ident, DATABASE) != psql(done.target, DRILL_HOST, ident, DATABASE)
    assert done.probe_rows > 0 and PROBE in done.state["before"]["db1 rows"]
    assert psql(done.target, DRILL_HOST, f"SELECT to_regclass('{PROBE}') IS NULL", DATABASE) == ["t"]
    assert done.state["before"]["db2 backup_dir"] == []
    prefix = f"{done.tag}/{DATABASE}/{done.backup_id}/"
    files = sorted(prefix + f["path"] for f in done.manifest["files"])
    assert done.bucket.keys(f"{done.tag}/") == sorted([*files, prefix + "manifest.json"])
    assert done.manifest["verified_at"]
    # exact counts (backup_row_counts=exact, the default): a null count would be not_compared, failing the drill
    counts = {f"{t['schema']}.{t['name']}": t["rows"] for t in done.manifest["tables"]}
    assert all(isinstance(n, int) for n in counts.values()) and counts[PROBE] == done.probe_rows, counts


def test_drill_on_db2_restores_db1s_backup_from_the_bucket_and_passes(done: Drill) -> None:
    result = done.runs["drill"]
    assert result.rc == 0, result.stdout[-3000:]
    assert set(result.stats) == {DRILL_HOST}, result.stats
    assert result.changed(DRILL_HOST) > 0
    files = evidence_files(done.evidence("drill"))
    assert len(files) == 1, files
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    found = json.loads(files[0].read_text())
    assert found["passed"] is True and found["failed_checks"] == [] and found["error"] is None
    # every table's exact count compared: nothing merely present
    assert found["verdict"] == "passed" and found["counts_compared"] is True and found["not_compared_checks"] == []
    assert (found["host"], found["database"], found["scratch_database"]) == (DRILL_HOST, DATABASE, done.scratch)
    assert found["scratch_dropped"] is True
    # db1's backup (latest under our prefix), from the bucket
    assert found["backup"]["id"] == done.backup_id
    s3_url = f"s3://{done.bucket.name}/{done.tag}/{DATABASE}/{done.backup_id}/"
    assert found["backup"]["source"] == "bucket" and found["backup"]["location"] == s3_url
    assert found["backup"]["created_at"] == done.manifest["created_at"]
    assert found["versions"]["pg_dump"] == done.manifest["pg_dump_version"]
    # every table of the manifest, with the manifest's count, and no other
    assert found["row_counts"] == expected_counts(done.manifest)
    assert found["row_counts"][PROBE]["restored"] == done.probe_rows
    checks = {c["name"]: c for c in found["checks"]}
    assert checks and all(c["passed"] is True and c["status"] == "passed" for c in checks.values()), checks
    # only db1's data satisfies it: db2's own app database has no such table
    assert checks["smoke_sql 1"]["sql"] == done.smoke_sql
    assert found["durations_s"]["download"] > 0 and found["durations_s"]["restore"] > 0
    got = [item["item"]["key"] for r in ran(result, DRILL_HOST, "Fetch | download every object") for item in r["results"]]
    assert sorted(got) == done.bucket.keys(f"{done.tag}/") and got[-1].endswith("/manifest.json"), got
    assert "PASSED" in report(result) and str(files[0]) in report(result)


def test_drill_leaves_nothing_on_db2_and_does_not_touch_db1(done: Drill) -> None:
    before, after = done.state["before"], done.state["after drill"]
    # the scratch database is gone: db2 has the databases it had, and db1 never got one
    assert done.scratch not in after["db2 databases"]
    assert after["db2 databases"] == before["db2 databases"]
    assert after["db1 databases"] == before["db1 databases"]
    # db1's live rows, every table, as before
    assert after["db1 rows"] == before["db1 rows"]
    # the download (a temporary directory on db2) is removed, and nothing went into db2's backup_dir
    tmp = [r["path"] for r in ran(done.runs["drill"], DRILL_HOST, "Fetch | make a temporary directory")]
    assert len(tmp) == 1 and tmp[0].startswith("/tmp/restore_drill."), tmp
    assert listing(done.target, DRILL_HOST, tmp[0]) == ["missing"]
    assert after["db2 backup_dir"] == before["db2 backup_dir"] == []


def test_check_mode_names_the_backup_and_creates_downloads_and_writes_nothing(done: Drill) -> None:
    result = done.runs["check"]
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed(DRILL_HOST) == 0
    plan = ran(result, DRILL_HOST, "Plan | what the drill will do")
    assert plan and done.backup_id in plan[0]["msg"][0] and done.scratch in plan[0]["msg"][1], plan
    assert "no database created, nothing downloaded, no evidence written" in report(result)
    # neither the download nor the restore ran, and nothing is left to show they did
    assert not ran(result, DRILL_HOST, "Fetch | ") and not ran(result, DRILL_HOST, "Drill | ")
    assert not done.evidence("check").exists()
    # no scratch database, nothing in the download directory it was given, db1 as it was
    assert done.state["after check"] == done.state["before"]
    assert done.state["before"]["db2 download_dir"] == []


def test_drill_of_a_backup_id_not_in_the_bucket_fails_once_naming_it(done: Drill) -> None:
    result = done.runs["missing"]
    assert result.rc != 0
    failed = [r for r in result.host_results(DRILL_HOST) if r["event"] == "runner_on_failed"]
    assert len(failed) == 1, result.stdout[-3000:]
    msg = failed[0]["msg"]
    assert failed[0]["task"].startswith("Find | "), failed[0]["task"]
    assert f"backup {MISSING_ID} is not in s3://{done.bucket.name}/{done.tag}/{DATABASE}/" in msg, msg
    # and it lists what is there, so the operator sees the id to use
    assert done.backup_id in msg and "Nothing was run." in msg, msg
    assert not ran(result, DRILL_HOST, "Fetch | ") and not ran(result, DRILL_HOST, "Drill | ")
    assert not done.evidence("missing").exists()
    assert done.state["after missing"] == done.state["after drill"]
