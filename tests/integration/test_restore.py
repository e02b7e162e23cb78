# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/restore.yml end to end against the sandbox: backup.yml, then restore.yml with real faults.

Other developers share the server, so the restores here never touch the app
database: each database is restore_pb_test_<random>, owned by the sandbox's
app user, filled by `pgbench -i -s 1` and three tables of our own, backed up
by playbooks/backup.yml into a temporary backup_dir, and dropped at the end
with every <db>_restore_* and <db>_pre_restore_* the runs made. The writers
are the inventory's default (the shared demo-app and demo-worker:), which the
restore really stops and starts: the runs that would restore are few, the
ones that other sessions disturb (they stop and start demo-app too) are run
again, and the ones that must be refused are checked to never reach a task
of 'Act |'.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from tests.conftest import ROOT, Target
from tests.lib.restore_helpers import BackedUp, http_status, table_digests
from tests.lib.runner import FourRuns, PlaybookResult, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
APP_HOST = "sandbox-app"
APP_PROGRAM = "demo-app"
# the writers the restore stops and starts (demo-worker:'s other processes are stopped normally)
WRITER_PROGRAMS = (APP_PROGRAM, "demo-worker:demo-worker-0")
# generated JSON; read here so that the paths and the URL are the ones the role is given
HOSTS = yaml.safe_load((ROOT / "inventories" / "sandbox" / "hosts.yml").read_text())["all"]
SUPERVISORCTL = [HOSTS["vars"]["runbook_supervisorctl_path"], "-c", HOSTS["vars"]["runbook_supervisord_config"]]
APP_VARS = HOSTS["children"]["app"]["hosts"][APP_HOST]
HEALTH_URL = APP_VARS["runbook_app_url"].rstrip("/") + APP_VARS["runbook_app_health_path"]
APP_USER = HOSTS["children"]["postgres"]["hosts"][HOST]["runbook_pg_app_user"]
TEST_APP = "runbook.ops-tests-restore"
RESTORE_TASK = "Act | restore the backup into a new database, verify it there, and swap it in keeping the safety copy"
RESCUE_FAIL_TASK = "Rescue | fail with the cause (the previous database is in place)"
SWAP_BACK_TASK = "Rescue | swap back, the previous database is under its own name again"
GUARDS_TASK = "Guards | the backup verifies, the target is the inventory's, the names are free; take the restore lock"
STOP_TASK = "Act | stop the supervisord processes"
PLAN_TASK = "Plan | one line per service"
HEALTH_OK = "Health | the endpoint answered 200"
APP_SETTLE_S = 60
ATTEMPTS = 3


# ------------------------------------------------------------------------------------------------- helpers


