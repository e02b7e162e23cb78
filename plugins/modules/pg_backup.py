#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_backup: a consistent, checked pg_dump of one database, with a manifest."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: Back up one PostgreSQL database with pg_dump into a checked, self-describing backup directory
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the seed runbooks' C(pg_dump) backup step and makes it safe to rely on. One backup of database
    O(login_db) is the directory C(<backup_dir>/<database>/<id>/) with the archive (C(dump.custom) for
    O(format=custom), the directory C(dump/) for O(format=directory)) and C(manifest.json).
  - B(Consistent.) The module opens a C(REPEATABLE READ READ ONLY) transaction, exports its snapshot
    (pg_export_snapshot()) and runs C(pg_dump --snapshot=) in it. In the same snapshot it reads the exact row
    count of every table (count(*), see O(row_counts)), the C(pg_class.reltuples) estimates, the migration
    revision (C(alembic_version.version_num), else the newest finished C(_prisma_migrations.migration_name)), the
    server version and the cluster's system identifier (pg_control_system()), so the counts are exactly the
    rows in the dump and a restore can check it targets the right cluster. The counts run in that session
    while pg_dump dumps, so they add no wall time when the server has a core to spare.
  - B(Checked.) pg_dump runs as an argument list through C(run_command), never a shell; the password is only in
    its environment (C(PGPASSWORD)). The backup fails when pg_dump exits non-zero B(or) prints a warning or an
    error, when the archive is missing or empty, when C(pg_restore --list) fails or lists no TOC entry, when the
    archive has no data entry for a table that was counted, and (with O(check_data)) when a data block the TOC
    promises is not in the archive, whole, which is how a truncated archive shows (C(pg_restore --list) reads only
    the TOC). The files' sha256 are computed in a thread meanwhile.
  - B(Atomic.) Everything is written into C(<id>.partial) and renamed to C(<id>) only when every check passed;
    on any failure the partial directory is removed and the module fails with the cause. A directory named
    C(<id>) is therefore always a complete backup. Directories are mode 0700, files 0600; C(manifest.json) is
    written to a temporary file and renamed into place.
  - B(Idempotent when asked.) With O(reuse_within), a verified backup (see M(runbook.ops.pg_backup_verify)) of the
    same database and cluster younger than that is returned unchanged instead of making a new one. An O(id) that
    already exists is returned unchanged as well. Otherwise every run makes a new backup and reports a change.
  - The manifest holds C(format_version), C(id), C(created_at) (UTC), C(database), C(host), C(port) (never the
    password), C(server_version), C(server_version_num), C(system_identifier), C(pg_dump_version), C(format),
    C(compression), C(jobs), C(archive), C(files) (path, size and sha256 of every file of the archive),
    C(size_bytes), C(toc_entries), C(row_counts), C(tables) (schema, name, rows, rows_estimate),
    C(migration_tool), C(migration_revision), C(duration_s), C(data_checked) (whether the data was checked whole,
    O(check_data)), C(data_check) (how) and C(verified_at) (null until verified).
extends_documentation_fragment:
  - runbook.ops.pg
