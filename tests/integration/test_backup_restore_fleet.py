# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup.yml and restore.yml on the podman fleet: systemd hosts over ssh, the bucket on the fleet's bridge.

db1 backs up its app database (a table of ours in it, beside the demo app's tables) and uploads it
to the fleet's S3 server (moto on the gateway of the fleet's own podman bridge, started by
sandbox/fleet.py); the keys are read back with boto3 from the controller, which reaches that address
as the host side of the bridge. restore.yml then puts the backup back into db1's live app database,
with app1's demo-app and demo-worker@1 stopped and started again by systemd.

Other engineers may run fleet tests at the same time, so the backups go to a backup_dir and an S3
prefix of this run's own (the retention there sees ours only), and everything the run made (the
safety copy, our table, the backup, its objects) is removed at the end. The restore itself replaces
db1's live app database and stops app1's writers while it runs: that is what it is for.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import ansible_runner
import pytest

from tests.conftest import ROOT, Target
from tests.lib.restore_helpers import DIGEST_SQL, PSQL, BackedUp, Bucket, backup_results, fleet_backup_dir
from tests.lib.restore_helpers import group_vars, parse_digests, run_every, s3_bucket, ssh
from tests.lib.restore_helpers import psql as psql_on
from tests.lib.runner import PlaybookResult, run_playbook

pytestmark = [pytest.mark.fleet, pytest.mark.skipif(os.geteuid() != 0, reason="the fleet needs root podman")]

DB_HOST, APP_HOST = "db1", "app1"
UNITS = ["demo-app", "demo-worker@1"]
DATABASE = "app"
PROBE = "runbook_fleet_restore_probe"
SYSTEMD_TASK = "Act | stop, start or restart the systemd units"
REPORT_TASK = "Report | what was backed up"
APP_URL = "http://127.0.0.1:8080"


# ------------------------------------------------------------------------------------------------- helpers


def adhoc(target: Target, host: str, module: str, args: str) -> dict[str, Any]:
    """One ad-hoc module run on host (ssh, as the playbooks connect); its result, failed or not."""
    env = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
           "ANSIBLE_NOCOLOR": "1"}
    with tempfile.TemporaryDirectory(prefix="runbook-adhoc-") as tmp:
        run = ansible_runner.run(private_data_dir=tmp, inventory=str(target.inventory), host_pattern=host,
                                 module=module, module_args=args, envvars=env, quiet=True,
                                 suppress_env_files=True, timeout=300)
        results = [ev["event_data"]["res"] for ev in run.events
                   if ev.get("event", "").startswith("runner_on_") and "res" in ev.get("event_data", {})]
    assert len(results) == 1, f"{module} {args!r} on {host}: {results}"
    return results[0]


def psql(target: Target, sql: str, database: str = DATABASE) -> list[str]:
    """SQL as postgres on db1, the host restored: a peer login over its unix socket, no password anywhere."""
    return psql_on(target, DB_HOST, sql, database)


def units(target: Target) -> dict[str, tuple[str, str]]:
    """(active state, invocation id) of the writer units on app1: a new id is a new start."""
    out = ssh(target, APP_HOST, "systemctl", "show", "--property=Id,ActiveState,InvocationID",
              *(f"{u}.service" for u in UNITS))
    found = {}
    for block in out.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines())
        found[props["Id"].removesuffix(".service")] = (props["ActiveState"], props["InvocationID"])
    return found


def is_active(target: Target) -> list[str]:
    """systemctl is-active of the writers on app1, through a small ad-hoc run (ssh, as the playbooks)."""
    res = adhoc(target, APP_HOST, "ansible.builtin.command", "systemctl is-active " + " ".join(UNITS))
    return res["stdout"].split()