@dataclass
class Scratch(BackedUp):
    """One database of ours with its backup in a temporary backup_dir, and what it held at each step."""

    target: Target
    backup_dir: Path
    name: str = field(default_factory=lambda: f"restore_pb_test_{secrets.token_hex(4)}")

    def connect(self, dbname: str = "postgres", *, as_app: bool = False) -> psycopg.Connection:
        env = self.target.env
        user, password = ((APP_USER, env["PGPASSWORD"]) if as_app
                          else (env["RUNBOOK_PG_ADMIN_USER"], env["RUNBOOK_PG_ADMIN_PASSWORD"]))
        return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=user, password=password,
                               dbname=dbname, autocommit=True, application_name=TEST_APP)

    def ours(self) -> list[str]:
        """Our database and every database a restore of it made (<db>_restore_*, <db>_pre_restore_*)."""
        with self.connect() as conn:
            rows = conn.execute("SELECT datname FROM pg_database WHERE datname = %s OR starts_with(datname, %s) "
                                "ORDER BY 1", [self.name, f"{self.name}_"]).fetchall()
        return [r[0] for r in rows]

    def drop_all(self) -> None:
        for db in self.ours():
            self.drop(db)

    def drop(self, db: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

    @property
    def safety_copy(self) -> str:
        return f"{self.name}_pre_restore_{self.backup_id}"

    @property
    def restore_target(self) -> str:
        """The database the restore restores into, which takes the name after the swap."""
        return f"{self.name}_restore_{self.backup_id}"

    def create(self) -> None:
        """The database, owned by the app user, with pgbench's tables and three of ours."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.name), sql.Identifier(APP_USER)))
        env = self.target.env
        # the password only in the environment: argv is visible to every user of the host
        subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", env["PGHOST"], "-p", env["PGPORT"], "-U", APP_USER,
                        self.name], env={**os.environ, "PGPASSWORD": env["PGPASSWORD"]}, check=True,
                       capture_output=True)
        with self.connect(self.name, as_app=True) as conn:
            conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text UNIQUE)")
            conn.execute("INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.org' "
                         "FROM generate_series(1, 50) g")
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers "
                         "ON DELETE CASCADE, total numeric(10, 2) NOT NULL, status text NOT NULL)")
            conn.execute("INSERT INTO orders SELECT g, 1 + g % 50, g * 1.25, 'paid' FROM generate_series(1, 400) g")
            conn.execute("CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)")
            conn.execute("INSERT INTO audit_log (note) SELECT 'created ' || g FROM generate_series(1, 20) g")

    def change(self) -> None:
        """Updates, deletes and inserts in several tables, as the app would make after the backup."""
        with self.connect(self.name, as_app=True) as conn:
            conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid <= 500")
            conn.execute("DELETE FROM pgbench_tellers WHERE tid > 8")
            conn.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
                         "VALUES (1, 1, 1, 7, '2026-12-01 09:00:00')")
            conn.execute("UPDATE orders SET status = 'refunded' WHERE id % 7 = 0")
            conn.execute("DELETE FROM customers WHERE id > 45")  # and their orders, by the cascade
            conn.execute("INSERT INTO customers VALUES (1001, 'late customer', 'late@example.org')")
            conn.execute("INSERT INTO audit_log (note) VALUES ('changed after the backup')")

    def digests(self, db: str | None = None) -> dict[str, str]:
        """Row count and md5 of the rows in a fixed order, for every user table of db (ours by default)."""
        with self.connect(db or self.name) as conn:
            return table_digests(conn)

    def backup(self, **extravars: Any) -> None:
        result = run_playbook("backup.yml", self.target.inventory, limit=HOST, extravars={
            "backup_databases": self.name, "backup_dir": str(self.backup_dir), "backup_s3_bucket": "", **extravars})
        assert result.rc == 0, result.stdout[-3000:]
        ids = [p.name for p in (self.backup_dir / self.name).iterdir() if p.is_dir()]
        assert len(ids) == 1, ids
        self.backup_id = ids[0]

    def restore(self, *, check: bool = False, backup_dir: Path | None = None, **extravars: Any) -> PlaybookResult:
        # the lock and the swap record stay in our backup_dir, not in the shared one, whatever backup_dir is read
        return run_playbook("restore.yml", self.target.inventory, check=check, limit=HOST, extravars={
            "restore_database": self.name, "restore_backup_dir": str(backup_dir or self.backup_dir),
            "restore_state_dir": str(self.backup_dir), **extravars})


@contextmanager
def prepared(target: Target, backup_dir: Path) -> Iterator[Scratch]:
    """A database of ours, backed up, then changed (a restore would change it back); dropped at the end."""
    db = Scratch(target, backup_dir)
    try:
        db.create()
        db.backup()
        db.at_backup = db.digests()
        db.change()
        db.current = db.digests()
        changed = [t for t in db.current if db.current[t] != db.at_backup.get(t)]
        assert len(changed) >= 5, f"the changes touched only {changed}"
        yield db
    finally:
        db.drop_all()
        shutil.rmtree(backup_dir, ignore_errors=True)


def app_state() -> str:
    """demo-app's state as supervisord reports it (RUNNING, STOPPED...)."""
    proc = subprocess.run([*SUPERVISORCTL, "status", APP_PROGRAM], text=True, capture_output=True, check=False)
    fields = proc.stdout.split()
    assert len(fields) >= 2 and fields[0] == APP_PROGRAM, proc.stdout + proc.stderr
    return fields[1]


def app_running() -> tuple[str, int]:
    """demo-app's state and its health status, once it is RUNNING and healthy or after a minute.

    Other sessions' tests (test_service_control) stop and start the shared
    demo app for a few seconds, so one read could see their stop; which of
    our runs stopped and started it is told by the run's own task results.
    """
    deadline = time.monotonic() + APP_SETTLE_S
    while True:
        state, status = app_state(), http_status(HEALTH_URL)
        if (state, status) == ("RUNNING", 200) or time.monotonic() > deadline:
            return state, status
        time.sleep(1)


def writer_pids() -> dict[str, int]:
    """supervisord's pid of each writer the restore stops and starts (0 when it is not running)."""
    proc = subprocess.run([*SUPERVISORCTL, "pid", *WRITER_PROGRAMS], text=True, capture_output=True, check=False)
    pids = proc.stdout.split()
    assert len(pids) == len(WRITER_PROGRAMS) and all(p.isdigit() for p in pids), proc.stdout + proc.stderr
    return dict(zip(WRITER_PROGRAMS, map(int, pids)))


def ensure_app_running() -> None:
    """Start the shared demo app and its worker if a failure (ours, or a bug of the role) left them stopped.

    Only demo-worker-0: the group's other processes are scale_workers.yml's headroom, stopped normally.
    """
    if app_state() != "RUNNING":
        subprocess.run([*SUPERVISORCTL, "start", APP_PROGRAM, "demo-worker:demo-worker-0"], capture_output=True, check=False)


def failures(result: PlaybookResult) -> list[dict[str, Any]]:
    """The failed task results of the run, in order (a rescued failure counts)."""
    return [r for r in result.host_results(HOST) if r["event"] == "runner_on_failed"]


def acted(result: PlaybookResult) -> list[str]:
    """The tasks of 'Act |' (the restore's and service_control's) that ran."""
    return [r["task"] for r in result.host_results(HOST, "Act |")]


def assert_untouched(db: Scratch, result: PlaybookResult) -> None:
    """A refused run: nothing of Act ran, the data and the databases are as before, the app runs."""
    assert acted(result) == [], acted(result)
    assert db.digests() == db.current
    assert db.ours() == [db.name]
    assert app_running() == ("RUNNING", 200)


@pytest.fixture(autouse=True)
def _app_left_running() -> Iterator[None]:
    """Whatever a failing test left, the shared demo app runs again right after it."""
    yield
    ensure_app_running()


@pytest.fixture(scope="module")
def shared(sandbox: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    """For the runs that must be refused or roll back: each leaves it as it was."""
    with prepared(sandbox, tmp_path_factory.mktemp("restore-shared")) as db:
        yield db


@pytest.fixture
def scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary directory removed at the end (a copy of a backup holds our test data)."""
    path = tmp_path_factory.mktemp("restore-scratch")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def started_again(result: PlaybookResult) -> bool:
    """The run's start of the writers took demo-app in (what its stop found running) and saw it RUNNING.

    Not "changed": another session's `supervisorctl start all` may revive
    demo-app while the restore has it stopped, and the start then rightly
    finds it running.
    """
    lines = [line for r in result.host_results(HOST, PLAN_TASK) for line in r.get("msg") or []]
    planned = any(line.startswith(f"{APP_PROGRAM}: ") and line.endswith((" -> start", ", already started"))
                  for line in lines)
    return planned and bool(result.host_results(HOST, HEALTH_OK)) and not any(
        f["task"].startswith(("Verify |", "Health |")) for f in failures(result))


def disturbed(result: PlaybookResult) -> bool:
    """Another session stopped demo-app around this run's stop, or again before its start was verified.

    As in test_service_control: a run counts when its stop is the one that
    stopped demo-app; a disturbed run is run again, ATTEMPTS times at most,
    so a fault of the role still fails every attempt.
    """
    return APP_PROGRAM not in changed_items(result, STOP_TASK) or any(
        f["task"].startswith(("Verify |", "Health |")) for f in failures(result))


@dataclass
class RestoreRuns(FourRuns):
    """The four runs, and the writers' pids right before and after the first --check run."""

    check_pids: tuple[dict[str, int], dict[str, int]] = field(default_factory=lambda: ({}, {}))


def four_runs(db: Scratch, *, last: bool) -> RestoreRuns | None:
    """run_four_times' check, real, check, real and its assertions; None when the real run was disturbed."""

    def read_state() -> dict[str, Any]:
        names = db.ours()
        state, status = app_running()
        return {"data": db.digests(), "databases": names,
                "safety_copy": db.digests(db.safety_copy) if db.safety_copy in names else None,
                "app": state, "health": status,
                # --check only reads the lock; every real run releases it
                "locked": (db.backup_dir / db.name / ".restore.lock").exists()}

    before = read_state()
    for attempt in range(ATTEMPTS):
        pids = writer_pids()
        check = db.restore(check=True)
        check_pids = (pids, writer_pids())
        # the state read cannot tell a stop and start: the pids can. Another session's restart of demo-app
        # changes them too, so --check runs again; a restart by --check itself would change them every time
        if check_pids[0] == check_pids[1] or attempt == ATTEMPTS - 1:
            break
        app_running()
    assert check.rc == 0, check.stdout[-3000:]
    assert check.changed() > 0, "--check reported no change, but the state needs one"
    assert read_state() == before, "--check changed the real state"
    real = db.restore()
    if disturbed(real) and not last:
        return None
    assert real.rc == 0, real.stdout[-3000:]
    assert real.changed() > 0, "the real run reported no change"
    after = read_state()
    assert after != before, "the real run reported a change but the state is the same"
    check_again = db.restore(check=True)
    assert check_again.rc == 0 and check_again.changed() == 0, check_again.stdout[-3000:]
    real_again = db.restore()
    assert real_again.rc == 0 and real_again.changed() == 0, real_again.stdout[-3000:]
    assert read_state() == after
    return RestoreRuns(before, after, check, real, check_again, real_again, check_pids=check_pids)


@pytest.fixture(scope="module")
def restored(sandbox: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scratch, RestoreRuns]]:
    """A database of ours restored by the standard four runs (check, real, check, real), and the runs."""
    for attempt in range(ATTEMPTS):
        # a disturbed attempt may have restored already: the next one starts from a new database
        with prepared(sandbox, tmp_path_factory.mktemp("restore-restored")) as db:
            try:
                runs = four_runs(db, last=attempt == ATTEMPTS - 1)
            finally:
                ensure_app_running()
            if runs is not None:
                yield db, runs
                return


def changed_items(result: PlaybookResult, task: str) -> list[str]:
    """The processes that task changed: service_control makes one supervisorctl call for them all, which prints
    "<name>: stopped" (or started) for each it changed."""
    return [line.rsplit(": ", 1)[0] for r in result.host_results(HOST, task) for line in r.get("stdout_lines", [])
            if line.endswith((": stopped", ": started"))]


class SessionKiller(threading.Thread):
    """Terminates pg_restore's sessions in <db>_restore_* as soon as one copies data, once."""

    def __init__(self, db: Scratch) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.done = threading.Event()
        self.killed: list[tuple[Any, ...]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.db.connect() as conn:
                while not self.done.is_set() and not self.killed:
                    # COPY: pg_restore midway through the data; pg_restore's sessions carry the
                    # module's application_name (runbook.ops), not pg_restore's default
                    self.killed = conn.execute(
                        "SELECT pid, datname, application_name, left(query, 60), pg_terminate_backend(pid) "
                        "FROM pg_stat_activity WHERE starts_with(datname, %s) AND backend_type = 'client backend' "
                        "AND query ILIKE 'COPY %%' AND pid <> pg_backend_pid()",
                        [f"{self.db.name}_restore_"]).fetchall()
                    self.done.wait(0.005)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err


class Meddler(threading.Thread):
    """Does something to the restore's databases from the side while restore.yml runs (act), until done is set;
    whatever it raises is kept in error, for the test to report."""

    def __init__(self, db: Scratch) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.act()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err

    def act(self) -> None:
        raise NotImplementedError


class AfterSwapWriter(Meddler):
    """Writes one row into <db> while the restored database holds that name (between the swap and the swap back),
    as the writers would: once, as soon as the safety copy exists."""

    NOTE = "written after the swap"
    SWAPPED = "SELECT 1 FROM pg_database WHERE datname = %s"
    written = False

    def act(self) -> None:
        with self.db.connect() as admin:
            while not self.done.is_set() and not self.written:
                if admin.execute(self.SWAPPED, [self.db.safety_copy]).fetchone():
                    self.write()
                self.done.wait(0.02)

    def write(self) -> None:
        try:
            with self.db.connect(self.db.name, as_app=True) as conn:
                with conn.transaction():
                    # a database cannot be renamed while we are connected to it: with the safety copy still
                    # there, the one we are connected to is the restored one
                    if not conn.execute(self.SWAPPED, [self.db.safety_copy]).fetchone():
                        return
                    conn.execute("INSERT INTO audit_log (note) VALUES (%s)", [self.NOTE])
            self.written = True
        except psycopg.OperationalError:
            pass  # refused during a swap, or ended by the swap back before the commit: nothing written


class ForeignCreator(Meddler):
    """Creates <db>_restore_<id>, with a table of its own, as soon as the guards have taken the restore lock."""

    NOTE = "not the restore's"
    created = False

    def act(self) -> None:
        lock = self.db.backup_dir / self.db.name / ".restore.lock"
        while not self.done.is_set() and not lock.exists():
            self.done.wait(0.005)
        if lock.exists():
            with self.db.connect() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db.restore_target)))
            with self.db.connect(self.db.restore_target) as conn:
                conn.execute("CREATE TABLE not_the_restores (note text)")
                conn.execute("INSERT INTO not_the_restores VALUES (%s)", [self.NOTE])
            self.created = True