options:
  backup_dir:
    description:
      - The root of the backups. It must exist and be an absolute path; the module creates
        C(<backup_dir>/<database>/) (mode 0700) but never O(backup_dir) itself, so that an unmounted backup
        volume is an error instead of a backup on the root file system.
      - The database to back up is O(login_db) (alias O(database)). Its name is a directory name here, so it
        cannot contain C(/).
    type: path
    required: true
  format:
    description:
      - V(custom) is one compressed file, C(dump.custom), that C(pg_restore) can restore in parallel.
      - V(directory) is one file per table under C(dump/); only this format dumps in parallel (O(jobs)).
      - The default V(custom) is the backup benchmark's choice. On its 2-core machine C(--format=directory
        --jobs=2) was no faster than custom (its tables' data is mostly one table, which one job dumps alone),
        and one file is simpler to keep and copy. Dumps of many large tables on more cores gain from
        V(directory) with O(jobs).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description:
      - Tables pg_dump dumps in parallel (C(pg_dump --jobs)), with O(format=directory) only. pg_dump opens
        O(jobs) + 1 connections.
    type: int
    default: 1
  compression:
    description:
      - How pg_dump compresses the archive. V(none); a gzip level C(0)-C(9) (V(6) or V(gzip:6); V(0) is
        V(none)); V(gzip), V(lz4) or V(zstd) at their default level; or V(lz4:N) (1-12) or V(zstd:N) (1-22).
      - pg_dump 15 and older know gzip only; lz4 and zstd need pg_dump 16 or later. The module asks pg_dump
        its version (C(pg_dump --version)) and refuses, before connecting, what it cannot do.
      - The default V(gzip:1) is the backup benchmark's choice (C(tests/bench/bench_backup.py), pgbench scale
        30 with pg_dump 15). It was as fast as no compression (which wrote 36 times more); level 3 took 9-22 %
        longer and level 6 40-60 % longer, for dumps at most 2 % smaller.
    type: raw
    default: gzip:1
  bindir:
    description:
      - The directory of C(pg_dump) and C(pg_restore), e.g. C(/usr/lib/postgresql/15/bin) (the inventory's
        C(runbook_pg_bindir)). Unset, both are looked up on C(PATH).
      - pg_dump must be at least the server's major version, and pg_restore at least pg_dump's.
    type: path
  id:
    description:
      - The backup's id, its directory name. Default a new id from the UTC start time, e.g. C(20261201T083000Z),
        with C(-2), C(-3) appended when that second is taken.
      - 1 to 128 letters, digits, C(.), C(_) or C(-); not C(latest), not ending in C(.partial).
      - An id that already exists is that backup; the module returns it and changes nothing.
    type: str
  reuse_within:
    description:
      - When a verified backup of this database from the same cluster (same system identifier), younger than
        this and with all its files present, exists, change nothing and return it (RV(reused=true)).
      - A duration such as C(1h), C(30m), C(20h) or seconds. V(0) (the default) always makes a new backup.
      - This is what makes a second run report no change.
      - The age counts from the backup's C(created_at), a rolling window, not a calendar day. For a daily schedule
        take a window clearly shorter than a day, such as V(20h). At today's run yesterday's backup is about 24 h
        old, so V(1d) would reuse it on about half the days and make no new backup.
    type: raw
    default: '0'
  row_counts:
    description:
      - V(exact) counts the rows of every table (count(*), a full scan of each table) in the dump's snapshot;
        V(estimate) records only C(pg_class.reltuples); V(none) records neither (the tables are still listed).
    type: str
    choices: [exact, estimate, none]
    default: exact
  check_data:
    description:
      - After the dump, prove that every data block the TOC promises is in the archive, whole. This is what
        finds an archive cut short after its TOC, or a data file of a directory-format dump cut short, even
        when pg_dump exited 0.
      - A compressed custom-format archive is walked block by block, without decompressing it (the header,
        the TOC with each data entry's position, then every block's chunk lengths, up to the end of the
        file), in a few milliseconds for a few hundred MB of database. The walk reads archive version 1.14,
        which pg_dump 12 to 15 write. A directory-format dump, an uncompressed archive and an archive of
        another version (pg_dump 16 and later) are read back instead with C(pg_restore --file=/dev/null),
        one single-threaded read and decompression of the whole archive.
      - The manifest records that it was done as C(data_checked) and how as C(data_check) (V(blocks) or
        V(read_back)); M(runbook.ops.pg_backup_verify) then reads the data back only when asked, since
        matching checksums prove the files are the ones checked here.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Runs the read-only queries for real (snapshot, row counts, identity, migration revision) and writes
        nothing. Returns the pg_dump argument list it would run (RV(cmd), without secrets), the target RV(backup_path)
        and the manifest as far as the reads fill it.
      - Reports a change, or none when O(reuse_within) or O(id) would return an existing backup.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The login needs to read every table (superuser, the table owner, or C(pg_read_all_data)).
  - The snapshot's transaction stays open for the whole dump, like pg_dump's own; it holds back vacuum's
    cleanup horizon meanwhile, as every pg_dump does. Like pg_dump, its session sets C(statement_timeout),
    C(lock_timeout) and C(idle_in_transaction_session_timeout) to 0, so a server-wide limit cannot cut the
    backup short.
  - Tables that belong to an extension are neither dumped with data by pg_dump nor counted.
  - A C(<id>.partial) directory is left only when the module itself was killed; it is never listed as a backup.
  - A database without any object to dump (no TOC entry) cannot be backed up; the module fails.