def app_health(target: Target) -> int:
    out = ssh(target, APP_HOST, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{APP_URL}/api/health")
    return int(out)


def systemd_items(result: PlaybookResult) -> list[list[tuple[str, str, bool]]]:
    """(unit, state, changed) of each run of the systemd task, in order: the stop, then the start."""
    return [[(i["item"]["name"], i.get("state", ""), bool(i.get("changed"))) for i in r.get("results", [])]
            for r in result.host_results(DB_HOST, SYSTEMD_TASK)]


def report(result: PlaybookResult) -> list[str]:
    found = [r["msg"] for r in result.host_results(DB_HOST, REPORT_TASK) if "msg" in r]
    assert found, result.stdout[-3000:]
    return list(found[0])


@dataclass
class Run(BackedUp):
    """This run's backup_dir and prefix, what was backed up and restored, and the runs."""

    target: Target
    bucket: Bucket
    tag: str = field(default_factory=lambda: f"fleet-test-{secrets.token_hex(4)}")
    runs: dict[str, PlaybookResult] = field(default_factory=dict)
    units: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    @property
    def backup_dir(self) -> str:
        return fleet_backup_dir(self.target, self.tag)

    @property
    def safety_copy(self) -> str:
        return f"{DATABASE}_pre_restore_{self.backup_id}"

    def backup(self, **extravars: Any) -> PlaybookResult:
        return run_playbook("backup.yml", self.target.inventory, limit=DB_HOST, extravars={
            "backup_dir": self.backup_dir, "backup_create_dir": True, "backup_s3_prefix": self.tag, **extravars})

    def restore(self, **kwargs: Any) -> PlaybookResult:
        return run_playbook("restore.yml", self.target.inventory, limit=DB_HOST, extravars={
            "restore_backup": self.backup_id, "restore_backup_dir": self.backup_dir, "restore_state_dir": self.backup_dir,
            "restore_smoke_sql": [f"SELECT count(*) = 100 FROM public.{PROBE}"]}, **kwargs)

    def digests(self, database: str = DATABASE) -> dict[str, str]:
        return parse_digests(psql(self.target, DIGEST_SQL, database))


@pytest.fixture(scope="module")
def bucket(fleet: Target) -> Bucket:
    inventory = group_vars(fleet, "all")
    # the controller reaches the address the hosts use: the host side of the fleet's own bridge
    assert fleet.env["S3_ENDPOINT_URL"] == inventory["runbook_s3_endpoint_url"]
    return s3_bucket(inventory)


@pytest.fixture(scope="module")
def done(fleet: Target, bucket: Bucket) -> Iterator[Run]:
    """Back up (twice), change the data, restore (check, real, real again); clean everything up after."""
    run = Run(fleet, bucket)
    assert {state for state, _id in units(fleet).values()} == {"active"}, "app1's writers must run before the restore"
    try:
        psql(fleet, f"""
            DROP TABLE IF EXISTS public.{PROBE};
            CREATE TABLE public.{PROBE} (id int PRIMARY KEY, label text NOT NULL, amount numeric(10, 2));
            INSERT INTO public.{PROBE} SELECT g, 'row ' || g, g * 1.5 FROM generate_series(1, 100) g;
            ALTER TABLE public.{PROBE} OWNER TO app;
        """)
        run.at_backup = run.digests()
        run.runs["backup"] = run.backup()
        assert run.runs["backup"].rc == 0, run.runs["backup"].stdout[-3000:]
        made = backup_results(run.runs["backup"], DB_HOST)
        assert len(made) == 1 and not made[0]["reused"], made
        run.backup_id = made[0]["id"]
        assert run.digests() == run.at_backup, "something wrote to the database during the backup"
        run.runs["backup_again"] = run.backup(backup_reuse_within="1h")

        # What the app would write after the backup: updates, deletes and inserts, ours and the demo app's.
        psql(fleet, f"""
            UPDATE public.{PROBE} SET amount = amount + 7 WHERE id <= 30;
            DELETE FROM public.{PROBE} WHERE id > 90;
            INSERT INTO public.{PROBE} VALUES (1001, 'late row', 1);
            UPDATE public.feature_flags SET enabled = NOT enabled;
            INSERT INTO public.events (event_type, payload) VALUES ('test.after_backup', '{{"run": "{run.tag}"}}');
        """)
        run.current = run.digests()
        run.units["before"] = units(fleet)
        run.runs["restore_check"] = run.restore(check=True)
        run.units["after_check"] = units(fleet)
        run.runs["restore"] = run.restore()
        run.units["after"] = units(fleet)
        run.runs["restore_again"] = run.restore()
        yield run
    finally:
        cleanup(run)


def drop_safety_copy(run: Run) -> None:
    """psql on db1 through an ad-hoc run, as postgres over the unix socket: no password, in argv or anywhere."""
    args = json.dumps({"argv": ["runuser", "-u", "postgres", "--", *PSQL, "-d", "postgres"], "chdir": "/",
                       "stdin": f'DROP DATABASE IF EXISTS "{run.safety_copy}" WITH (FORCE)'})
    res = adhoc(run.target, DB_HOST, "ansible.builtin.command", args)
    assert res.get("rc") == 0, res.get("stderr") or res.get("msg")
    assert psql(run.target, f"SELECT count(*) FROM pg_database WHERE datname = '{run.safety_copy}'") == ["0"]


def cleanup(run: Run) -> None:
    """Drop the safety copy and our table, remove the backup and its objects; the writers run."""
    run_every(
        lambda: run.backup_id and drop_safety_copy(run),
        lambda: psql(run.target, f"DROP TABLE IF EXISTS public.{PROBE}"),
        lambda: ssh(run.target, DB_HOST, "rm", "-rf", "--", run.backup_dir),
        lambda: run.bucket.delete(f"{run.tag}/"),
        lambda: ssh(run.target, APP_HOST, "systemctl", "start", *UNITS),
    )


# --------------------------------------------------------------------------------------------------- tests


def test_provisioning_made_the_backup_dirs_and_the_inventory_points_at_the_bucket(fleet: Target,
                                                                                  bucket: Bucket) -> None:
    for host, group in (("db1", "postgres"), ("db2", "drill")):
        pg = group_vars(fleet, group)
        assert ssh(fleet, host, "stat", "-c", "%F %a %U", pg["runbook_backup_dir"]) == "directory 700 root\n", host
        ssh(fleet, host, "test", "-x", f"{pg['runbook_pg_bindir']}/pg_dump")
        # the amazon.aws modules run on the host
        ssh(fleet, host, "python3", "-c", "import boto3, botocore")
    assert group_vars(fleet, "all")["runbook_s3_bucket"] in {b["Name"] for b in bucket.client.list_buckets()["Buckets"]}
    # the endpoint is on the fleet's bridge, never loopback: the hosts must reach it
    assert not fleet.env["S3_ENDPOINT_URL"].startswith("http://127.")


def test_backup_uploads_every_file_to_the_fleet_bucket(done: Run) -> None:
    result = done.runs["backup"]
    assert result.changed(DB_HOST) > 0
    prefix = f"{done.tag}/{DATABASE}/{done.backup_id}/"
    assert report(result)[0].endswith(f", verified, uploaded to s3://{done.bucket.name}/{prefix.rstrip('/')}")
    assert done.bucket.keys(f"{done.tag}/") == [prefix + "dump.custom", prefix + "manifest.json"]
    # the objects are the backup: the dump in the bucket has the checksum its manifest names
    manifest = json.loads(done.bucket.read(prefix + "manifest.json"))
    files = {f["path"]: f["sha256"] for f in manifest["files"]}
    assert hashlib.sha256(done.bucket.read(prefix + "dump.custom")).hexdigest() == files["dump.custom"]
    assert manifest["verified_at"]
    # the S3 secret never reaches the output
    secret = group_vars(done.target, "all")["runbook_s3_secret_key"]
    assert secret not in result.stdout and secret not in json.dumps(result.events)


def test_second_backup_within_the_hour_reuses_it_and_changes_nothing(done: Run) -> None:
    again = done.runs["backup_again"]
    assert again.rc == 0, again.stdout[-3000:]
    assert again.changed(DB_HOST) == 0, again.stdout[-3000:]
    assert report(again)[0].startswith(f"{DATABASE}: reused verified backup {done.backup_id} of ")
    prefix = f"{done.tag}/{DATABASE}/{done.backup_id}/"
    assert done.bucket.keys(f"{done.tag}/") == [prefix + "dump.custom", prefix + "manifest.json"]


def test_check_mode_restore_changes_nothing(done: Run) -> None:
    check = done.runs["restore_check"]
    assert check.rc == 0, check.stdout[-3000:]
    assert check.changed(DB_HOST) > 0, "--check reported no change, but the database differs from the backup"
    assert all(not changed for run in systemd_items(check) for _unit, _state, changed in run), systemd_items(check)
    assert done.units["after_check"] == done.units["before"]


def test_restore_brings_back_the_backup_with_the_writers_stopped_and_started(done: Run) -> None:
    result = done.runs["restore"]
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed(DB_HOST) > 0
    assert done.current != done.at_backup
    assert f"public.{PROBE}" in done.at_backup and "public.tenders" in done.at_backup
    # every table (ours and the demo app's) as it was at backup time; the later state is in the safety copy
    assert done.digests() == done.at_backup
    assert done.digests(done.safety_copy) == done.current
    # systemd on app1 stopped both writers (the worker first), then started them, and they run again
    stop, start = systemd_items(result)
    assert stop == [("demo-worker@1", "stopped", True), ("demo-app", "stopped", True)], stop
    assert start == [("demo-app", "started", True), ("demo-worker@1", "started", True)], start
    assert is_active(done.target) == ["active"] * len(UNITS)
    before, after = done.units["before"], done.units["after"]
    assert all(before[u][0] == after[u][0] == "active" and before[u][1] != after[u][1] for u in UNITS), (before, after)
    # and the app is healthy on its new database
    assert result.host_results(DB_HOST, "Health | the endpoint answered 200"), result.stdout[-3000:]
    assert app_health(done.target) == 200


def test_second_restore_changes_nothing(done: Run) -> None:
    again = done.runs["restore_again"]
    assert again.rc == 0, again.stdout[-3000:]
    assert again.changed(DB_HOST) == 0, again.stdout[-3000:]
    assert systemd_items(again) == []
    assert done.digests() == done.at_backup
    assert units(done.target) == done.units["after"]