LOCK_PLAY = [{
    "name": "Test | the restore lock, as another run would hold it",
    "hosts": HOST,
    "gather_facts": False,
    "tasks": [{
        "name": "Test | take or release the lock",
        "runbook.ops.run_lock": {
            "path": "{{ lock_path }}",
            "state": "{{ lock_state }}",
            "owner": "{{ 'test' if lock_state == 'present' else omit }}",
            "token": "{{ lock_token | default(omit) }}",
        },
    }],
}]


# --------------------------------------------------------------------------------------------------- tests


def test_restore_brings_back_the_backup_and_keeps_the_safety_copy(restored: tuple[Scratch, RestoreRuns]) -> None:
    db, runs = restored
    assert runs.before == {"data": db.current, "databases": [db.name], "safety_copy": None,
                           "app": "RUNNING", "health": 200, "locked": False}
    # every table as it was at backup time, the changes made since kept in the safety copy
    assert runs.after == {"data": db.at_backup, "databases": [db.name, db.safety_copy], "safety_copy": db.current,
                          "app": "RUNNING", "health": 200, "locked": False}
    # --check stopped and started no writer: each runs on under the pid it had; the real run stopped the writers,
    # and started and checked them again
    pids_before, pids_after = runs.check_pids
    assert pids_after == pids_before and pids_before[APP_PROGRAM] > 0, runs.check_pids
    assert APP_PROGRAM in changed_items(runs.real, STOP_TASK)
    assert started_again(runs.real), runs.real.stdout[-3000:]
    assert failures(runs.real) == []
    # every table's rows were compared: the backup has exact counts; no window was given
    report = runs.real.host_results(HOST, "Report | what the restore did")[0]["msg"]
    assert "not compared" not in report and report.endswith("; maintenance window: not given"), report
    # the runs after it ended at the guards: the live database holds the backup
    assert acted(runs.check_again) == acted(runs.real_again) == []