seealso:
  - module: runbook.ops.pg_backup_verify
  - name: pg_dump
    description: PostgreSQL documentation of pg_dump, its formats, C(--snapshot) and C(--compress).
    link: https://www.postgresql.org/docs/current/app-pgdump.html
"""

EXAMPLES = r"""
- name: Back up the app database with the shared inventory login
  module_defaults:
    group/runbook.ops.pg: "{{ __pg_login_module_defaults }}"
  block:
    - name: Dump app into /var/backups/postgresql/app/<id>/
      runbook.ops.pg_backup:
        backup_dir: /var/backups/postgresql
        bindir: "{{ runbook_pg_bindir }}"
      register: backup

    - name: Verify it and record verified_at
      runbook.ops.pg_backup_verify:
        path: "{{ backup.backup_path }}"
        bindir: "{{ runbook_pg_bindir }}"

- name: A parallel directory-format dump, zstd (pg_dump 16+)
  runbook.ops.pg_backup:
    login_host: db1.example.com
    login_user: runbook_admin
    login_password: "{{ vault_pg_admin_password }}"
    login_db: orders
    backup_dir: /srv/backups
    format: directory
    jobs: 4
    compression: zstd:3

- name: A daily job's backup; a second run the same day changes nothing
  runbook.ops.pg_backup:
    login_db: app
    backup_dir: /var/backups/postgresql
    # shorter than a day: yesterday's backup is ~24 h old now, and 1d would reuse it on about half the days
    reuse_within: 20h

- name: What would run (check mode), with estimates instead of counting every row
  runbook.ops.pg_backup:
    login_db: app
    backup_dir: /var/backups/postgresql
    row_counts: estimate
  check_mode: true
  register: plan
"""

RETURN = r"""
changed:
  description: Whether a new backup was made (or would be, in check mode).
  returned: always
  type: bool
reused:
  description: Whether an existing backup was returned instead of a new one (O(reuse_within), or O(id) exists).
  returned: always
  type: bool
  sample: false
database:
  description: The database (O(login_db)).
  returned: always
  type: str
  sample: app
id:
  description: The backup's id.
  returned: success
  type: str
  sample: 20261201T083000Z
