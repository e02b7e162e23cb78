# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/drop_safety_copies.yml against the sandbox PostgreSQL: exactly the old safety copies go.

Other developers share the server, so every database here is drill_test_*_<token>: a "live" database, safety
copies <db>_pre_restore_<id> of made-up backup ids, and look-alikes that must never be dropped. When each copy was
made is what restore.yml's swap record says (written here into a state directory of the test's own, by name and
oid), not its id. Each run is limited to our database (safety_copies_database), and the state read back is the
list of every database of ours in pg_database.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import Target
from tests.lib.runner import PlaybookResult, run_four_times, run_playbook

pytestmark = pytest.mark.sandbox

HOST = "sandbox-db"
TOKEN = secrets.token_hex(3)
REPORT_TASK = "Report | one line per database"


def _connect(target: Target) -> psycopg.Connection:
    env = target.env
    return psycopg.connect(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["RUNBOOK_PG_ADMIN_USER"],
                           password=env["RUNBOOK_PG_ADMIN_PASSWORD"], dbname="postgres", autocommit=True,
                           application_name="runbook.ops-tests-safety-copies")


def ours(target: Target) -> list[str]:
    """Every database of this test module (its token in the name), sorted."""
    with _connect(target) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE left(datname, 10) = 'drill_test' "
                            "AND strpos(datname, %s) > 0", [TOKEN]).fetchall()
    return sorted(r[0] for r in rows)


def backup_id(age: timedelta, suffix: str = "") -> str:
    """The id pg_backup gives a backup started age ago (UTC), with an optional -N."""
    return (datetime.now(timezone.utc) - age).strftime("%Y%m%dT%H%M%SZ") + suffix


@pytest.fixture
def databases(sandbox: Target) -> Iterator[Callable[[list[str]], None]]:
    """create(names): make those databases (dropped again at the end, with anything else of ours)."""
    made: list[str] = []

    def create(names: list[str]) -> None:
        with _connect(sandbox) as conn:
            for name in names:
                # template0: a session someone else has open in template1 would make CREATE DATABASE fail
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
                made.append(name)

    yield create
    with _connect(sandbox) as conn:
        for name in set(made) | set(ours(sandbox)):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def oids(target: Target, names: list[str]) -> dict[str, int]:
    with _connect(target) as conn:
        rows = conn.execute("SELECT datname, oid::int8 FROM pg_database WHERE datname = ANY(%s)", [names]).fetchall()
    return dict(rows)


def record(target: Target, state_dir: Path, db: str, made: dict[str, timedelta], wrong_oid: tuple[str, ...] = ()) -> None:
    """Write restore.yml's swap record of db: each copy of made became one that long ago (by its oid)."""
    now, found = datetime.now(timezone.utc), oids(target, list(made))
    ledger = {name: {"oid": found[name] + (1 if name in wrong_oid else 0), "backup_id": name.rsplit("_", 1)[-1],
                     "swapped_at": (now - ago).isoformat(timespec="seconds")} for name, ago in made.items()}
    (state_dir / db).mkdir(parents=True, exist_ok=True)
    (state_dir / db / ".restore.swap.json").write_text(json.dumps({"version": 1, "safety_copies": ledger}))


def run(target: Target, database: str, state_dir: Path, **more: object) -> PlaybookResult:
    return run_playbook("drop_safety_copies.yml", target.inventory, limit=HOST,
                        extravars={"safety_copies_database": database, "safety_copies_state_dir": str(state_dir),
                                   **more})


def report(result: PlaybookResult) -> list[str]:
    found = [r for r in result.host_results(HOST, REPORT_TASK) if r["event"] == "runner_on_ok"]
    assert found, result.stdout[-3000:]
    return list(found[-1]["msg"])


def named(lines: list[str], verb: str) -> set[str]:
    """The databases of the report lines "<name>: <verb> ..."."""
    return {line.split(": ", 1)[0] for line in lines if line.split(": ", 1)[1].startswith(verb)}