def test_corrupted_backup_is_refused_before_anything_is_touched(shared: Scratch, scratch_dir: Path) -> None:
    copy = scratch_dir / "backups"
    shutil.copytree(shared.backup_dir, copy)
    dump = copy / shared.name / shared.backup_id / "dump.custom"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))

    result = shared.restore(backup_dir=copy)
    assert result.rc != 0, result.stdout[-3000:]
    failed = failures(result)
    assert len(failed) == 1, [f["msg"] for f in failed]
    assert failed[0]["task"].startswith("Guards |"), failed[0]["task"]
    assert "dump.custom: sha256 differs" in failed[0]["msg"], failed[0]["msg"]
    assert str(dump.parent) in failed[0]["msg"], failed[0]["msg"]
    assert_untouched(shared, result)
    assert not (copy / shared.name / ".restore.lock").exists()
    assert not (shared.backup_dir / shared.name / ".restore.lock").exists()


@pytest.mark.parametrize("fault", ["smoke_sql_fails", "pg_restore_terminated"])
def test_failed_restore_rolls_back(shared: Scratch, fault: str) -> None:
    for attempt in range(ATTEMPTS):
        app_running()  # another session may have it stopped: our stop must be the one that stops it
        killer = SessionKiller(shared)
        if fault == "smoke_sql_fails":
            result = shared.restore(restore_smoke_sql=["SELECT false"])
        else:
            killer.start()
            try:
                result = shared.restore()
            finally:
                killer.done.set()
                killer.join(timeout=10)
            assert killer.error is None, killer.error
            assert killer.killed, "pg_restore was never caught copying data: nothing was injected"
            assert all(row[4] for row in killer.killed), killer.killed
        if not disturbed(result) or attempt == ATTEMPTS - 1:
            break
        ensure_app_running()

    assert result.rc != 0, result.stdout[-3000:]
    # the original database under its own name, as it was; nothing of the restore left
    assert shared.digests() == shared.current
    assert shared.ours() == [shared.name]
    failed = failures(result)
    assert failed and failed[0]["task"] == RESTORE_TASK, [(f["task"], f.get("msg")) for f in failed]
    symptom = "smoke_sql 1: returned False" if fault == "smoke_sql_fails" else "pg_restore failed (exit code"
    assert symptom in failed[0]["msg"], failed[0]["msg"]
    # the rescue runs to its end: one more failure, the cause
    assert [f["task"] for f in failed] == [RESTORE_TASK, RESCUE_FAIL_TASK], [(f["task"], f.get("msg")) for f in failed]
    cause = failed[-1]["msg"]
    assert "rolled back" in cause and f"Cause: {RESTORE_TASK}: " in cause and symptom in cause, cause
    # the writers had been stopped, and the rescue started them again
    assert APP_PROGRAM in changed_items(result, STOP_TASK)
    assert started_again(result), result.stdout[-3000:]
    assert app_running() == ("RUNNING", 200)


