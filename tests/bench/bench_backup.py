# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark: backup.yml, restore.yml and verify_backup.yml against raw pg_dump, pg_restore and sha256sum.

Not a pytest test (performance is never asserted). Run from the repository root with the sandbox up:

    .venv/bin/python tests/bench/bench_backup.py [--scale 30] [--rounds 3] [--phases backup,verification] [--profile]

--phases (default: backup,restore,verification,compression) runs only the phases named; restore or verification
without backup first make one untimed backup.yml run (backup_verify=true) for the verified backup they need, and
verification then times raw pg_dump and the empty ansible-playbook in its own rounds, as its reference.

It creates the scratch database bench_backup with `pgbench -i -s SCALE` (scale 30: about 450 MB; dropped at
the end, also on failure, with every bench_backup_* database a run makes) and keeps every backup in a 0700
temporary directory (removed at the end; backup_s3_bucket='' so nothing goes to the bucket). The raw tools get
the password in PGPASSWORD only. Each phase runs its contenders side by side in every round, in an order that
rotates from round to round (the machine is shared and noisy: read the medians and the load average):

- backup: backup.yml with backup_verify=false (the dump alone, as the module makes it: pg_dump with the exact
  row counts read meanwhile in its snapshot, pg_restore --list and the data checked whole with the sha256 hashed
  meanwhile, the manifest), the same with backup_verify=true (checksums and TOC again; the data is checked
  once, by the dump), the same with backup_check_data=false too (where the module's own data check goes), the same
  with backup_row_counts=estimate (where the exact row counts go: on a 2-core server they compete with pg_dump), and
  raw pg_dump with the format, jobs and compression that the playbook's manifest records (an untimed playbook
  run first gives it). The backups are deleted before each round. Each playbook row also shows the module's
  own work (the manifest's duration_s), without ansible-playbook's start-up and its tasks. Goal: backup.yml
  (backup_verify=false) at most 1.10x pg_dump.
- restore: restore.yml of the last verified backup (restore_jobs=2), which stops the sandbox demo app and its
  worker (the writers) around the restore and waits for the app's health after; the same with
  restore_writers=[] and restore_allow_running_writers=true (no writers touched); and raw createdb +
  pg_restore -j2 of the same archive into a fresh database, timed together. After each playbook run the safety
  copy bench_backup_pre_restore_<id> is dropped, so that the next restore is a real one (the role does nothing
  while it exists). Goal: at most 1.10x plus at most 3 s.
- verification: verify_backup.yml with its default (verify_backup_check_data=auto: checksums, pg_restore
  --list, the TOC count and verified_at; the data is not read again, the dump did) and with check_data=true,
  against the dump time (goal at most 0.1x pg_dump's median), with raw pg_restore --list + sha256sum of the
  archive's files and raw pg_restore --file=/dev/null (what the data check does) for reference. Both the
  playbook's wall time and the module's own work (its duration_s) are shown: the wall time holds
  ansible-playbook's fixed start-up, which no verification can go under.
- compression: raw pg_dump, custom format, at gzip levels 0, 1, 3 and 6 (pg_dump 15 has gzip only), and
  directory format with 2 jobs at levels 1 and 3: time and size, a recommendation (the smallest among the
  levels within 10 % of the fastest) and the format comparison. It only reports; the module's defaults
  (plugins/modules/pg_backup.py) are not changed here.

Every round also times an empty ansible-playbook, ansible-playbook's fixed cost. --profile adds one run of the
backup and the restore playbook with ansible.posix.profile_tasks at the end, to show where their time goes.

The writers are the shared sandbox's, and other sessions stop and start them too: each restore.yml run's report
line says which writers it really stopped and started (and the module's own pg_restore time). A restore.yml
run that fails is reported with its cause, not timed, and rerun (--retries, default 2); after it, this cleans up
what the role's rescue left (our bench_backup_* databases only) and starts writers still stopped after 30 s
(another session's restore may be what stopped them, and starts them itself).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchlib import (
    ANSIBLE_PLAYBOOK,
    SANDBOX_INVENTORY,
    ansible_env,
    attempt,
    empty_playbook,
    load_average,
    medians,
    pg_env,
    playbook_argv,
    profile_tasks,
    run,
    sandbox_env,
    sandbox_host_vars,
    timed,
    timed_all,
)

DB = "bench_backup"
RAW_DB = f"{DB}_raw"
HAND_SAFETY = f"{DB}_by_hand_pre_restore"
RESTORE_JOBS = 2
# restore.yml's report line: the module's own pg_restore and check times, and the writers it stopped and started
RESTORE_REPORT = re.compile(r"in (?P<restore_s>[\d.]+) s \(verified in (?P<verify_s>[\d.]+) s\); safety copy \S+; "
                            r"writers stopped and started again: (?P<writers>[^\"]*)\"")
LEVELS = (0, 1, 3, 6)
# the format comparison: directory format with parallel jobs at the levels worth having, against custom's
DIR_JOBS = 2
DIR_LEVELS = (1, 3)
# the recommendation: the smallest dump among the levels at most this much slower than the fastest
WITHIN = 1.10


def connect(env: dict[str, str], dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname=dbname, autocommit=True,
                           application_name="runbook.ops-bench")


def drop_ours(env: dict[str, str]) -> list[str]:
    """Drop bench_backup and every bench_backup_* database (restore copies, safety copies, the raw restore)."""
    with connect(env) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s",
                                            (DB, DB.replace("_", "\\_") + "\\_%"))]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return names


def drop(env: dict[str, str], name: str) -> bool:
    """Drop one database; whether it existed."""
    with connect(env) as conn:
        existed = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    return existed


def create(env: dict[str, str], pg: dict[str, str], bindir: str, scale: int) -> tuple[float, int]:
    """(seconds of pgbench -i, database size in bytes)."""
    with connect(env) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    elapsed = timed([f"{bindir}/pgbench", "-i", "-q", "-s", str(scale), DB], pg)
    with connect(env) as conn:
        size = conn.execute("SELECT pg_database_size(%s)", (DB,)).fetchone()[0]
    return elapsed, size


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def backups(backup_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The complete backups of DB in backup_dir (a directory with manifest.json), oldest first."""
    found = [(m.parent, json.loads(m.read_text())) for m in (backup_dir / DB).glob("*/manifest.json")]
    return sorted(found, key=lambda b: (b[1]["created_at"], b[1]["id"]))


def clear(backup_dir: Path, raw_dir: Path) -> None:
    """Delete every backup and raw dump, so that each round starts from an empty backup directory."""
    shutil.rmtree(backup_dir / DB, ignore_errors=True)
    for path in raw_dir.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def compression_args(compression: str) -> list[str]:
    """pg_dump 15's -Z for a manifest's compression (none, gzip, gzip:N), as the module passes it."""
    method, _sep, level = compression.partition(":")
    if method == "none":
        return ["--compress=0"]
    if method == "gzip":
        return [f"--compress={level}"] if level else []
    raise SystemExit(f"compression {compression} in the manifest: this benchmark knows pg_dump 15's gzip only")


def raw_dump_argv(bindir: str, manifest: dict[str, Any], out: Path) -> list[str]:
    """pg_dump with the format, jobs and compression the playbook's backup was made with."""
    argv = [f"{bindir}/pg_dump", "--no-password", f"--format={manifest['format']}", f"--file={out}"]
    if manifest["format"] == "directory" and manifest["jobs"] > 1:
        argv.append(f"--jobs={manifest['jobs']}")
    return [*argv, *compression_args(manifest["compression"]), f"--dbname={DB}"]


def rotated(names: list[str], n: int) -> list[str]:
    """The contenders of round n, each round starting one later: no contender always goes first (warm caches)."""
    k = n % len(names)
    return names[k:] + names[:k]


def run_rounds(rounds: int, contenders: dict[str, Callable[[], float | None]], label: str,
               between: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """rounds rounds of every contender (rotating order), between() before each round; the times per contender.

    A contender that returns None failed in that round (reported where it failed) and has no time for it.
    """
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for n in range(rounds):
        if between:
            between()
        now: dict[str, float | None] = {}
        for name in rotated(list(contenders), n):
            now[name] = contenders[name]()
            if now[name] is not None:
                times[name].append(now[name])
        print(f"{label} round {n + 1}: " + ", ".join(
            f"{name} {'FAILED' if now[name] is None else f'{now[name]:.2f} s'}" for name in contenders)
            + f"; {load_average()}", flush=True)
    return times


# the backup.yml contenders of the backup phase (bench_backups), in the order the report lists them
BACKUP_VARIANTS = ("backup.yml", "backup.yml verify", "backup.yml no data check", "backup.yml estimated counts")


def one_new_backup(backup_dir: Path, before: set[str], verified: bool) -> tuple[Path, dict[str, Any]]:
    """The one backup a playbook run just made; verified_at set exactly when the run verified it."""
    new = [b for b in backups(backup_dir) if b[1]["id"] not in before]
    if len(new) != 1:
        raise SystemExit(f"backup.yml made {len(new)} backups of {DB}, expected 1: {[b[1]['id'] for b in new]}")
    if bool(new[0][1]["verified_at"]) != verified:
        raise SystemExit(f"backup {new[0][1]['id']}: verified_at is {new[0][1]['verified_at']!r} after a run with "
                         f"backup_verify={verified}")
    return new[0]


def bench_backups(args: argparse.Namespace, bindir: str, pg: dict[str, str], backup_dir: Path, raw_dir: Path,
                  empty: list[str]) -> tuple[dict[str, list[float]], dict[str, list[int]], dict[str, Any]]:
    """The backup phase: times and sizes per contender, and the manifest whose settings the raw pg_dump uses."""
    base = {"backup_databases": DB, "backup_dir": str(backup_dir), "backup_s3_bucket": "",
            "backup_retention": False, "backup_verify": False}
    variants = {"backup.yml": (base, False),
                "backup.yml verify": ({**base, "backup_verify": True}, True),
                "backup.yml no data check": ({**base, "backup_check_data": False}, False),
                "backup.yml estimated counts": ({**base, "backup_row_counts": "estimate"}, False)}
    # untimed: warms the caches and says with which format, jobs and compression the playbook dumps
    run(playbook_argv("backup.yml", base), ansible_env())
    manifest = backups(backup_dir)[-1][1]
    raw_argv = raw_dump_argv(bindir, manifest, raw_dir / "dump.custom")
    print(f"backup.yml dumps {manifest['format']}, jobs {manifest['jobs']}, compression {manifest['compression']}; "
          f"raw: {' '.join(raw_argv)}", flush=True)
    sizes: dict[str, list[int]] = {"backup.yml": [], "pg_dump": []}
    # the module's own duration_s (its manifest's): pg_dump with the counts meanwhile, then the checks
    inner: dict[str, list[float]] = {name: [] for name in variants}

    def playbook(name: str) -> Callable[[], float]:
        extra, verified = variants[name]

        def contender() -> float:
            before = {b[1]["id"] for b in backups(backup_dir)}
            elapsed = timed(playbook_argv("backup.yml", extra), ansible_env())
            path, made = one_new_backup(backup_dir, before, verified)
            inner[name].append(made["duration_s"])
            settings = ("format", "jobs", "compression")
            if [made[k] for k in settings] != [manifest[k] for k in settings]:
                raise SystemExit(f"backup {made['id']} was made with other settings than the raw pg_dump's")
            if name == "backup.yml":
                sizes["backup.yml"].append(size_of(path / made["archive"]))
            return elapsed
        return contender

    def raw() -> float:
        elapsed = timed(raw_argv, pg)
        sizes["pg_dump"].append(size_of(raw_dir / "dump.custom"))
        return elapsed

    contenders: dict[str, Callable[[], float]] = {name: playbook(name) for name in variants}
    contenders["pg_dump"] = raw
    contenders["empty"] = lambda: timed(empty, ansible_env())
    times = run_rounds(args.rounds, contenders, "backup", between=lambda: clear(backup_dir, raw_dir))
    for name, values in inner.items():
        times[f"{name} module"] = values
    return times, sizes, manifest


def failure_cause(output: str) -> str:
    """The first line of each [ERROR] of a failed ansible-playbook run (the failed task and the rescue's)."""
    errors = [line.partition("[ERROR]: ")[2].strip()[:240] for line in output.splitlines() if "[ERROR]: " in line]
    if errors:
        return " | ".join(errors)
    return output.strip().splitlines()[-1] if output.strip() else "no output"


def writer_states() -> dict[str, str]:
    """supervisord's state of each writer of the sandbox (the inventory's app and worker services)."""
    app = sandbox_host_vars("sandbox-app")
    names = [*app.get("runbook_app_services", []), *app.get("runbook_worker_services", [])]
    ctl = [app["runbook_supervisorctl_path"], "-c", app["runbook_supervisord_config"]]
    # exit code 3 means "some process is not running", which is what this is asked for
    _elapsed, _rc, out = attempt([*ctl, "status", *names], dict(os.environ))
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if len(line.split()) > 1}


def stopped_every_writer(report: str) -> bool:
    """Whether restore.yml's report ("demo-app, demo-worker:demo-worker-0") names every writer of the inventory."""
    app = sandbox_host_vars("sandbox-app")
    stopped = [w.strip() for w in report.split(",")]
    # a group (demo-worker:) is reported by its processes (demo-worker:demo-worker-0)
    return all(any(w == name or (name.endswith(":") and w.startswith(name)) for w in stopped)
               for name in [*app.get("runbook_app_services", []), *app.get("runbook_worker_services", [])])


SPARE_WORKER = re.compile(r"demo-worker:demo-worker-[1-9][0-9]*")


def start_writers(wait_s: float = 30) -> list[str]:
    """Start the writers a failed restore left stopped (the sandbox is shared: others need the demo app).

    Another session's restore may be what stopped them, and it starts them again at its end: wait up to wait_s
    for that before starting what is still down, so as not to start them in the middle of its restore.
    """
    app = sandbox_host_vars("sandbox-app")
    ctl = [app["runbook_supervisorctl_path"], "-c", app["runbook_supervisord_config"]]
    deadline = time.monotonic() + wait_s
    while True:
        # the worker group has spare processes (scale_workers.yml's headroom) that the sandbox keeps stopped
        stopped = [name for name, state in writer_states().items()
                   if state in ("STOPPED", "EXITED", "FATAL") and not SPARE_WORKER.fullmatch(name)]
        if not stopped or time.monotonic() > deadline:
            break
        time.sleep(2)
    for name in stopped:
        attempt([*ctl, "start", name], dict(os.environ))
    return stopped


def bench_restores(args: argparse.Namespace, env: dict[str, str], bindir: str, pg: dict[str, str],
                   backup_dir: Path, backup_id: str, archive: Path, empty: list[str], failures: list[str],
                   writers: dict[str, list[tuple[float, str]]],
                   inner: dict[str, list[tuple[float, float]]]) -> dict[str, list[float]]:
    base = {"restore_database": DB, "restore_backup_dir": str(backup_dir), "restore_state_dir": str(backup_dir),
            "restore_jobs": RESTORE_JOBS,
            "restore_backup": backup_id}
    safety, new = f"{DB}_pre_restore_{backup_id}", f"{DB}_restore_{backup_id}"

    def playbook(name: str, extra: dict[str, Any]) -> Callable[[], float | None]:
        def contender() -> float | None:
            for _try in range(1 + args.retries):
                # json: the report line arrives on one line, to be read back below
                elapsed, rc, output = attempt(playbook_argv("restore.yml", extra),
                                              ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
                if rc == 0:
                    # the safety copy shows that the run really restored; dropped, the next run restores again
                    if not drop(env, safety):
                        raise SystemExit(f"{name} left no safety copy {safety}: it restored nothing")
                    report = RESTORE_REPORT.search(output)
                    if report:
                        # which writers this run really stopped: another session may have stopped them already
                        inner[name].append((float(report["restore_s"]), float(report["verify_s"])))
                        print(f"  {name}: pg_restore in the module {report['restore_s']} s, its checks "
                              f"{report['verify_s']} s; writers stopped and started again: {report['writers']}",
                              flush=True)
                        writers[name].append((elapsed, report["writers"]))
                    return elapsed
                # a failed run is reported, not timed; what its rescue left behind is cleaned up (ours only)
                failures.append(f"{name} failed after {elapsed:.1f} s: {failure_cause(output)}")
                print(f"  {failures[-1]}", flush=True)
                repaired = [f"dropped {db}" for db in (new, safety) if drop(env, db)]
                repaired += [f"started {w}" for w in start_writers()]
                print(f"  after the failure: {', '.join(repaired) or 'nothing to clean up'}; "
                      f"writers {writer_states()}", flush=True)
                with connect(env) as conn:
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone() is None:
                        raise SystemExit(f"after the failed {name}, database {DB} is gone")
            return None  # no time this round; the failures are in the summary
        return contender

    def raw() -> float:
        drop(env, RAW_DB)
        elapsed = timed_all([[f"{bindir}/createdb", "--template=template0", RAW_DB],
                             [f"{bindir}/pg_restore", "--no-password", f"--jobs={RESTORE_JOBS}", "--exit-on-error",
                              f"--dbname={RAW_DB}", str(archive)]], pg)
        drop(env, RAW_DB)
        return elapsed

    def by_hand() -> float:
        """What restore.yml does, typed by an operator: stop the writers, restore into a new database, swap the
        names, start the writers, wait for the app's health (the safety copy is dropped afterwards, untimed)."""
        app = sandbox_host_vars("sandbox-app")
        ctl = [app["runbook_supervisorctl_path"], "-c", app["runbook_supervisord_config"]]
        # the processes running now, named one by one: `supervisorctl start demo-worker:` would start the whole
        # group, spare processes included
        names = [name for name, state in writer_states().items() if state == "RUNNING"]
        psql = [f"{bindir}/psql", "--no-password", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname=postgres", "-c"]
        health = ["curl", "-fsS", "-o", "/dev/null", "--retry", "30", "--retry-delay", "1", "--retry-connrefused",
                  app["runbook_app_url"] + app["runbook_app_health_path"]]
        drop(env, RAW_DB)
        elapsed = timed_all([[*ctl, "stop", *reversed(names)], [f"{bindir}/createdb", "--template=template0", RAW_DB],
                             [f"{bindir}/pg_restore", "--no-password", f"--jobs={RESTORE_JOBS}", "--exit-on-error",
                              f"--dbname={RAW_DB}", str(archive)],
                             [*psql, f"ALTER DATABASE {DB} RENAME TO {HAND_SAFETY}"],
                             [*psql, f"ALTER DATABASE {RAW_DB} RENAME TO {DB}"],
                             [*ctl, "start", *names], health], pg)
        drop(env, HAND_SAFETY)
        return elapsed

    contenders = {"restore.yml": playbook("restore.yml", base),
                  "restore.yml no writers": playbook("restore.yml no writers", {
                      **base, "restore_writers": [], "restore_allow_running_writers": True}),
                  "by hand, with writers": by_hand,
                  "createdb+pg_restore": raw,
                  "empty": lambda: timed(empty, ansible_env())}
    return run_rounds(args.rounds, contenders, "restore")


# verify_backup.yml's report line: the module's own work time for the backup (its returned duration)
VERIFY_REPORT = re.compile(r"TOC entries[^;)]*?, (?:data read back, )?in (?P<secs>[\d.]+) s\)")


def bench_verification(args: argparse.Namespace, bindir: str, pg: dict[str, str], backup_dir: Path, backup: Path,
                       manifest: dict[str, Any], reference: dict[str, Callable[[], float]]
                       ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The verification phase: wall times per contender, and the module's own time per playbook variant."""
    base = {"verify_backup_databases": DB, "verify_backup_dir": str(backup_dir), "verify_backup_id": manifest["id"]}
    archive = str(backup / manifest["archive"])
    files = [str(backup / f["path"]) for f in manifest["files"]]
    inner: dict[str, list[float]] = {"verify_backup.yml": [], "verify_backup.yml data": []}

    def playbook(name: str, check_data: str) -> Callable[[], float]:
        def contender() -> float:
            # json: the report line arrives on one line, to be read back below
            elapsed, output = run(playbook_argv("verify_backup.yml", {**base, "verify_backup_check_data": check_data}),
                                  ansible_env(ANSIBLE_CALLBACK_RESULT_FORMAT="json"))
            report = VERIFY_REPORT.search(output)
            if report:
                inner[name].append(float(report["secs"]))
            return elapsed
        return contender

    contenders = {
        "verify_backup.yml": playbook("verify_backup.yml", "auto"),
        "verify_backup.yml data": playbook("verify_backup.yml data", "true"),
        "pg_restore --list+sha256sum": lambda: timed_all([[f"{bindir}/pg_restore", "--list", archive],
                                                          ["sha256sum", *files]], pg),
        "pg_restore -f /dev/null": lambda: timed([f"{bindir}/pg_restore", "--file=/dev/null", archive], pg),
        **reference,
    }
    return run_rounds(args.rounds, contenders, "verify"), inner


def print_restore(r: dict[str, float], inner: dict[str, list[tuple[float, float]]],
                  writers: dict[str, list[tuple[float, str]]], row: Callable[..., None],
                  met: Callable[[bool], str]) -> None:
    """The restore phase's rows of the summary."""
    raw_restore = r["createdb+pg_restore"]
    row(f"createdb + pg_restore -j{RESTORE_JOBS} (reference)", raw_restore, playbook=False)
    for name, label in (("restore.yml", "restore.yml, writers stopped/started"),
                        ("restore.yml no writers", "restore.yml, restore_writers=[]")):
        secs = r.get(name)
        goal = "" if secs is None else (f"<= 1.10x + 3 s = {1.10 * raw_restore + 3:.2f} s: "
                                        f"{met(secs <= 1.10 * raw_restore + 3)} (overhead {secs - raw_restore:+.2f} s)")
        row(label, secs, raw_restore, goal)
    by_hand = r.get("by hand, with writers")
    row("by hand: stop, restore, rename, start, health", by_hand,
        raw_restore, playbook=False)
    if by_hand is not None and r.get("restore.yml") is not None:
        print(f"{'':44} restore.yml with writers against the same steps by hand: {r['restore.yml'] / by_hand:.2f}x "
              f"(goal <= 1.10x + 3 s = {1.10 * by_hand + 3:.2f} s: {met(r['restore.yml'] <= 1.10 * by_hand + 3)})")
    for name in ("restore.yml", "restore.yml no writers"):
        if inner[name]:
            restore_s, checks_s = (statistics.median(x[i] for x in inner[name]) for i in (0, 1))
            print(f"{'':44} {name}: in its pg_restore module, median {restore_s:.2f} s pg_restore + "
                  f"{checks_s:.2f} s checks; writers stopped and started: {'; '.join(w for _t, w in writers[name])}")
    # other sessions stop and start the same writers: only the runs that stopped every one show their full cost
    full = [t for t, stopped in writers["restore.yml"] if stopped_every_writer(stopped)]
    if full:
        print(f"{'':44} restore.yml runs that stopped and started every writer: {len(full)}, median "
              f"{statistics.median(full):.2f} s ({statistics.median(full) / raw_restore:.2f}x, overhead "
              f"{statistics.median(full) - raw_restore:+.2f} s)")
    else:
        print(f"{'':44} no restore.yml run stopped every writer (another session had some of them stopped)")


def print_verification(v: dict[str, float], inner: dict[str, list[float]], dump: float, backup_s: float | None,
                       row: Callable[..., None], met: Callable[[bool], str]) -> None:
    """The verification phase's rows: the playbook's wall time and the module's own time, against the dump.

    The goal (verification at most 0.1x the dump) is about the work a verification costs; the playbook's wall
    time also holds ansible-playbook's fixed start-up, which no verification can go under, so both are shown.
    """
    for name, label in (("verify_backup.yml", "verify_backup.yml (default: check_data=auto)"),
                        ("verify_backup.yml data", "verify_backup.yml check_data=true"),
                        ("pg_restore --list+sha256sum", "pg_restore --list + sha256sum (reference)"),
                        ("pg_restore -f /dev/null", "pg_restore --file=/dev/null (reference)")):
        playbook = name.startswith("verify")
        goal = f"wall <= 0.1x pg_dump: {met(v[name] <= 0.1 * dump)}" if playbook else ""
        if backup_s:
            goal += f"{'; ' if goal else ''}{v[name] / backup_s:.2f}x of backup.yml"
        row(label, v[name], dump, goal, playbook=playbook)
        if playbook and inner[name]:
            work = statistics.median(inner[name])
            print(f"{'':44} {'':>9} {work / dump:6.2f}x {'':>7}  the module's own work: median {work:.2f} s; "
                  f"<= 0.1x pg_dump: {met(work <= 0.1 * dump)}")


def bench_compression(args: argparse.Namespace, bindir: str, pg: dict[str, str],
                      raw_dir: Path) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Custom format at each gzip level, and directory format with DIR_JOBS jobs at DIR_LEVELS: times, sizes."""
    sizes: dict[str, list[int]] = {f"-Z{level}": [] for level in LEVELS}
    sizes.update({f"-Fd -j{DIR_JOBS} -Z{level}": [] for level in DIR_LEVELS})

    def level(z: int) -> Callable[[], float]:
        def contender() -> float:
            out = raw_dir / f"z{z}.custom"
            elapsed = timed([f"{bindir}/pg_dump", "--no-password", "--format=custom", f"--compress={z}",
                             f"--file={out}", f"--dbname={DB}"], pg)
            sizes[f"-Z{z}"].append(out.stat().st_size)
            out.unlink()
            return elapsed
        return contender

    def directory(z: int) -> Callable[[], float]:
        def contender() -> float:
            out = raw_dir / f"z{z}.dir"
            elapsed = timed([f"{bindir}/pg_dump", "--no-password", "--format=directory", f"--jobs={DIR_JOBS}",
                             f"--compress={z}", f"--file={out}", f"--dbname={DB}"], pg)
            sizes[f"-Fd -j{DIR_JOBS} -Z{z}"].append(size_of(out))
            shutil.rmtree(out)
            return elapsed
        return contender

    contenders = {f"-Z{z}": level(z) for z in LEVELS}
    contenders.update({f"-Fd -j{DIR_JOBS} -Z{z}": directory(z) for z in DIR_LEVELS})
    times = run_rounds(args.rounds, contenders, "compression")
    return times, sizes


def print_profile(title: str, tasks: dict[str, float]) -> None:
    print(f"{title}, per task (s, one profiled run):")
    for task, secs in tasks.items():
        print(f"  {secs:6.2f}  {task}")
    print(f"  {sum(tasks.values()):6.2f}  all tasks")


PHASES = ("backup", "restore", "verification", "compression")


def phases_arg(value: str) -> list[str]:
    """--phases: a comma list of PHASES, kept in PHASES' order."""
    asked = {name.strip() for name in value.split(",") if name.strip()}
    unknown = asked - set(PHASES)
    if unknown or not asked:
        raise argparse.ArgumentTypeError(f"phases: a comma list of {', '.join(PHASES)}; got {value!r}")
    return [name for name in PHASES if name in asked]


def verified_backup(backup_dir: Path) -> tuple[Path, dict[str, Any]]:
    """An untimed backup.yml run with backup_verify=true, for the phases that need a verified backup."""
    before = {b[1]["id"] for b in backups(backup_dir)}
    run(playbook_argv("backup.yml", {"backup_databases": DB, "backup_dir": str(backup_dir), "backup_s3_bucket": "",
                                     "backup_retention": False, "backup_verify": True}), ansible_env())
    return one_new_backup(backup_dir, before, True)


def main() -> None:
    global DB, RAW_DB  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=30, help="pgbench -i scale (30: about 450 MB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", type=phases_arg, default=list(PHASES),
                        help=f"comma list of {','.join(PHASES)} (default all); restore or verification alone make "
                             "one untimed backup.yml run for their verified backup")
    parser.add_argument("--database", default=DB,
                        help=f"the scratch database (default {DB}); every <database>_* database is dropped too. "
                             "Two runs at once need two names")
    parser.add_argument("--retries", type=int, default=2,
                        help="reruns of a failed restore.yml in a round (reported, not timed; the sandbox is shared)")
    parser.add_argument("--profile", action="store_true",
                        help="also one backup.yml and one restore.yml run with profile_tasks (untimed), "
                             "each only if its phase runs")
    args = parser.parse_args()
    phases = set(args.phases)
    DB, RAW_DB = args.database, f"{args.database}_raw"

    started = time.monotonic()
    env = sandbox_env()
    pg = pg_env(env)
    bindir = sandbox_host_vars("sandbox-db")["runbook_pg_bindir"]
    print(f"bench_backup: pgbench scale {args.scale}, {args.rounds} rounds, phases {','.join(args.phases)}; "
          f"{load_average()}", flush=True)
    left = drop_ours(env)
    if left:
        print(f"dropped databases left by an earlier run: {', '.join(left)}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-backup-"))  # 0700: the dumps hold every row
    backup_dir, raw_dir = tmp / "backups", tmp / "raw"
    backup_dir.mkdir()
    raw_dir.mkdir()
    profiles: list[tuple[str, dict[str, float]]] = []
    failures: list[str] = []
    b_times: dict[str, list[float]] = {}
    r_times: dict[str, list[float]] = {}
    v_times: dict[str, list[float]] = {}
    c_times: dict[str, list[float]] = {}
    b_sizes: dict[str, list[int]] = {}
    c_sizes: dict[str, list[int]] = {}
    manifest: dict[str, Any] = {}
    writers: dict[str, list[tuple[float, str]]] = {"restore.yml": [], "restore.yml no writers": []}
    inner: dict[str, list[tuple[float, float]]] = {"restore.yml": [], "restore.yml no writers": []}
    v_inner: dict[str, list[float]] = {}
    try:
        init_s, db_size = create(env, pg, bindir, args.scale)
        print(f"pgbench -i -s {args.scale}: {init_s:.1f} s, database {DB} {mb(db_size)}", flush=True)
        with empty_playbook() as empty_path:
            empty = [ANSIBLE_PLAYBOOK, "-i", str(SANDBOX_INVENTORY), str(empty_path)]
            if "backup" in phases:
                b_times, b_sizes, manifest = bench_backups(args, bindir, pg, backup_dir, raw_dir, empty)
            if phases & {"restore", "verification"}:
                # the backup phase's last verified backup, or one untimed run's; the rest goes
                found = [b for b in backups(backup_dir) if b[1]["verified_at"]]
                backup_path, backup_manifest = found[-1] if found else verified_backup(backup_dir)
                manifest = manifest or backup_manifest
                for path, _m in backups(backup_dir):
                    if path != backup_path:
                        shutil.rmtree(path)
                archive = backup_path / backup_manifest["archive"]
                print(f"restoring and verifying backup {backup_manifest['id']} "
                      f"({mb(backup_manifest['size_bytes'])}); restore.yml stops and starts the sandbox demo app "
                      "and worker, the no-writers variant does not", flush=True)
            if "restore" in phases:
                r_times = bench_restores(args, env, bindir, pg, backup_dir, backup_manifest["id"], archive, empty,
                                         failures, writers, inner)
            if "verification" in phases:
                # without the backup phase, the dump time and ansible-playbook's fixed cost are timed here
                reference = {} if "backup" in phases else {
                    "pg_dump": lambda: timed(raw_dump_argv(bindir, backup_manifest, raw_dir / "dump.custom"), pg),
                    "empty": lambda: timed(empty, ansible_env())}
                v_times, v_inner = bench_verification(args, bindir, pg, backup_dir, backup_path, backup_manifest,
                                                      reference)
        if "compression" in phases:
            c_times, c_sizes = bench_compression(args, bindir, pg, raw_dir)
        if args.profile:
            profiled = {}
            if "backup" in phases:
                profiled["backup.yml (backup_verify=false)"] = playbook_argv("backup.yml", {
                    "backup_databases": DB, "backup_dir": str(backup_dir), "backup_s3_bucket": "",
                    "backup_retention": False, "backup_verify": False})
            if "restore" in phases:
                profiled["restore.yml (writers stopped and started)"] = playbook_argv("restore.yml", {
                    "restore_database": DB, "restore_backup_dir": str(backup_dir), "restore_state_dir": str(backup_dir),
                    "restore_jobs": RESTORE_JOBS,
                    "restore_backup": backup_manifest["id"]})
            for title, argv in profiled.items():
                try:
                    profiles.append((title, profile_tasks(argv)))
                except SystemExit as exc:  # a failed profiled run is reported; the numbers above stand
                    failures.append(f"profiled {title}: {failure_cause(str(exc))}")
                    start_writers()
            if "restore" in phases:
                for name in (f"{DB}_pre_restore_{backup_manifest['id']}", f"{DB}_restore_{backup_manifest['id']}"):
                    drop(env, name)
    finally:
        drop_ours(env)
        shutil.rmtree(tmp, ignore_errors=True)

    b, r, v, c = (medians({k: t for k, t in times.items() if t})
                  for times in (b_times, r_times, v_times, c_times))
    empties = b_times.get("empty", []) + r_times.get("empty", []) + v_times.get("empty", [])
    fixed = statistics.median(empties) if empties else None
    dump = b.get("pg_dump") or v.get("pg_dump")
    print()
    sizes = f", dump {mb(statistics.median(b_sizes['pg_dump']))} raw / " \
            f"{mb(statistics.median(b_sizes['backup.yml']))} playbook at {manifest['compression']}" if b_sizes else ""
    empty_s = f"; empty ansible-playbook {fixed:.2f} s" if fixed is not None else ""
    print(f"medians of {args.rounds} rounds, pgbench scale {args.scale} ({mb(db_size)} database{sizes}){empty_s}")
    if b or r or v:
        print(f"{'':44} {'median s':>9} {'ratio':>7} {'-empty':>7}  goal")

    def row(label: str, secs: float | None, ref: float | None = None, goal: str = "", playbook: bool = True) -> None:
        if secs is None:
            print(f"{label:44} {'no run':>9}  (every run failed, see below)")
            return
        ratio = f"{secs / ref:6.2f}x" if ref else ""
        # the ratio after subtracting ansible-playbook's fixed cost: what the playbook's own work costs
        net = f"{(secs - fixed) / ref:6.2f}x" if ref and playbook and fixed is not None else ""
        print(f"{label:44} {secs:9.2f} {ratio:>7} {net:>7}  {goal}")

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if dump is not None:
        row("pg_dump (reference)" if b else "pg_dump (reference, in the verify rounds)", dump, playbook=False)
    if b:
        row("backup.yml backup_verify=false", b["backup.yml"], dump,
            f"<= 1.10x: {met(b['backup.yml'] <= 1.10 * dump)} (overhead {b['backup.yml'] - dump:+.2f} s)")
        row("backup.yml backup_verify=true", b["backup.yml verify"], dump,
            f"(reported; overhead {b['backup.yml verify'] - dump:+.2f} s)")
        row("backup.yml verify=false, check_data=false", b["backup.yml no data check"], dump,
            f"(where the time goes; overhead {b['backup.yml no data check'] - dump:+.2f} s)")
        row("backup.yml verify=false, row_counts=estimate", b["backup.yml estimated counts"], dump,
            f"(where the time goes; overhead {b['backup.yml estimated counts'] - dump:+.2f} s)")
        for name in BACKUP_VARIANTS:
            work = b.get(f"{name} module")
            if work:
                print(f"{'':44} {'':>9} {work / dump:6.2f}x {'':>7}  {name}: the pg_backup module's own work "
                      f"(duration_s) median {work:.2f} s, overhead {work - dump:+.2f} s")
    if "restore" in phases:
        print_restore(r, inner, writers, row, met)
    if v:
        print_verification(v, v_inner, dump, b.get("backup.yml"), row, met)
    if b or r or v:
        print("(ratio: to the reference above it, pg_dump for the verification; -empty: the same after "
              "subtracting the empty ansible-playbook; n runs each unless failures are listed below)")
    if c:
        print()
        print("compression, raw pg_dump --format=custom at each gzip level, and --format=directory "
              f"--jobs={DIR_JOBS} (medians):")
        levels = {name: secs for name, secs in c.items() if name.startswith("-Z")}
        fastest = min(levels.values())
        size = {name: statistics.median(values) for name, values in c_sizes.items() if values}
        for name in c:
            print(f"  {name}: {c[name]:6.2f} s ({c[name] / fastest:.2f}x the fastest custom), {mb(size[name])} "
                  f"({size[name] / db_size:.1%} of the database)")
        for z in DIR_LEVELS:
            fd, fc = c.get(f"-Fd -j{DIR_JOBS} -Z{z}"), c.get(f"-Z{z}")
            if fd and fc:
                print(f"format at -Z{z}: directory -j{DIR_JOBS} {fd:.2f} s vs custom {fc:.2f} s "
                      f"({fd / fc:.2f}x); {'directory' if fd < fc / WITHIN else 'custom'} is the one to choose "
                      f"(directory only when more than {WITHIN - 1:.0%} faster: custom is one file)")
        candidates = [name for name in levels if levels[name] <= WITHIN * fastest]
        best = min(candidates, key=lambda name: size[name])
        now = f"; the module's default now is {manifest['compression']}" if manifest else ""
        print(f"recommendation: gzip level {best[2:]} (-Z{best[2:]}): the smallest dump among the levels within "
              f"{WITHIN - 1:.0%} of the fastest ({', '.join(candidates)}){now}. Note: pgbench's tables are "
              "unusually compressible (blank filler columns).")
    if failures:
        print()
        print(f"{len(failures)} failed playbook run(s), not timed (rerun up to {args.retries} times a round):")
        for failure in failures:
            print(f"  {failure}")
    for title, tasks in profiles:
        print()
        print_profile(title, tasks)
    print(f"\nbench_backup took {time.monotonic() - started:.0f} s; at the end: {load_average()}")


if __name__ == "__main__":
    sys.exit(main())