def test_four_runs_drop_exactly_the_old_safety_copies(sandbox: Target, databases: Callable[[list[str]], None],
                                                      tmp_path: Path) -> None:
    db = f"drill_test_sc_{TOKEN}"
    copy = f"{db}_pre_restore_"
    same_second = backup_id(timedelta(days=30))
    old = [copy + backup_id(timedelta(days=400)), copy + same_second, copy + same_second + "-2",
           copy + backup_id(timedelta(days=10))]
    # the newest copy has the OLDEST id: a restore of a 500-day-old backup, an hour ago
    restored_old = copy + backup_id(timedelta(days=500))
    young = [copy + backup_id(timedelta(days=3)), copy + backup_id(timedelta(hours=2)), restored_old]
    unrecorded = [copy + backup_id(timedelta(days=200)), copy + backup_id(timedelta(days=100))]
    starts_like_a_copy = [
        copy + "notanid",
        copy + "20200101T000000Z_x",  # more after the id
        copy + "20201301T000000Z",  # month 13
        copy + "20210229T000000Z",  # 29 February of a year without one
        copy + "20200101T000000Z\n",  # a newline after the id ($ in Python would match before it)
        copy + "20200101T000000Z-",  # a dash without N
    ]
    other = [
        db,  # the database itself
        f"drill_test_other_{TOKEN}_pre_restore_20200101T000000Z",  # another database's safety copy
        f"drill_testXsc_{TOKEN}_pre_restore_20200101T000000Z",  # what LIKE 'drill_test_sc_...' would match
        f"{db}_PRE_RESTORE_20200101T000000Z",
        f"{db}_restore_20200101T000000Z",  # restore.yml's scratch database, not a safety copy
        f"{db}_drill_20200101T000000Z",
        f"{db}x_pre_restore_20200101T000000Z",
    ]
    # created in no particular order: when the record says they were made decides, not names or creation order
    databases(young[1:] + other + unrecorded + old[::-1] + starts_like_a_copy + young[:1])
    made = {old[0]: timedelta(days=399), old[1]: timedelta(days=29), old[2]: timedelta(days=29),
            old[3]: timedelta(days=9), young[0]: timedelta(days=3), young[1]: timedelta(hours=2),
            restored_old: timedelta(hours=1), unrecorded[1]: timedelta(days=99)}
    # unrecorded[0] is not in the record; unrecorded[1]'s entry is of another database of that name (its oid)
    record(sandbox, tmp_path, db, made, wrong_oid=(unrecorded[1],))
    before = ours(sandbox)
    assert len(before) == len(old + young + unrecorded + starts_like_a_copy + other)

    runs = run_four_times("drop_safety_copies.yml", sandbox.inventory, read_state=lambda: ours(sandbox),
                          limit=HOST, extravars={"safety_copies_database": db, "safety_copies_state_dir": str(tmp_path)})

    assert runs.after == sorted(set(before) - set(old))
    planned = report(runs.check)
    assert named(planned, "would drop") == set(old)
    assert named(planned, "kept") == set(young + unrecorded)
    assert named(planned, "left alone") == set(starts_like_a_copy)
    assert planned[-1] == f"{HOST}: {db}: {len(old)} safety copies would be dropped, 5 kept"
    done = report(runs.real)
    assert named(done, "dropped") == set(old) and named(done, "kept") == set(young + unrecorded)
    # the newest by when it was made is kept as the newest and as young, the others only for their age
    assert next(line for line in done if line.startswith(restored_old)).endswith("one of the newest 1; younger than 7d")
    assert next(line for line in done if line.startswith(young[1])).endswith(": younger than 7d")
    assert next(line for line in done if line.startswith(young[0])).endswith(": younger than 7d")
    for name in unrecorded:
        line = next(line for line in done if line.startswith(name + ":"))
        assert "made at a time not recorded in" in line
        assert line.endswith("the restore's record has no time for when it became a safety copy")
    again = report(runs.real_again)
    assert named(again, "dropped") == set() and named(again, "kept") == set(young + unrecorded)
    assert again[-1] == f"{HOST}: {db}: 0 safety copies dropped, 5 kept"


def test_keep_counts_the_newest_by_when_they_were_made(sandbox: Target, databases: Callable[[list[str]], None],
                                                       tmp_path: Path) -> None:
    """keep=2 and no minimum age: the two copies made last stay, whatever their ids say."""
    db = f"drill_test_sk_{TOKEN}"
    copy = f"{db}_pre_restore_"
    second = backup_id(timedelta(days=1))
    newest = [copy + "20200101T000000Z-99", copy + second]
    dropped = [copy + second + "-10", copy + second + "-2", copy + backup_id(timedelta(days=5))]
    databases([db, *dropped, *newest])
    record(sandbox, tmp_path, db, {newest[0]: timedelta(minutes=5), newest[1]: timedelta(minutes=10),
                                   dropped[0]: timedelta(hours=1), dropped[1]: timedelta(hours=2),
                                   dropped[2]: timedelta(days=3)})

    result = run(sandbox, db, tmp_path, safety_copies_keep=2, safety_copies_min_age="0")
    assert result.rc == 0, result.stdout[-3000:]
    assert ours(sandbox) == sorted([db, *newest])
    assert named(report(result), "dropped") == set(dropped)
    assert named(report(result), "kept") == set(newest)


def test_nothing_is_dropped_while_a_restore_holds_its_lock(sandbox: Target, databases: Callable[[list[str]], None],
                                                           tmp_path: Path) -> None:
    db = f"drill_test_sl_{TOKEN}"
    old = f"{db}_pre_restore_20200101T000000Z"
    databases([db, old])
    record(sandbox, tmp_path, db, {old: timedelta(days=300)})
    lock = tmp_path / db / ".restore.lock"
    lock.write_text("{}")

    result = run(sandbox, db, tmp_path, safety_copies_keep=0, safety_copies_min_age="0")
    assert result.rc == 0, result.stdout[-3000:]
    assert ours(sandbox) == sorted([db, old])
    line = next(line for line in report(result) if line.startswith(old + ":"))
    assert line.startswith(f"{old}: kept") and line.endswith(f"a restore of this database holds its lock {lock}")

    lock.unlink()
    result = run(sandbox, db, tmp_path, safety_copies_keep=0, safety_copies_min_age="0")
    assert result.rc == 0, result.stdout[-3000:]
    assert ours(sandbox) == [db]


def test_a_database_without_safety_copies_has_nothing_to_drop(sandbox: Target, databases: Callable[[list[str]], None],
                                                             tmp_path: Path) -> None:
    """No database named like a copy (postgresql_query answers {} then) and no swap record: nothing to do."""
    db = f"drill_test_sn_{TOKEN}"
    databases([db])
    result = run(sandbox, db, tmp_path)
    assert result.rc == 0, result.stdout[-3000:]
    assert result.changed(HOST) == 0
    assert report(result) == [f"{HOST}: {db}: 0 safety copies dropped, 0 kept"]


def test_guards_refuse_a_bad_age_before_listing(sandbox: Target, databases: Callable[[list[str]], None],
                                                tmp_path: Path) -> None:
    db = f"drill_test_sg_{TOKEN}"
    old = f"{db}_pre_restore_20200101T000000Z"
    databases([db, old])
    result = run(sandbox, db, tmp_path, safety_copies_min_age="a week")
    assert result.rc != 0
    assert "safety_copies_min_age must be a duration" in result.stdout
    assert not result.host_results(HOST, "Plan | list")
    assert ours(sandbox) == sorted([db, old])