def test_failure_after_the_swap_swaps_back_and_keeps_the_restored_database(shared: Scratch) -> None:
    """The app never answers healthy once the writers are started on the restored database (its health path is
    made wrong for this run), and a row is written to the restored database meanwhile, as the writers would: the
    rescue renames the previous database back under its name and keeps the restored one, with that row, under
    <db>_restore_<id>; the cause says so, and that the writers did not come back healthy."""
    kept = shared.restore_target
    try:
        for attempt in range(ATTEMPTS):
            app_running()  # another session may have it stopped: our stop must be the one that stops it
            writer = AfterSwapWriter(shared)
            writer.start()
            try:
                result = shared.restore(runbook_app_health_path="/api/no-such-endpoint",
                                        service_control_health_retries=2)
            finally:
                writer.done.set()
                writer.join(timeout=10)
            if APP_PROGRAM in changed_items(result, STOP_TASK) or attempt == ATTEMPTS - 1:
                break
            ensure_app_running()
            shared.drop(kept)
        assert writer.error is None, writer.error

        assert result.rc != 0, result.stdout[-3000:]
        swapped = result.host_results(HOST, RESTORE_TASK)
        assert swapped and swapped[0]["swapped"] is True, "the fault struck before the swap: nothing to swap back"
        swapped_back = result.host_results(HOST, SWAP_BACK_TASK)
        assert swapped_back and swapped_back[0]["swapped"] is True, swapped_back
        # the previous database, as it was, under its own name; the restored one kept, no safety copy left
        assert shared.digests() == shared.current
        assert shared.ours() == [shared.name, kept]
        # the kept database is the backup plus what was written to it after the swap
        assert writer.written, "nothing was written between the swap and the swap back: nothing was injected"
        restored = shared.digests(kept)
        note = "public.audit_log"
        assert {t: d for t, d in restored.items() if t != note} == {t: d for t, d in shared.at_backup.items() if t != note}
        with shared.connect(kept) as conn:
            assert conn.execute("SELECT count(*) FROM audit_log WHERE note = %s", [writer.NOTE]).fetchone() == (1,)
        failed = failures(result)
        tasks = [f["task"] for f in failed]
        assert tasks[0].startswith("Health |") and tasks[-1] == RESCUE_FAIL_TASK, tasks
        cause = failed[-1]["msg"]
        assert "rolled back" in cause and "did not all come back healthy" in cause, cause
        assert "/api/no-such-endpoint" in cause, cause
        assert f"KEPT, not dropped, as {kept}: " in cause and "may hold writes" in cause, cause
        assert f'drop it (DROP DATABASE "{kept}";)' in cause, cause
        assert f"a new restore of backup {shared.backup_id} is refused" in cause, cause
        # supervisord runs the app again (healthy on its real path)
        assert app_running() == ("RUNNING", 200)

        # as the message says: the same backup is refused while the kept database is there
        again = shared.restore()
        assert again.rc != 0, again.stdout[-3000:]
        assert [f["task"] for f in failures(again)] == [GUARDS_TASK], failures(again)
        assert f"database {kept} exists" in failures(again)[0]["msg"], failures(again)[0]["msg"]
        assert acted(again) == []
    finally:
        shared.drop(kept)