backup_path:
  description:
    - The backup's directory, C(<backup_dir>/<database>/<id>) (in check mode, the one it would be). Give it to
      M(runbook.ops.pg_backup_verify) as O(runbook.ops.pg_backup_verify#module:path).
    - Not named C(path), because Ansible expands C($VARS) in a result named so and a database name may hold
      a C($).
  returned: success
  type: str
  sample: /var/backups/postgresql/app/20261201T083000Z
archive:
  description: The archive inside RV(backup_path), for C(pg_restore).
  returned: success
  type: str
  sample: /var/backups/postgresql/app/20261201T083000Z/dump.custom
cmd:
  description:
    - The pg_dump argument list run (or that would run, in check mode). The connection is in C(--dbname) as a
      quoted libpq connection string; the password is never in it.
  returned: when a backup was made or would be made
  type: list
  elements: str
  sample: ["/usr/lib/postgresql/15/bin/pg_dump",
           "--dbname=host='127.0.0.1' port='5432' user='runbook_admin' dbname='app' sslmode='prefer'
            connect_timeout='5' application_name='runbook.ops'",
           "--no-password", "--format=custom", "--file=/var/backups/postgresql/app/20261201T083000Z.partial/dump.custom",
           "--compress=1", "--snapshot=00000003-0000001B-1"]
manifest:
  description:
    - The backup's manifest, as in C(manifest.json). In check mode the fields only the dump fills
      (C(files), C(size_bytes), C(toc_entries), C(duration_s)) are empty or null.
  returned: success
  type: dict
  contains:
    format_version:
      description: Version of the manifest layout.
      type: int
      sample: 1
    id:
      description: The backup's id.
      type: str
    created_at:
      description: When the backup started (the snapshot), UTC.
      type: str
      sample: "2026-12-01T08:30:00.123Z"
    database:
      description: The database dumped.
      type: str
    host:
      description: The server's host (or Unix socket directory), as the module connected to it.
      type: str
    port:
      description: The server's port.
      type: int
    server_version:
      description: C(server_version) of the server.
      type: str
      sample: "15.18 (Debian 15.18-0+deb12u1)"
    server_version_num:
      description: C(server_version_num) of the server.
      type: int
      sample: 150018
    system_identifier:
      description: The cluster's system identifier (pg_control_system()), as a string; null when the login
        may not read it.
      type: str
      sample: "7441234567890123456"
    pg_dump_version:
      description: The version of the pg_dump that wrote the archive.
      type: str
      sample: "15.18 (Debian 15.18-0+deb12u1)"
    format:
      description: V(custom) or V(directory).
      type: str
    compression:
      description: The compression, normalized (V(none), V(gzip:1), V(zstd)...).
      type: str
      sample: gzip:1
    jobs:
      description: Parallel jobs of the dump.
      type: int
    archive:
      description: The archive's path relative to the backup directory (C(dump.custom) or C(dump)).
      type: str
    files:
      description: Every file of the archive, with C(path) (relative, C(/)-separated), C(size) and C(sha256).
      type: list
      elements: dict
      sample: [{"path": "dump.custom", "size": 25177, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}]
    size_bytes:
      description: The sum of the files' sizes.
      type: int
    toc_entries:
      description: TOC entries that C(pg_restore --list) lists.
      type: int
      sample: 42
    row_counts:
      description: O(row_counts) of the run.
      type: str
    tables:
      description: Every table, with C(schema), C(name), C(rows) (exact, in the dump's snapshot; null unless
        O(row_counts=exact)) and C(rows_estimate) (C(pg_class.reltuples); null if never analyzed or with
        O(row_counts=none)).
      type: list
      elements: dict
      sample: [{"schema": "public", "name": "orders", "rows": 120000, "rows_estimate": 119874}]
    migration_tool:
      description: V(alembic), V(prisma), or null when the database has neither migration table.
      type: str
    migration_revision:
      description: C(alembic_version.version_num) (several heads joined by commas), or the newest finished
        C(_prisma_migrations.migration_name); null without either.
      type: str
      sample: ae1027a6acf
    duration_s:
      description: Seconds from the start of the module to the checked archive.
      type: float
    data_checked:
      description: Whether the data blocks were checked whole when the backup was made (O(check_data)).
      type: bool
    data_check:
      description:
        - How they were, V(blocks) (the archive walked block by block) or V(read_back) (C(pg_restore
          --file=/dev/null)); null when they were not, and in manifests from before it was recorded.
      type: str
      sample: blocks
    verified_at:
      description: When M(runbook.ops.pg_backup_verify) first verified the backup, UTC; null until then.
      type: str
timings:
  description:
    - Seconds of each step of the backup made, to see where its time goes. C(pg_dump_s) is pg_dump's run,
      C(row_counts_s) the exact counts that run meanwhile, C(pg_restore_list_s) the TOC read,
      C(check_data_s) the data checked whole (C(data_check)), C(checks_and_sha256_s) all the checks after the
      dump with the sha256 hashed meanwhile, C(manifest_s) the manifest written, C(total_s) the module's work in all.
  returned: when a backup was made
  type: dict
  sample: {"row_counts_s": 0.52, "pg_dump_s": 3.1, "pg_restore_list_s": 0.03, "check_data_s": 0.41,
           "checks_and_sha256_s": 0.45, "manifest_s": 0.002, "total_s": 3.62}
"""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, conn_params, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_archive_walk import (
    ArchiveDamaged,
    ArchiveVersionUnknown,
    walk_custom_archive,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    ARCHIVE_HEADER_FORMATS,
    ARCHIVE_NAMES,
    FORMATS,
    PARTIAL_SUFFIX,
    ROW_COUNTS,
    BackupError,
    archive_path,
    backup_path,
    check_database_name,
    check_id,
    database_dir,
    format_utc,
    utc_now,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_catalog import (
    discard,
    find_reusable,
    list_backups,
    next_id,
    reserve,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    MANIFEST_VERSION,
    fsync_dir,
    read_manifest,
    tree_files,
    write_manifest,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_snapshot import (
    count_rows,
    list_tables,
    manifest_tables,
    read_identity,
    read_migration,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_toc import read_back, read_toc
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import (
    Compression,
    RunningTool,
    ToolVersion,
    compression_args,
    conninfo,
    dump_argv,
    find_tool,
    parse_compression,
    tool_problems,
    tool_version,
)

try:
    from psycopg import IsolationLevel
except ImportError:  # reported by connect() through ensure_psycopg()
    IsolationLevel = None

# The same timeouts pg_dump sets for its own sessions: a server-wide statement_timeout must not cancel a count,
# nor idle_in_transaction_session_timeout end this session while pg_dump still has to import its snapshot.
SQL_SNAPSHOT = """
SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true),
       set_config('idle_in_transaction_session_timeout', '0', true), pg_export_snapshot() AS snapshot"""

# The backup benchmark's choice (tests/bench/bench_backup.py): the smallest dump among the levels within 10 % of
# the fastest; level 1 is as fast as none and as small as 3 and 6.
DEFAULT_COMPRESSION = "gzip:1"


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        backup_dir={"type": "path", "required": True},
        format={"type": "str", "default": "custom", "choices": list(FORMATS)},
        jobs={"type": "int", "default": 1},
        compression={"type": "raw", "default": DEFAULT_COMPRESSION},
        bindir={"type": "path"},
        id={"type": "str"},
        reuse_within={"type": "raw", "default": "0"},
        row_counts={"type": "str", "default": "exact", "choices": list(ROW_COUNTS)},
        check_data={"type": "bool", "default": True},
    )
    return spec


def check_options(module: AnsibleModule, result: dict[str, Any]) -> Compression:
    """The parsed compression; fails the module on any invalid option, all problems in one message."""
    p = module.params
    problems: list[str | None] = []
    if not os.path.isabs(p["backup_dir"]):
        problems.append(f"backup_dir must be an absolute path, not {p['backup_dir']!r}")
    elif not os.path.isdir(p["backup_dir"]):
        problems.append(f"backup_dir {p['backup_dir']} does not exist or is not a directory; create (and mount) "
                        "it first")
    problems.append(check_database_name(p["login_db"]))
    if p["id"] is not None:
        problems.append(check_id(p["id"]))
    if p["jobs"] < 1:
        problems.append("jobs must be 1 or more")
    elif p["jobs"] > 1 and p["format"] != "directory":
        problems.append("jobs > 1 needs format=directory (pg_dump dumps in parallel only into a directory)")
    compression = None
    try:
        compression = parse_compression(p["compression"])
    except ValueError as exc:
        problems.append(str(exc))
    try:
        to_seconds(p["reuse_within"])
    except ValueError as exc:
        problems.append(f"reuse_within: {exc}")
    problems = [x for x in problems if x]
    if problems:
        module.fail_json(msg="; ".join(problems), **result)
    return compression


@dataclass
class Plan:
    """What the options and the tools decided before connecting."""

    pg_dump: str
    dump_version: ToolVersion
    pg_restore: str
    compression: Compression
    compression_args: list[str]
    now: datetime
    started: float  # time.monotonic() at the start, for duration_s
    # seconds of each step of the backup, returned as timings: where a backup's time goes
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class Snapshot:
    """What was read in the transaction whose snapshot pg_dump dumps."""

    snapshot: str
    identity: dict[str, Any]
    tables: list[dict[str, Any]] = field(default_factory=list)
    migration: tuple[str | None, str | None] = (None, None)


def make_plan(module: AnsibleModule, result: dict[str, Any], compression: Compression) -> Plan:
    """Find pg_dump and pg_restore and check what they can do; fails the module, before connecting, if they cannot."""
    bindir = module.params["bindir"]
    pg_dump, pg_restore = find_tool(module, bindir, "pg_dump"), find_tool(module, bindir, "pg_restore")
    try:
        dump_version, restore_version = tool_version(module, pg_dump), tool_version(module, pg_restore)
    except BackupError as exc:
        module.fail_json(msg=str(exc), **result)
    if restore_version.major < dump_version.major:
        module.fail_json(msg=f"pg_restore {restore_version.number} ({pg_restore}) cannot read archives of pg_dump "
                         f"{dump_version.number} ({pg_dump}); use the same bindir for both", **result)
    try:
        args = compression_args(compression, dump_version)
    except ValueError as exc:
        module.fail_json(msg=f"{exc} ({pg_dump})", **result)
    return Plan(pg_dump, dump_version, pg_restore, compression, args, utc_now(), time.monotonic())


def exit_reused(module: AnsibleModule, result: dict[str, Any], path: str, manifest: dict[str, Any]) -> None:
    result.update(changed=False, reused=True, id=manifest["id"], backup_path=path,
                  archive=archive_path(path, manifest["format"]), manifest=manifest)
    module.exit_json(**result)


def new_manifest(module: AnsibleModule, backup_id: str, plan: Plan, snap: Snapshot) -> dict[str, Any]:
    p = module.params
    return {
        "format_version": MANIFEST_VERSION,
        "id": backup_id,
        "created_at": format_utc(plan.now),
        "database": snap.identity["database"],
        "host": p["login_unix_socket"] or p["login_host"],
        "port": p["login_port"],
        "server_version": snap.identity["server_version"],
        "server_version_num": snap.identity["server_version_num"],
        "system_identifier": snap.identity["system_identifier"],
        "pg_dump_version": plan.dump_version.release,
        "format": p["format"],
        "compression": str(plan.compression),
        "jobs": p["jobs"],
        "archive": ARCHIVE_NAMES[p["format"]],
        "files": [],
        "size_bytes": None,
        "toc_entries": None,
        "row_counts": p["row_counts"],
        "tables": manifest_tables(snap.tables),
        "migration_tool": snap.migration[0],
        "migration_revision": snap.migration[1],
        "duration_s": None,
        "data_checked": p["check_data"],
        "data_check": None,  # how, once checked: check_data()
        "verified_at": None,
    }


def restrict_modes(root: str) -> None:
    """A dump holds every row of the database: 0700 directories, 0600 files, whatever the umask was."""
    for current, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(current, name), 0o700)
        for name in files:
            os.chmod(os.path.join(current, name), 0o600)


def lap(plan: Plan, step: str, since: float) -> float:
    """Record the seconds of step (since a time.monotonic()) in plan.timings; the time now."""
    now = time.monotonic()
    plan.timings[step] = round(now - since, 3)
    return now


def check_data(module: AnsibleModule, plan: Plan, archive: str, fmt: str) -> str:
    """Prove that every data block the TOC promises is in the archive, whole; how it was done (DATA_CHECKS).

    A compressed custom archive is walked block by block without decompressing (pg_archive_walk): what finds a
    dump cut short, in a fraction of the time a read-back takes. A directory-format dump (one compressed file
    per table, whose end cannot be found without decompressing it), an uncompressed archive (a chunk per row:
    the walk would be slower than pg_restore) and an archive version the walk does not know are read back.
    """
    compressed = plan.compression.method != "none" and plan.compression.level != 0
    if fmt == "custom" and compressed:
        try:
            walk_custom_archive(archive)
            return "blocks"
        except ArchiveDamaged as exc:
            raise BackupError(f"pg_dump exited 0 but {os.path.basename(archive)} is not whole: {exc}") from exc
        except ArchiveVersionUnknown:
            pass
    read_back(module, plan.pg_restore, archive)
    return "read_back"


def check_dump(module: AnsibleModule, partial: str, plan: Plan, snap: Snapshot, manifest: dict[str, Any]) -> None:
    """Fill the manifest's files, size and TOC count from the archive in partial; BackupError when it is bad.

    The files are hashed in a thread while pg_restore reads the TOC and the data back: hashlib and the
    subprocess both run outside the GIL, so the sha256 costs next to no wall time.
    """
    fmt = manifest["format"]
    archive = archive_path(partial, fmt)
    must_have = archive if fmt == "custom" else os.path.join(archive, "toc.dat")
    name = os.path.relpath(must_have, partial)
    if not os.path.isfile(must_have):
        raise BackupError(f"pg_dump exited 0 but wrote no {name}")
    if os.path.getsize(must_have) == 0:
        raise BackupError(f"pg_dump exited 0 but {name} is empty")
    restrict_modes(partial)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashed = pool.submit(tree_files, partial)
        toc = read_toc(module, plan.pg_restore, archive, expect_format=ARCHIVE_HEADER_FORMATS[fmt])
        since = lap(plan, "pg_restore_list_s", started)
        # TABLE DATA entries carry the table's oid: every table counted in the snapshot must have one
        missing = [f"{t['schema']}.{t['name']}" for t in snap.tables if t["oid"] not in toc.data_oids]
        if missing:
            raise BackupError(f"the archive has no data entry for {len(missing)} table(s) that were counted: "
                              + ", ".join(missing[:10]))
        if module.params["check_data"]:
            manifest["data_check"] = check_data(module, plan, archive, fmt)
            lap(plan, "check_data_s", since)
        files = hashed.result()
    lap(plan, "checks_and_sha256_s", started)
    manifest.update(files=files, size_bytes=sum(f["size"] for f in files), toc_entries=toc.count)


def run_dump(module: AnsibleModule, conn: Any, argv: list[str], plan: Plan, snap: Snapshot) -> tuple[int, str]:
    """pg_dump's (exit code, stderr); the exact row counts are read meanwhile, in the snapshot pg_dump imports.

    The counts run in this module's own session, the one that exported the snapshot and keeps it open: they
    see exactly the rows pg_dump writes, and they cost no wall time beyond the dump's on a server with a core
    to spare. A failure while counting ends pg_dump.
    """
    password = module.params["login_password"]
    started = time.monotonic()
    running = RunningTool(argv, {"PGPASSWORD": password} if password else None)
    try:
        if module.params["row_counts"] == "exact":
            # a failed pg_dump fails the backup: no need to count the rest of the database first
            count_rows(conn, snap.tables, give_up=lambda: running.process.poll() not in (None, 0))
            lap(plan, "row_counts_s", started)
    except BaseException:
        running.kill()
        raise
    rc, err = running.wait()
    lap(plan, "pg_dump_s", started)
    return rc, err


def dump(module: AnsibleModule, conn: Any, argv: list[str], partial: str, plan: Plan, snap: Snapshot,
         manifest: dict[str, Any]) -> None:
    """Run pg_dump into partial, check the archive and write the manifest; BackupError on any problem."""
    rc, err = run_dump(module, conn, argv, plan, snap)
    manifest["tables"] = manifest_tables(snap.tables)  # with the counts read while pg_dump ran
    detail = redact("; ".join(line.strip() for line in err.splitlines() if line.strip())[:2000], module.params)
    if rc != 0:
        raise BackupError(f"pg_dump failed (exit code {rc}): {detail or 'no message'}")
    if tool_problems(err):
        raise BackupError(f"pg_dump exited 0 but reported: {detail}")
    if detail:
        module.warn(f"pg_dump: {detail}")
    check_dump(module, partial, plan, snap, manifest)
    manifest["duration_s"] = round(time.monotonic() - plan.started, 3)
    since = time.monotonic()
    write_manifest(partial, manifest)
    lap(plan, "manifest_s", since)


def read_snapshot(module: AnsibleModule, result: dict[str, Any], conn: Any, plan: Plan) -> Snapshot:
    """Export the snapshot and read the identity; return early (exit) when a backup can be reused."""
    p = module.params
    # pg_dump reads in this transaction's snapshot: it stays open until pg_dump is done.
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    snap = Snapshot(conn.execute(SQL_SNAPSHOT).fetchone()["snapshot"], read_identity(conn))
    server_major = snap.identity["server_version_num"] // 10000
    if plan.dump_version.major < server_major:
        module.fail_json(msg=f"pg_dump {plan.dump_version.number} ({plan.pg_dump}) cannot dump a PostgreSQL "
                         f"{server_major} server; use a pg_dump of version {server_major} or later (bindir)",
                         **result)
    reuse_s = to_seconds(p["reuse_within"])
    if reuse_s > 0:
        found = find_reusable(list_backups(p["backup_dir"], p["login_db"]).backups, max_age_s=reuse_s,
                              now=plan.now, system_identifier=snap.identity["system_identifier"])
        if found:
            exit_reused(module, result, found.path, found.manifest)
    # the exact counts come later, while pg_dump runs (run_dump); in check mode, here
    snap.tables = list_tables(conn, p["row_counts"], snap.identity["in_recovery"])
    if module.check_mode and p["row_counts"] == "exact":
        count_rows(conn, snap.tables)
    tool, revision, warning = read_migration(conn)
    if warning:
        module.warn(redact(warning, p))
    snap.migration = (tool, revision)
    return snap


def back_up(module: AnsibleModule, result: dict[str, Any], conn: Any, plan: Plan, snap: Snapshot) -> None:
    """Dump into <id>.partial and rename it to <id> once it checked out; in check mode, say what would run."""
    p = module.params
    database, fmt = p["login_db"], p["format"]

    def argv_for(partial: str) -> list[str]:
        return dump_argv(plan.pg_dump, connection=conninfo(conn_params(p, database)), fmt=fmt,
                         archive=archive_path(partial, fmt), jobs=p["jobs"], compression=plan.compression_args,
                         snapshot=snap.snapshot)

    if module.check_mode:
        backup_id = next_id(p["backup_dir"], database, plan.now, p["id"])
        path = backup_path(p["backup_dir"], database, backup_id)
        result.update(changed=True, id=backup_id, backup_path=path, archive=archive_path(path, fmt),
                      cmd=argv_for(path + PARTIAL_SUFFIX), manifest=new_manifest(module, backup_id, plan, snap))
        module.exit_json(**result)

    # a database directory this run creates goes again if the backup fails (discard)
    new_database_dir = not os.path.lexists(database_dir(p["backup_dir"], database))
    backup_id, partial = reserve(p["backup_dir"], database, plan.now, p["id"])
    path = backup_path(p["backup_dir"], database, backup_id)
    argv = argv_for(partial)
    result.update(id=backup_id, cmd=argv)
    manifest = new_manifest(module, backup_id, plan, snap)
    done = False
    try:
        dump(module, conn, argv, partial, plan, snap, manifest)
        os.rename(partial, path)
        fsync_dir(database_dir(p["backup_dir"], database))
        done = True
    except OSError as exc:
        raise BackupError(f"writing the backup in {partial} failed: {exc}") from exc
    finally:
        if not done:
            discard(partial, remove_database_dir=new_database_dir)
    plan.timings["total_s"] = round(time.monotonic() - plan.started, 3)
    result.update(changed=True, backup_path=path, archive=archive_path(path, fmt), manifest=manifest,
                  timings=plan.timings)
    module.exit_json(**result)


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    database: str = p["login_db"]
    result: dict[str, Any] = {"changed": False, "reused": False, "database": database}
    plan = make_plan(module, result, check_options(module, result))

    # an id that exists is that backup: return it, never overwrite it
    if p["id"] and os.path.lexists(backup_path(p["backup_dir"], database, p["id"])):
        path = backup_path(p["backup_dir"], database, p["id"])
        try:
            manifest = read_manifest(path, database=database, backup_id=p["id"])
        except BackupError as exc:
            module.fail_json(msg=f"backup {p['id']!r} exists but is not a complete backup: {exc}", **result)
        exit_reused(module, result, path, manifest)

    conn, err = connect(module, autocommit=False)
    if err:
        module.fail_json(msg=err, **result)
    try:
        back_up(module, result, conn, plan, read_snapshot(module, result, conn, plan))
    except PsycopgError as exc:
        module.fail_json(msg=redact(f"PostgreSQL error in database {database}: {str(exc).strip()}", p), **result)
    except BackupError as exc:
        module.fail_json(msg=redact(str(exc), p), **result)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