def test_database_made_after_the_guards_is_never_dropped(shared: Scratch) -> None:
    """<db>_restore_<id> is created by someone else right after the guards found the name free: the restore call
    refuses it, and the rescue leaves it alone (it is not this run's), naming it in the cause."""
    foreign = shared.restore_target
    creator = ForeignCreator(shared)
    creator.start()
    try:
        result = shared.restore()
    finally:
        creator.done.set()
        creator.join(timeout=30)
    try:
        assert creator.error is None, creator.error
        assert creator.created, "the lock was never seen: nothing was injected"
        assert result.rc != 0, result.stdout[-3000:]
        failed = failures(result)
        assert [f["task"] for f in failed] == [RESTORE_TASK, RESCUE_FAIL_TASK], [(f["task"], f.get("msg")) for f in failed]
        assert f"target_db {foreign!r} already exists" in failed[0]["msg"], failed[0]["msg"]
        assert failed[0]["changed"] is False and failed[0]["dropped"] is False, failed[0]
        cause = failed[-1]["msg"]
        assert "rolled back" in cause and f"{foreign} (oid " in cause, cause
        assert "exists and was left alone: the restore call did not create it" in cause, cause
        # still there, with what its owner put in it; ours as it was
        with shared.connect(foreign) as conn:
            assert conn.execute("SELECT note FROM not_the_restores").fetchall() == [(ForeignCreator.NOTE,)]
        assert shared.digests() == shared.current
        assert shared.ours() == [shared.name, foreign]
        assert app_running() == ("RUNNING", 200)
    finally:
        shared.drop(foreign)


@contextmanager
def lock_held_by_test(shared: Scratch, scratch_dir: Path) -> Iterator[tuple[Path, str]]:
    """The restore lock of shared's database, held by another run ("test") meanwhile: (its path, its token)."""
    lock = shared.backup_dir / shared.name / ".restore.lock"
    play = scratch_dir / "lock.yml"
    play.write_text(yaml.safe_dump(LOCK_PLAY, sort_keys=False))
    taken = run_playbook(str(play), shared.target.inventory,
                         extravars={"lock_path": str(lock), "lock_state": "present"})
    assert taken.rc == 0, taken.stdout[-3000:]
    token = taken.host_results(HOST, "Test | take")[0]["token"]
    try:
        yield lock, token
    finally:
        released = run_playbook(str(play), shared.target.inventory,
                                extravars={"lock_path": str(lock), "lock_state": "absent", "lock_token": token})
    assert released.rc == 0, released.stdout[-3000:]
    assert not lock.exists()


def assert_refused_by(result: PlaybookResult, lock: Path) -> None:
    assert result.rc != 0, result.stdout[-3000:]
    failed = failures(result)
    assert [f["task"] for f in failed] == [GUARDS_TASK], failed
    assert failed[0]["lock"]["holder"]["owner"] == "test", failed[0]
    assert f"{lock} is held by test " in failed[0]["msg"], failed[0]["msg"]


def test_second_restore_is_refused_by_the_lock(shared: Scratch, scratch_dir: Path) -> None:
    with lock_held_by_test(shared, scratch_dir) as (lock, token):
        result = shared.restore()
        assert_refused_by(result, lock)
        assert_untouched(shared, result)
        assert json.loads(lock.read_text())["token"] == token, "the refused run took or replaced the lock"


def test_a_restore_from_another_backup_directory_meets_the_same_lock(shared: Scratch, scratch_dir: Path) -> None:
    """The lock belongs to the database (restore_state_dir), not to the backup directory a restore reads."""
    copy = scratch_dir / "copied"
    shutil.copytree(shared.backup_dir / shared.name, copy / shared.name, ignore=shutil.ignore_patterns(".restore*"))
    with lock_held_by_test(shared, scratch_dir) as (lock, _token):
        result = shared.restore(backup_dir=copy)
        assert_refused_by(result, lock)
        assert_untouched(shared, result)
        assert not (copy / shared.name / ".restore.lock").exists()


def test_wrong_password_fails_clearly_and_is_never_shown(shared: Scratch) -> None:
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    result = shared.restore(runbook_pg_password=wrong)
    assert result.rc != 0, result.stdout[-3000:]
    failed = failures(result)
    assert len(failed) == 1, [(f["task"], f.get("msg")) for f in failed]
    assert "password authentication failed" in failed[0]["msg"], failed[0]["msg"]
    assert_untouched(shared, result)
    assert wrong not in result.stdout
    assert wrong not in json.dumps(result.events)


def test_restore_again_after_updates_is_not_taken_for_done(restored: tuple[Scratch, RestoreRuns]) -> None:
    """Row counts cannot tell an UPDATE: the guard proves from the swap's record that no row was written since
    (xmin after the swap's transaction), or the live database counts as changed."""
    db, runs = restored
    assert runs.after["data"] == db.at_backup
    # what the app writes after the restore: updates only, so every row count stays the same
    with db.connect(db.name, as_app=True) as conn:
        conn.execute("UPDATE pgbench_accounts SET abalance = abalance - 3 WHERE aid <= 200")
        conn.execute("UPDATE orders SET status = 'shipped' WHERE id % 5 = 0")
    updated = db.digests()
    assert updated != db.at_backup

    again = db.restore()
    assert db.digests() == updated
    # the live database does not hold the backup any more: refused, the old safety copy is in the way
    assert again.rc != 0, "the restore took a changed database for one that holds the backup:\n" + again.stdout[-2000:]
    failed = failures(again)
    assert [f["task"] for f in failed] == ["Guards | the live database was changed since the restore of this backup"]
    assert "has changed since" in failed[0]["msg"], failed[0]["msg"]
    assert "rows written since the swap" in failed[0]["msg"] and "public.orders" in failed[0]["msg"], failed[0]["msg"]
    assert acted(again) == []


def test_restore_of_a_backup_without_exact_counts_says_so(sandbox: Target,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    """A backup made with estimated row counts restores, but the report and restore_result name every table whose
    rows could not be compared, instead of passing for fully verified."""
    db = Scratch(sandbox, tmp_path_factory.mktemp("restore-estimate"))
    try:
        db.create()
        db.backup(backup_row_counts="estimate")
        result = db.restore(restore_writers=[], restore_allow_running_writers=True,
                            restore_maintenance_window="2026-12-01 02:00-04:00 UTC")
        assert result.rc == 0, result.stdout[-3000:]
        tables = sorted(f"public.{t}" for t in ("audit_log", "customers", "orders", "pgbench_accounts", "pgbench_branches",
                                                "pgbench_history", "pgbench_tellers"))
        report = result.host_results(HOST, "Report | what the restore did")[0]["msg"]
        assert f"WARNING: the rows of {len(tables)} table(s) were not compared" in report, report
        assert "; maintenance window: 2026-12-01 02:00-04:00 UTC;" in report, report
        assert all(t in report for t in tables), report
        exported = result.host_results(HOST, "Report | export")[0]["ansible_facts"]["restore_result"]
        assert sorted(exported["rows_not_compared"]) == tables, exported
        # no writers to start: the restore call released the lock right after its swap
        assert result.host_results(HOST, RESTORE_TASK)[0]["swap"]["lock"]["released"] is True
        release = [ev["event"] for ev in result.events if ev["event"].startswith("runner_on_")
                   and ev["event"] != "runner_on_start" and ev["event_data"].get("task") == "Release the restore lock"]
        assert release == ["runner_on_skipped"], release
        assert not (db.backup_dir / db.name / ".restore.lock").exists()
    finally:
        db.drop_all()
        shutil.rmtree(db.backup_dir, ignore_errors=True)
