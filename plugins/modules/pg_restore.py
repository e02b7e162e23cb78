#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_restore: restore a runbook.ops backup into a new database and prove it holds the backup."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore
short_description: Restore a runbook.ops backup into a new PostgreSQL database and verify it against the manifest
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Restores one backup made by M(runbook.ops.pg_backup) (the directory C(<backup_dir>/<database>/<id>/) with
    its archive and C(manifest.json)) into a database that B(does not exist yet), O(target_db). The module never
    overwrites a database; an existing O(target_db) is refused and left untouched. Putting the restored database
    in the place of the live one is M(runbook.ops.pg_database_swap)'s job.
  - "B(Before anything is created) the backup is checked: the manifest is read and validated, every file it
    lists is there with its size and (O(verify_checksums)) its sha256, and C(pg_restore --list) reads the archive,
    which must have the manifest's format and number of TOC entries."
  - "B(The target is created like) O(like_db), normally the live database it will replace, from C(template0):
    same owner, encoding, C(LC_COLLATE), C(LC_CTYPE), locale provider and ICU or builtin locale, default
    tablespace and connection limit. Its database-level ACL (C(datacl), grant chains included), its settings
    (C(ALTER DATABASE ... SET) and C(ALTER ROLE ... IN DATABASE ... SET), from C(pg_db_role_setting)) and its
    comment are copied too, because a single-database pg_dump without C(--create) does not carry them and the
    swapped-in database must behave like the old one."
  - "B(Then) pg_restore runs with C(--jobs) (O(jobs)), C(--exit-on-error) and C(--dbname) (O(target_db)) as an
    argument list through C(run_command), never a shell; the password is only in its environment
    (C(PGPASSWORD)). The restore fails when pg_restore exits non-zero B(or) its stderr has an error line or
    C(errors ignored on restore) (which pg_restore can report with exit code 0)."
  - "B(Then the target is verified): every table of the manifest is there and no other, the exact row count of
    each (a C(count) of all its rows, in one C(REPEATABLE READ READ ONLY) snapshot) equals the manifest's where
    the manifest has one, the migration revision (C(alembic_version.version_num), else the newest finished
    C(_prisma_migrations.migration_name)) equals the manifest's, the properties, ACL and settings equal those of
    O(like_db), and each statement of O(smoke_sql) returns one row whose first column is true, each in its own
    read-only transaction."
  - B(On any failure) after the target was created (pg_restore failed or was killed, a check failed, the
    connection broke), the half-restored target is dropped (it holds nothing of value, unless O(keep_failed))
    and the module fails with the cause. Only the database this run created is ever dropped (same name B(and)
    same oid).
  - With O(check_only=true) nothing is created or restored either; these are a restore playbook's guards, in one
    call (see O(check_only)).
  - With O(verify_only=true) nothing is created or restored. The same verification runs against the existing
    O(target_db), for example the live database after the swap, or in restore drills; it reports the checks and
    never drops anything.
  - Identifiers are quoted by C(psycopg.sql.Identifier), values passed as parameters or, in utility statements
    that take none, as C(psycopg.sql.Literal).
extends_documentation_fragment:
  - runbook.ops.pg
options:
  backup_path:
    description:
      - The backup to restore, the directory C(<backup_dir>/<database>/<id>), as
        RV(runbook.ops.pg_backup#module:backup_path) of M(runbook.ops.pg_backup) returns it. An absolute path,
        taken as it is, without C(~) or C($VAR) expansion (a database name may contain a C($)).
      - Its manifest must have the id the directory is named after. A C(<id>.partial) directory is an
        unfinished backup and is refused.
      - Or, with O(check_only), O(backup_dir) and O(backup_id).
    type: str
  backup_dir:
    description:
      - With O(check_only), instead of O(backup_path) - the root of the backups (as given to
        M(runbook.ops.pg_backup)); the backup is O(backup_id) of O(like_db) there, and C({id}) in O(target_db),
        O(keep_as) and O(lock_owner) is replaced by its id. RV(backup_path) returns the backup chosen.
    type: str
  backup_id:
    description: With O(backup_dir), the backup's id, or V(latest) - the newest verified backup.
    type: str
    default: latest
  target_db:
    description:
      - The database to create and restore into. It must not exist; the module never overwrites a database.
      - With O(verify_only=true), the existing database to verify.
      - At most 63 bytes (PostgreSQL would truncate a longer name).
    type: str
    required: true
  like_db:
    description:
      - The existing database O(target_db) is created like (properties, ACL, settings, comment), usually the live
        database it is to replace. Required unless O(verify_only=true).
      - With O(verify_only=true), when given, the verification also compares O(target_db)'s properties, ACL and
        settings with this database's.
    type: str
  verify_only:
    description:
      - Create and restore nothing; verify the existing O(target_db) against the backup's manifest (and
        O(like_db), O(smoke_sql)). Reports no change; a failed check fails the module and drops nothing.
    type: bool
    default: false
  check_only:
    description:
      - The guards of a restore, for a playbook - create and restore nothing; check what the restore needs, the
        backup as it would (files, sizes, checksums with O(verify_checksums), the TOC, and the data read back
        when the manifest records neither C(data_checked) nor C(verified_at)), and on the server - O(like_db) exists, O(target_db) does not,
        and the backup was taken on this cluster (same system identifier) unless O(allow_other_cluster). Any
        problem fails the module, all of them named in one message.
      - When O(keep_as) exists (this backup was restored and swapped in before), O(like_db) is verified against
        the backup as O(verify_only) does (with O(keep_as)'s properties, ACL and settings, O(smoke_sql) and
        O(swap_record)), and RV(already_restored) says whether it still holds the backup, nothing written since.
        A failed check is no failure of the module here; the playbook decides.
      - With O(lock_path), once every guard has passed and the restore is to go ahead (O(keep_as) absent), takes
        the restore lock in the same call (see O(lock_path)) and reports a change; otherwise reports none.
    type: bool
    default: false
  swap:
    description:
      - After the restore has verified, put O(target_db) in the place of O(like_db), keeping O(like_db) as
        O(keep_as) (required), in B(one transaction), exactly as M(runbook.ops.pg_database_swap) does (sessions
        refused, then ended, then both renames; see its documentation), connected to O(login_db). With
        O(swap_record), the swap's record is written there (the backup id, the oids, the swap's transaction id),
        which a later O(check_only) reads. One module call instead of two for a restore.
      - RV(swapped) says whether the swap committed. A failure before the commit drops O(target_db) as any
        failed restore does, and O(like_db) is untouched; a failure after it (the oids do not match) keeps both
        and fails with RV(swapped=true), so that the caller swaps back with M(runbook.ops.pg_database_swap).
    type: bool
    default: false
  lock_token:
    description:
      - With O(swap), the token the guards' call took O(lock_path) with (V(token) in RV(lock)); the lock is released
        once the swap has committed, for a restore that has nothing left to do after it. A lock that cannot be
        released is a warning (the swap is done).
    type: str
  lock_path:
    description:
      - With O(check_only), the lock file that keeps a second restore of this target out, taken as
        M(runbook.ops.run_lock) takes it (C(O_CREAT|O_EXCL), mode C(0600), a JSON record with a random token),
        after the other guards, so that a refused restore never holds it. Its directory is created (mode C(0700)) when
        missing, except in check mode.
      - A lock held by another run fails the module, naming the holder and since when, unless it is older than
        O(lock_break_after). RV(lock) returns the token; release it with M(runbook.ops.run_lock)
        (O(runbook.ops.run_lock#module:state=absent)) when the restore is over.
      - In check mode the lock is read, not taken, and RV(lock) says whether it would be.
      - Not taken when O(keep_as) exists (the restore either has nothing to do or is refused).
    type: path
  lock_owner:
    description: With O(lock_path), who takes it (written into the lock and shown to a run that finds it taken).
    type: str
    default: runbook.ops.pg_restore
  lock_break_after:
    description:
      - With O(lock_path), a lock taken longer ago than this duration (seconds, or V(30m), V(12h)) is stale and is
        broken (V(stale) in RV(lock)). Unset means never broken. Pick it well above the longest restore.
    type: raw
  keep_as:
    description: With O(check_only) or O(swap), the name the swap keeps O(like_db) under (the safety copy).
    type: str
  allow_other_cluster:
    description:
      - With O(check_only), accept a backup taken on another cluster (disaster recovery onto a new server).
      - Also needed when the cluster cannot be compared - the manifest records no system identifier, or the login
        may not read C(pg_control_system()) - since an unknown identifier proves nothing.
    type: bool
    default: false
  swap_record:
    description:
      - With O(swap), the record of the swap is written to this path.
      - With O(verify_only) (or O(check_only)), the record M(runbook.ops.pg_database_swap) (or O(swap)) wrote
        (O(runbook.ops.pg_database_swap#module:record_path)) when the database verified took its name. The check
        C(unchanged_since_swap) then proves that B(nothing was written to it since) - no row of any table has a
        transaction id (C(xmin)) after the swap's, and no table, column or index was created or altered since
        (their C(pg_class) and C(pg_attribute) rows) - in the same snapshot as the row counts, with one scan per
        table for both. Row counts alone cannot tell an C(UPDATE); this can.
      - The record must be of that database (same name and oid, so not one replaced since), of this backup and of
        this cluster, and the swap at most about 2^31 transactions ago; a missing or unusable record fails the
        check (the module cannot tell, so the database counts as changed).
      - "Ages are compared as C(age(xmin)) against C(age(<the swap's xid>)) in one transaction, so transaction-ID
        wraparound is taken into account; a frozen row (9.4+) keeps its C(xmin), and a row whose C(xmin) is older
        than a wraparound can only look written since, never the other way round."
      - An absolute path, taken as it is.
    type: str
  jobs:
    description:
      - Parallel jobs of C(pg_restore --jobs); each is a connection to O(target_db). More jobs restore faster
        and load the server more.
      - The default 4 is not from the seed runbooks; it suits a server with 4 or more cores that is otherwise
        idle during a restore, which it is with the writers stopped.
    type: int
    default: 4
  no_owner:
    description: Pass C(--no-owner) to pg_restore; the objects then belong to O(login_user). The default keeps owners.
    type: bool
    default: false
  no_privileges:
    description:
      - Pass C(--no-privileges) to pg_restore; the objects' grants in the dump are not restored. The default keeps
        them. The database-level ACL copied from O(like_db) is not affected.
    type: bool
    default: false
  smoke_sql:
    description:
      - SQL statements run in O(target_db) after the restore, each in its own read-only transaction. Each must
        return exactly one row whose first column is the boolean C(true), for example a count compared with a
        minimum, or the newest timestamp of a table compared with the current time (see the examples).
      - A statement that fails, returns another value or another number of rows fails the restore.
    type: list
    elements: str
    default: []
  verify_row_counts:
    description:
      - Compare the exact row count of every table with the manifest's (a full scan of every table). With
        V(false) only the presence of the tables is compared. Tables whose manifest count is null (a backup made
        with C(row_counts) other than C(exact)) are never counted.
    type: bool
    default: true
  verify_checksums:
    description:
      - Before restoring, check the sha256 of every file of the backup against the manifest (one read of the
        whole backup). With V(false) only the files' presence and sizes are checked.
    type: bool
    default: true
  keep_failed:
    description:
      - Keep the target of a failed restore for inspection instead of dropping it. It then has to be dropped by
        hand before a target of the same name can be restored again.
    type: bool
    default: false
  bindir:
    description:
      - The directory of C(pg_restore), e.g. C(/usr/lib/postgresql/15/bin) (the inventory's C(runbook_pg_bindir)).
        Unset, it is looked up on C(PATH). It must be at least as new as the pg_dump that made the backup.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Runs every read for real (manifest, files and checksums, C(pg_restore --list), whether O(target_db) is
        absent and O(like_db) exists and its properties, ACL and settings) and writes nothing.
      - Returns the statements (RV(statements)) and the pg_restore argument list (RV(argv)) it would run, and
        reports a change.
      - With O(verify_only=true) the verification runs for real (it only reads) and no change is reported.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The login needs to be a superuser, or to have C(CREATEDB) and be a member of O(like_db)'s owner, of the
    grantors of its ACL and of every owner of the objects in the dump (unless O(no_owner)).
  - The module connects to O(login_db) for the catalog work (it must not be O(target_db) unless
    O(verify_only=true)) and to O(target_db) to verify it. pg_restore connects with
    C(application_name=runbook.ops) as well.
  - If the module itself is killed mid-restore, the half-restored target stays; the next run refuses it
    as existing. Drop it by hand (it holds nothing of value) or restore into another name.
  - Large objects, event triggers and extensions are restored as pg_restore restores them; only tables are
    compared with the manifest.
seealso:
  - module: runbook.ops.pg_backup
  - module: runbook.ops.pg_database_swap
  - name: pg_restore
    description: PostgreSQL documentation of pg_restore, C(--jobs) and C(--exit-on-error).
    link: https://www.postgresql.org/docs/current/app-pgrestore.html
"""

EXAMPLES = r"""
- name: Restore the newest backup of app into a new database, created like app, and verify it
  module_defaults:
    group/runbook.ops.pg: "{{ __pg_login_module_defaults }}"
  block:
    - name: Restore into app_restore_20261201T083000Z
      runbook.ops.pg_restore:
        backup_path: /var/backups/postgresql/app/20261201T083000Z
        target_db: app_restore_20261201T083000Z
        like_db: app
        bindir: "{{ runbook_pg_bindir }}"
        jobs: 8
        smoke_sql:
          - SELECT count(*) > 0 FROM public.users
          - SELECT NOT EXISTS (SELECT 1 FROM public.orders WHERE total < 0)
          - SELECT max(created_at) > now() - interval '1 day' FROM public.orders
      register: restored

- name: What would run (check mode) - checks the backup, changes nothing
  runbook.ops.pg_restore:
    login_db: postgres
    backup_path: /var/backups/postgresql/app/20261201T083000Z
    target_db: app_restore_20261201T083000Z
    like_db: app
  check_mode: true
  register: plan

- name: After the swap, verify the live database against the same backup and the database it replaced
  runbook.ops.pg_restore:
    login_db: postgres
    backup_path: /var/backups/postgresql/app/20261201T083000Z
    target_db: app
    like_db: app_pre_restore_20261201T083000Z
    verify_only: true
    smoke_sql:
      - SELECT count(*) > 0 FROM public.users
"""

RETURN = r"""
target_db:
  description: The database restored into (or verified).
  returned: always
  type: str
  sample: app_restore_20261201T083000Z
like_db:
  description: The database the target was created like (or compared with).
  returned: always
  type: str
  sample: app
verify_only:
  description: Whether this was a verification only.
  returned: always
  type: bool
backup_id:
  description: The id of the backup.
  returned: when the manifest was read
  type: str
  sample: 20261201T083000Z
manifest:
  description: The parts of the backup's manifest the restore relies on.
  returned: when the manifest was read
  type: dict
  contains:
    id:
      description: The backup's id.
      type: str
    database:
      description: The database the backup was taken of.
      type: str
    created_at:
      description: When the backup was taken, UTC.
      type: str
    verified_at:
      description: When the backup was verified, UTC; null if never.
      type: str
    format:
      description: V(custom) or V(directory).
      type: str
    server_version:
      description: The version of the server the backup was taken from.
      type: str
    system_identifier:
      description: The system identifier of the cluster the backup was taken from.
      type: str
    toc_entries:
      description: TOC entries of the archive.
      type: int
    tables:
      description: How many tables the manifest lists.
      type: int
    migration_tool:
      description: V(alembic), V(prisma) or null.
      type: str
    migration_revision:
      description: The migration revision in the backup, or null.
      type: str
    size_bytes:
      description: The size of the backup's files.
      type: int
backup_path:
  description: With O(backup_dir), the backup chosen.
  returned: with O(backup_dir), when a backup was chosen
  type: str
  sample: /var/backups/postgresql/app/20261201T083000Z
toc_entries:
  description: TOC entries that C(pg_restore --list) read from the archive (equal to the manifest's).
  returned: when the archive was read
  type: int
  sample: 42
statements:
  description:
    - The statements that create the target like O(like_db), in order (run, or that would run in check mode).
      C(CREATE DATABASE) runs alone (it cannot run in a transaction block), the others in one transaction.
  returned: unless O(verify_only=true)
  type: list
  elements: str
  sample:
    - CREATE DATABASE "app_restore_1" WITH OWNER "app" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8'
      LC_CTYPE 'C.UTF-8'
    - ALTER DATABASE "app_restore_1" SET "work_mem" TO '7MB'
argv:
  description: The pg_restore argument list run (or that would run). The connection is a quoted libpq string in
    C(--dbname); the password is never in it.
  returned: unless O(verify_only=true)
  type: list
  elements: str
  sample:
    - /usr/lib/postgresql/15/bin/pg_restore
    - --dbname=host='127.0.0.1' port='5432' user='runbook_admin' dbname='app_restore_1' sslmode='prefer'
      connect_timeout='5' application_name='runbook.ops'
    - --no-password
    - --jobs=4
    - --exit-on-error
    - /var/backups/postgresql/app/20261201T083000Z/dump.custom
restore_s:
  description: Seconds to create the target and run pg_restore.
  returned: when the restore ran
  type: float
  sample: 12.31
swap_s:
  description: With O(swap), seconds the swap took (sessions ended, renamed, the record written).
  returned: when O(swap) and the restore verified
  type: float
  sample: 0.21
verify_s:
  description: Seconds the verification took.
  returned: when the verification ran
  type: float
  sample: 3.05
restore_warnings:
  description: Warning lines of pg_restore's stderr (they do not fail the restore; errors do).
  returned: when the restore ran
  type: list
  elements: str
  sample: []
checks:
  description: One entry per verification check, in order.
  returned: when the verification ran
  type: list
  elements: dict
  contains:
    name:
      description: >-
        The check: C(database_properties), C(database_acl), C(database_settings), C(rows <schema>.<table>),
        C(migration_revision), C(smoke_sql <n>) (1-based), C(unchanged_since_swap) (with O(swap_record)) or
        C(connect).
      type: str
      sample: rows public.orders
    ok:
      description: Whether it passed.
      type: bool
    msg:
      description: What was found, in words.
      type: str
      sample: 120000 rows, as in the backup
    expected:
      description: What the backup (or O(like_db)) has.
      type: raw
    actual:
      description: What O(target_db) has.
      type: raw
    sql:
      description: The statement, for the C(smoke_sql) checks.
      type: str
      returned: for smoke_sql checks
failed_checks:
  description: The names of the checks that failed.
  returned: when the verification ran
  type: list
  elements: str
  sample: ["rows public.orders"]
lock:
  description:
    - With O(lock_path) - the lock, as M(runbook.ops.run_lock) returns it (V(token), V(holder), V(stale),
      V(acquired) or in check mode V(would_acquire)). Absent when the lock was not to be taken (O(keep_as)
      exists).
  returned: when O(check_only) and O(lock_path) and the restore is to go ahead
  type: dict
  sample: {"token": "3f0c2a9d6b8e4f1a9c7d5e3b1a0f2e4d", "acquired": true, "stale": false,
           "path": "/var/backups/postgresql/app/.restore.lock"}
swapped:
  description: With O(swap), whether the swap committed (O(target_db) now has the name O(like_db)).
  returned: always
  type: bool
  sample: true
swap:
  description:
    - With O(swap), what the swap did, as M(runbook.ops.pg_database_swap) returns it - V(databases) (oids before),
      V(statements), V(sessions) and V(terminated), V(attempts), V(xid) (the swap transaction's id) and V(record)
      (what was written to O(swap_record)); with O(lock_token), V(lock) (the release, as M(runbook.ops.run_lock)
      returns it).
  returned: when O(swap) and the restore verified
  type: dict
already_restored:
  description: With O(check_only), whether O(like_db) holds the backup already (see O(check_only)).
  returned: with O(check_only)
  type: bool
  sample: false
keep_as_exists:
  description: With O(check_only), whether O(keep_as) exists.
  returned: with O(check_only)
  type: bool
  sample: false
system_identifier:
  description: With O(check_only), the system identifier of the server's cluster.
  returned: with O(check_only)
  type: str
  sample: "7312345678901234567"
dropped:
  description: Whether the target of a failed restore was dropped.
  returned: always
  type: bool
  sample: false
msg:
  description: One line saying what was done, or why it failed.
  returned: always
  type: str
  sample: restored backup 20261201T083000Z into app_restore_1 (12 tables, 5 checks) in 15.4s
"""

import json
import os
import time
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, conn_params, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import (
    ARCHIVE_HEADER_FORMATS,
    BackupError,
    check_id,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_catalog import list_backups
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_manifest import (
    compare_files,
    describe_problems,
    read_manifest,
    tree_files,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_snapshot import (
    count_rows,
    list_tables,
    read_migration,
    read_tables,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_toc import read_back, read_toc
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import conninfo, restore_tool, run_tool
from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import (
    ACL_IS_DEFAULT_SQL,
    ACL_SQL,
    CHANGED_OBJECTS_SQL,
    SETTINGS_SQL,
    WRITTEN_SQL,
    acl_statements,
    check,
    check_database_name,
    comment_statement,
    compare_migration,
    compare_properties,
    compare_sets,
    compare_tables,
    compare_unchanged,
    create_database_statement,
    describe_failures,
    evaluate_smoke,
    failed_checks,
    flatten_settings,
    horizon_problem,
    horizon_sql,
    like_database_sql,
    parse_restore_stderr,
    record_problem,
    restore_argv,
    restore_failure,
    settings_statements,
)
from ansible_collections.runbook.ops.plugins.module_utils.pg_swap import SwapFailure, SwapOptions, execute, prepare
from ansible_collections.runbook.ops.plugins.module_utils.run_lock import (
    LockError, acquire, break_after_seconds, current_user, os_error_message, release,
)

try:
    from psycopg import IsolationLevel, sql
    from psycopg.rows import tuple_row
except ImportError:  # reported by connect() through ensure_psycopg()
    IsolationLevel = None
    sql = None
    tuple_row = None


SYSTEM_IDENTIFIER_SQL = """
SELECT CASE WHEN pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier FROM pg_catalog.pg_control_system())::text END AS system_identifier"""


class RestoreFailure(Exception):
    """The restore or its verification failed; the message says why, without secrets."""


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        # str, not path: Ansible would expand a $ that belongs to a database name
        backup_path={"type": "str"},
        backup_dir={"type": "str"},
        backup_id={"type": "str", "default": "latest"},
        target_db={"type": "str", "required": True},
        like_db={"type": "str"},
        verify_only={"type": "bool", "default": False},
        check_only={"type": "bool", "default": False},
        keep_as={"type": "str"},
        allow_other_cluster={"type": "bool", "default": False},
        swap_record={"type": "str"},
        jobs={"type": "int", "default": 4},
        no_owner={"type": "bool", "default": False},
        no_privileges={"type": "bool", "default": False},
        smoke_sql={"type": "list", "elements": "str", "default": []},
        verify_row_counts={"type": "bool", "default": True},
        verify_checksums={"type": "bool", "default": True},
        keep_failed={"type": "bool", "default": False},
        bindir={"type": "path"},
        swap={"type": "bool", "default": False},
        lock_token={"type": "str", "no_log": False},
        lock_path={"type": "path"},
        lock_owner={"type": "str", "default": "runbook.ops.pg_restore"},
        lock_break_after={"type": "raw"},
    )
    return spec


def check_options(module: AnsibleModule, result: dict[str, Any]) -> None:
    """Fail the module on invalid options, all problems in one message, before touching anything."""
    p = module.params
    problems = [check_database_name(p["target_db"], "target_db")]
    if not os.path.isabs(p["backup_path"]):
        problems.append(f"backup_path must be an absolute path, not {p['backup_path']!r}")
    if p["like_db"] is not None:
        problems.append(check_database_name(p["like_db"], "like_db"))
    if p["keep_as"] is not None:
        problems.append(check_database_name(p["keep_as"], "keep_as"))
    if p["swap_record"] is not None and not os.path.isabs(p["swap_record"]):
        problems.append(f"swap_record must be an absolute path, not {p['swap_record']!r}")
    if p["verify_only"] and p["check_only"]:
        problems.append("verify_only and check_only exclude each other")
    if not p["verify_only"]:
        if not p["like_db"]:
            problems.append("like_db is required unless verify_only=true: the target is created like it")
        elif p["like_db"] == p["target_db"]:
            problems.append("target_db and like_db are the same database; restore into a new name")
        if p["login_db"] == p["target_db"]:
            problems.append(f"login_db is {p['target_db']!r}, the database to create; connect to another one "
                            "(e.g. postgres, or like_db)")
    if p["jobs"] < 1:
        problems.append("jobs must be 1 or more")
    if p["lock_path"] and not (p["check_only"] or p["swap"]):
        problems.append("lock_path goes with check_only (the guards take the lock) or swap (it releases it)")
    if p["lock_token"] and not (p["swap"] and p["lock_path"]):
        problems.append("lock_token goes with swap and lock_path")
    if p["swap"]:
        if p["check_only"] or p["verify_only"]:
            problems.append("swap excludes check_only and verify_only")
        if not p["keep_as"]:
            problems.append("swap needs keep_as, the name to keep like_db under")
        elif len({p["target_db"], p["like_db"], p["keep_as"]}) != 3:
            problems.append("target_db, like_db and keep_as must be three different names")
        if p["login_db"] in (p["like_db"], p["keep_as"]):
            problems.append(f"login_db is {p['login_db']!r}, one of the databases the swap renames; connect to "
                            "another one (e.g. postgres)")
    try:
        break_after_seconds(p["lock_break_after"])
    except ValueError as err:
        problems.append(f"lock_break_after: {err}")
    for n, statement in enumerate(p["smoke_sql"], 1):
        if not statement or not statement.strip():
            problems.append(f"smoke_sql {n} is empty")
    problems = [x for x in problems if x]
    if problems:
        module.fail_json(msg="; ".join(problems), **result)


def choose_backup(module: AnsibleModule, result: dict[str, Any]) -> None:
    """With backup_dir: set backup_path to the backup_id (latest: the newest verified) of like_db there, and put
    its id for {id} in target_db, keep_as and lock_owner. BackupError when there is no such backup."""
    p = module.params
    if p["backup_dir"] is None:
        return
    if not p["check_only"] or not p["like_db"]:
        module.fail_json(msg="backup_dir is for check_only=true, with like_db (whose backups it holds)", **result)
    if not os.path.isabs(p["backup_dir"]):
        module.fail_json(msg=f"backup_dir must be an absolute path, not {p['backup_dir']!r}", **result)
    listing = list_backups(p["backup_dir"], p["like_db"])
    where = f"{p['like_db']} in {p['backup_dir']}"
    if p["backup_id"] == "latest":
        chosen = next((b for b in listing.backups if b.verified), None)
        if chosen is None:
            raise BackupError(f"no verified backup of {where} ({len(listing.backups)} complete, none verified): "
                              "verify one first, or name one by its id")
    else:
        chosen = next((b for b in listing.backups if b.id == p["backup_id"]), None)
        if chosen is None:
            bad = next((i["error"] for i in listing.invalid if i["id"] == p["backup_id"]), None)
            raise BackupError(f"no complete backup {p['backup_id']} of {where}" + (f": {bad}" if bad else ""))
    p["backup_path"] = chosen.path
    for key in ("target_db", "keep_as", "lock_owner"):
        if p[key]:
            p[key] = p[key].replace("{id}", chosen.id)
    result.update(backup_path=chosen.path, target_db=p["target_db"], keep_as=p["keep_as"])


def manifest_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "database", "created_at", "verified_at", "format", "server_version", "system_identifier",
            "toc_entries", "migration_tool", "migration_revision", "size_bytes")
    summary = {k: manifest.get(k) for k in keys}
    summary["tables"] = len(manifest.get("tables") or [])
    return summary


def read_backup(module: AnsibleModule, result: dict[str, Any]) -> dict[str, Any]:
    """The backup's valid manifest; BackupError when the path is not a complete backup."""
    path = os.path.normpath(module.params["backup_path"])
    backup_id = os.path.basename(path)
    problem = check_id(backup_id)
    if problem:
        raise BackupError(f"{path} is not a backup directory: {problem}")
    manifest = read_manifest(path, backup_id=backup_id)
    result.update(backup_id=backup_id, manifest=manifest_summary(manifest))
    return manifest


def check_backup(module: AnsibleModule, result: dict[str, Any], manifest: dict[str, Any], pg_restore: str) -> str:
    """Check the files and the archive's TOC against the manifest; return the archive. BackupError if they differ."""
    path = os.path.normpath(module.params["backup_path"])
    try:
        on_disk = tree_files(path, digests=module.params["verify_checksums"])
    except OSError as exc:
        raise BackupError(f"cannot read the backup {path}: {exc}") from exc
    problems = compare_files(manifest["files"], on_disk)
    if problems:
        raise BackupError(f"the backup {path} is not as its manifest says: {describe_problems(problems)}")
    archive = os.path.join(path, manifest["archive"])
    toc = read_toc(module, pg_restore, archive, expect_format=ARCHIVE_HEADER_FORMATS[manifest["format"]])
    result["toc_entries"] = toc.count
    if toc.count != manifest["toc_entries"]:
        raise BackupError(f"pg_restore --list lists {toc.count} TOC entries in {archive}, the manifest "
                          f"{manifest['toc_entries']}: this is not the archive the backup verified")
    return archive


def database_oids(conn: Any, names: list[str]) -> dict[str, int]:
    rows = conn.execute("SELECT datname, oid::int8 AS oid FROM pg_catalog.pg_database WHERE datname = ANY(%s)",
                        [names]).fetchall()
    return {r["datname"]: r["oid"] for r in rows}


def read_like(conn: Any, name: str) -> dict[str, Any]:
    """Properties, ACL items (None when the ACL is the default) and settings of database name."""
    props = conn.execute(like_database_sql(conn.info.server_version), [name]).fetchone()
    if props is None:
        raise RestoreFailure(f"database {name!r} does not exist")
    like = dict(props)
    default = conn.execute(ACL_IS_DEFAULT_SQL, [name]).fetchone()["is_default"]
    like["acl"] = [dict(r) for r in conn.execute(ACL_SQL, [name]).fetchall()]
    like["acl_items"] = None if default else like["acl"]
    like["settings"] = [dict(r) for r in conn.execute(SETTINGS_SQL, [name]).fetchall()]
    return like


def like_statements(target: str, like: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(CREATE DATABASE, the statements run in one transaction after it) that make target like like_db."""
    post: list[Any] = []
    if like["acl_items"] is not None:
        post += acl_statements(target, like["owner"], like["acl_items"])
    post += settings_statements(target, like["settings"])
    post += comment_statement(target, like["comment"])
    return create_database_statement(target, like), post


def compare_with_like(conn: Any, target: str, like: dict[str, Any]) -> list[dict[str, Any]]:
    mine = read_like(conn, target)
    return [
        compare_properties(like, mine),
        compare_sets("database_acl", like["acl"], mine["acl"], "database privileges"),
        compare_sets("database_settings", flatten_settings(like["settings"]), flatten_settings(mine["settings"]),
                     "database settings"),
    ]


def first_line(exc: BaseException, params: dict[str, Any]) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__, params)


def read_record(conn: Any, path: str, target: str, manifest: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the swap record of path when it vouches for target as swapped in from this backup, why not)."""
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        return None, f"there is no swap record {path}"
    except (OSError, ValueError) as exc:
        return None, f"the swap record {path} cannot be read: {exc}"
    oid = database_oids(conn, [target]).get(target)
    identifier = conn.execute(SYSTEM_IDENTIFIER_SQL).fetchone()["system_identifier"]
    problem = record_problem(record, database=target, oid=oid, backup_id=manifest["id"], system_identifier=identifier)
    return (None, problem) if problem else (record, "")


def read_since(tconn: Any, record: dict[str, Any], tables: list[dict[str, Any]], count: bool) -> dict[str, Any]:
    """In tconn's snapshot: each table's rows (when count) and the check that nothing was written since the swap.

    One scan per table gives both the count and the rows whose xmin is after the swap's transaction.
    """
    row = tconn.execute(horizon_sql(tconn.info.server_version), [str(record["xid"] % 2 ** 32)]).fetchone()
    problem = horizon_problem(int(row["next_xid"]), record["xid"])
    if problem:
        if count:
            count_rows(tconn, tables)
        return check("unchanged_since_swap", False, f"cannot tell whether anything was written since: {problem}")
    written = {}
    for table in tables:
        query = sql.SQL(WRITTEN_SQL).format(sql.Identifier(table["schema"], table["name"]))
        found = tconn.execute(query, [row["swap_age"]]).fetchone()
        if count:
            table["rows"] = int(found["n"])
        written[f"{table['schema']}.{table['name']}"] = int(found["written"])
    objects = [r["name"] for r in tconn.execute(CHANGED_OBJECTS_SQL, {"age": row["swap_age"]}).fetchall()]
    return compare_unchanged(written, objects, record)


def verify(module: AnsibleModule, conn: Any, manifest: dict[str, Any], like: dict[str, Any] | None,
           target: str | None = None, record_path: str | None = None) -> list[dict[str, Any]]:
    """Every check of target (default target_db) against the manifest, like_db and smoke_sql, and with
    record_path that nothing was written since its swap; the checks, failed ones included."""
    p = module.params
    target = target or p["target_db"]
    checks = compare_with_like(conn, target, like) if like else []
    record, why = read_record(conn, record_path, target, manifest) if record_path else (None, "")
    tconn, err = connect(module, dbname=target, autocommit=False)
    if err:
        return checks + [check("connect", False, err)]
    try:
        # One snapshot for every count, read-only so that verification cannot change what it verifies.
        tconn.isolation_level = IsolationLevel.REPEATABLE_READ
        tconn.read_only = True
        count = p["verify_row_counts"] and any(t.get("rows") is not None for t in manifest["tables"])
        since = None
        if record is not None:
            tables = list_tables(tconn, "exact" if count else "none")
            since = read_since(tconn, record, tables, count)
        else:
            tables = read_tables(tconn, "exact" if count else "none")
        tool, revision, warning = read_migration(tconn)
        tconn.rollback()
        checks += compare_tables(manifest["tables"], tables, count_rows=count)
        if record_path and since is None:
            since = check("unchanged_since_swap", False, f"cannot tell whether anything was written since: {why}")
        if since is not None:
            checks.append(since)
        checks.append(compare_migration(manifest, tool, revision, redact(warning, p) if warning else None))
        for n, statement in enumerate(p["smoke_sql"], 1):
            checks.append(smoke(module, tconn, n, statement))
    finally:
        tconn.close()
    return checks


def smoke(module: AnsibleModule, tconn: Any, n: int, statement: str) -> dict[str, Any]:
    """Run one smoke_sql statement in its own read-only transaction, always rolled back."""
    try:
        cur = tconn.cursor(row_factory=tuple_row)
        cur.execute(statement)
        rows = cur.fetchall() if cur.description is not None else []
        ok, what = evaluate_smoke(rows)
    except PsycopgError as exc:
        ok, what = False, f"failed: {first_line(exc, module.params)}"
    finally:
        tconn.rollback()
    entry = check(f"smoke_sql {n}", ok, what, True, what)
    entry["sql"] = statement
    return entry


def drop_target(module: AnsibleModule, conn: Any, target: str, oid: int) -> tuple[bool, str | None]:
    """Drop the target this run created: (dropped, problem). Never a database of that name with another oid."""
    try:
        if conn.closed or conn.broken:
            conn, err = connect(module, autocommit=True)
            if err:
                return False, err
        now = database_oids(conn, [target]).get(target)
        if now is None:
            return False, None
        if now != oid:
            return False, f"{target} now has oid {now}, not {oid} as created by this run: left alone"
        ident = sql.Identifier(target)
        if conn.info.server_version >= 130000:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(ident))
        else:
            conn.execute("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_catalog.pg_backend_pid()", [target])
            conn.execute(sql.SQL("DROP DATABASE {}").format(ident))
        return True, None
    except PsycopgError as exc:
        return False, first_line(exc, module.params)


def took_the_name(module: AnsibleModule, conn: Any, like_db: str, oid: int) -> bool:
    """Whether like_db is now the database this run created (oid): a swap whose COMMIT failed may have committed."""
    fresh = None
    try:
        if conn.closed or conn.broken:
            fresh, err = connect(module, autocommit=True)
            if err:
                return False
        return database_oids(fresh or conn, [like_db]).get(like_db) == oid
    except PsycopgError:
        return False
    finally:
        if fresh is not None:
            fresh.close()


def restore(module: AnsibleModule, result: dict[str, Any], conn: Any, manifest: dict[str, Any],
            like: dict[str, Any], create: Any, post: list[Any], argv: list[str], created: dict[str, int]) -> str | None:
    """Create the target, restore and verify it; the cause of a failure, or None.

    created["oid"] is set as soon as the target exists, so that the caller drops it whatever happens next.
    """
    p = module.params
    target = p["target_db"]
    started = time.monotonic()
    try:
        # CREATE DATABASE cannot run inside a transaction block; the rest runs in one.
        conn.execute(create)
        created["oid"] = database_oids(conn, [target])[target]
        with conn.transaction():
            for statement in post:
                conn.execute(statement)
        password = p["login_password"]
        rc, _out, err = run_tool(module, argv, {"PGPASSWORD": password} if password else None)
        result["restore_s"] = round(time.monotonic() - started, 3)
        output = parse_restore_stderr(redact(err, p))
        result["restore_warnings"] = output.warnings
        cause = restore_failure(rc, output)
        if cause:
            return cause
        for line in output.warnings:
            module.warn(line)
        started = time.monotonic()
        checks = verify(module, conn, manifest, like)
        result.update(verify_s=round(time.monotonic() - started, 3), checks=checks,
                      failed_checks=[c["name"] for c in failed_checks(checks)])
        if result["failed_checks"]:
            return f"verification of {target} failed: {describe_failures(checks)}"
        return None
    except PsycopgError as exc:
        return f"PostgreSQL error while restoring into {target}: {first_line(exc, p)}"
    except (BackupError, OSError) as exc:
        return redact(str(exc), p)


def take_lock(module: AnsibleModule, result: dict[str, Any]) -> None:
    """check_only, every guard passed: take the restore lock (read it only, in check mode); fail naming its holder."""
    p = module.params
    path = p["lock_path"]
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(directory) and not module.check_mode:
            # the state directory of a database restored here for the first time (restore_state_dir)
            os.makedirs(directory, mode=0o700)
        result["lock"] = acquire(path, owner=p["lock_owner"], user=current_user(), token=None,
                                 break_after=break_after_seconds(p["lock_break_after"]), check_mode=module.check_mode)
    except LockError as err:
        result["lock"] = err.result
        raise RestoreFailure(f"the restore lock {err}. Nothing was changed.") from err
    except ValueError as err:
        raise RestoreFailure(f"lock_break_after: {err}") from err
    except OSError as err:
        raise RestoreFailure(os_error_message(path, err)) from err
    result["changed"] = result["lock"]["changed"]


def guard(module: AnsibleModule, result: dict[str, Any], conn: Any, manifest: dict[str, Any],
          present: dict[str, int]) -> None:
    """check_only: refuse what the restore must not do, all problems in one message; else say whether like_db
    holds the backup already (keep_as exists and like_db verifies, unchanged since its swap) and exit."""
    p = module.params
    target, like_db, keep_as = p["target_db"], p["like_db"], p["keep_as"]
    ours = conn.execute(SYSTEM_IDENTIFIER_SQL).fetchone()["system_identifier"]
    theirs = manifest.get("system_identifier")
    result.update(system_identifier=ours, already_restored=False, keep_as_exists=bool(keep_as and keep_as in present))
    problems = []
    if like_db not in present:
        problems.append(f"database {like_db} does not exist: the restore replaces an existing database (create an "
                        "empty one, owned by the application, to restore onto a new server)")
    if (theirs is None or ours is None) and not p["allow_other_cluster"]:
        # unknown on either side proves nothing: two unknowns must not pass for the same cluster
        problems.append(f"cannot tell whether backup {manifest['id']} was taken on this cluster ("
                        + ("its manifest records no system identifier" if theirs is None else
                           "this login may not read pg_control_system()") + "): once you know it is the right "
                        "one, allow another cluster (allow_other_cluster)")
    elif theirs != ours and not p["allow_other_cluster"]:
        problems.append(f"backup {manifest['id']} was taken on cluster {theirs}, this is cluster {ours}: to restore it "
                        "onto another server (disaster recovery), allow another cluster (allow_other_cluster)")
    if target in present:
        problems.append(f"database {target} exists (left by a restore that died, or kept by a rollback after the "
                        "swap: it may hold writes, check it first): drop it first")
    if problems:
        raise RestoreFailure("; ".join(problems) + ". Nothing was changed.")
    if not result["keep_as_exists"]:
        if p["lock_path"]:
            take_lock(module, result)
        result["msg"] = (f"backup {manifest['id']} can be restored into {target} and take the place of {like_db}"
                         + (f"; {result['lock']['msg']}" if "lock" in result else ""))
        module.exit_json(**result)
    # restored here before: like_db holds the backup still only when it verifies and nothing was written since
    started = time.monotonic()
    checks = verify(module, conn, manifest, read_like(conn, keep_as), target=like_db, record_path=p["swap_record"])
    failed = failed_checks(checks)
    result.update(verify_s=round(time.monotonic() - started, 3), checks=checks, failed_checks=[c["name"] for c in failed],
                  already_restored=not failed)
    result["msg"] = (f"{like_db} holds backup {manifest['id']} already ({len(checks)} checks passed)" if not failed
                     else f"{like_db} does not hold backup {manifest['id']} as restored: {describe_failures(checks)}")
    module.exit_json(**result)


def swap_in(module: AnsibleModule, result: dict[str, Any], conn: Any, manifest: dict[str, Any]) -> str | None:
    """swap: target_db takes like_db's name, like_db is kept as keep_as (pg_swap, as pg_database_swap does it);
    then the guards' lock is released (lock_token). The cause of a failure, or None."""
    p = module.params
    opts = SwapOptions(live=p["like_db"], replacement=p["target_db"], keep_as=p["keep_as"],
                       maintenance_db=p["login_db"], record_path=p["swap_record"],
                       record_data={"backup_id": manifest["id"]})
    swapped: dict[str, Any] = {"swapped": False}
    result["swap"] = swapped
    started = time.monotonic()
    try:
        plan = prepare(module, conn, opts, swapped)
        if plan is None:
            raise SwapFailure(f"{p['target_db']} is gone and {p['keep_as']} exists: not the state a restore leaves")
        execute(module, conn, opts, plan, swapped)
    except (SwapFailure, PsycopgError) as exc:
        result["swapped"] = swapped["swapped"]
        return f"the swap of {p['target_db']} into the place of {p['like_db']} failed: {first_line(exc, p)}"
    finally:
        result["swap_s"] = round(time.monotonic() - started, 3)
    result["swapped"] = True
    result["msg"] += f"; {swapped['msg']}"
    if p["lock_token"]:
        try:
            swapped["lock"] = release(p["lock_path"], token=p["lock_token"], force=False)
        except (LockError, OSError) as exc:
            module.warn(f"the swap is done, but the restore lock {p['lock_path']} could not be released: {exc}")
    return None


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("backup_path", "backup_dir")],
                           mutually_exclusive=[("backup_path", "backup_dir")])
    p = module.params
    verify_only = p["verify_only"]
    result: dict[str, Any] = {"changed": False, "target_db": p["target_db"], "like_db": p["like_db"],
                              "verify_only": verify_only, "dropped": False, "swapped": False}
    manifest: dict[str, Any] = {}
    pg_restore = archive = None
    try:
        choose_backup(module, result)
        check_options(module, result)
        manifest = read_backup(module, result)
        if not verify_only:
            pg_restore = restore_tool(module, p["bindir"], manifest)
            archive = check_backup(module, result, manifest, pg_restore)
            if p["check_only"] and not (manifest.get("data_checked") or manifest.get("verified_at")):
                # the data was never read back (by pg_backup's check_data, or a verification): the checksums only
                # say the files are as written, so read it back once; else they prove it reads as it did then
                read_back(module, pg_restore, archive)
    except BackupError as exc:
        module.fail_json(msg=redact(str(exc), p), **result)

    conn, err = connect(module, autocommit=True)
    if err:
        module.fail_json(msg=err, **result)
    try:
        run(module, result, conn, manifest, archive, pg_restore)
    finally:
        if not conn.closed:
            conn.close()


def run(module: AnsibleModule, result: dict[str, Any], conn: Any, manifest: dict[str, Any], archive: str | None,
        pg_restore: str | None) -> None:
    p = module.params
    target, like_db = p["target_db"], p["like_db"]
    create, post = None, []
    try:
        present = database_oids(conn, [n for n in (target, like_db, p["keep_as"]) if n])
        if p["check_only"]:
            guard(module, result, conn, manifest, present)
        if like_db and like_db not in present:
            raise RestoreFailure(f"like_db {like_db!r} does not exist")
        like = read_like(conn, like_db) if like_db else None
        if p["verify_only"]:
            if target not in present:
                raise RestoreFailure(f"target_db {target!r} does not exist: nothing to verify")
            started = time.monotonic()
            checks = verify(module, conn, manifest, like, record_path=p["swap_record"])
            result.update(verify_s=round(time.monotonic() - started, 3), checks=checks,
                          failed_checks=[c["name"] for c in failed_checks(checks)])
            if result["failed_checks"]:
                raise RestoreFailure(f"verification of {target} failed: {describe_failures(checks)}")
            result["msg"] = f"{target} holds backup {manifest['id']} ({len(checks)} checks passed)"
            module.exit_json(**result)
        if target in present:
            raise RestoreFailure(f"target_db {target!r} already exists; this module never overwrites a database: "
                                 "restore into a new name, or drop it yourself first")
        create, post = like_statements(target, like)
        result["statements"] = [s.as_string(conn) for s in [create] + post]
    except RestoreFailure as exc:
        module.fail_json(msg=redact(str(exc), p), **result)
    except (PsycopgError, ValueError) as exc:
        doing = f"verifying {target}" if p["verify_only"] else f"planning the restore into {target}"
        module.fail_json(msg=f"error while {doing}: {first_line(exc, p)}", **result)

    argv = restore_argv(pg_restore, connection=conninfo(conn_params(p, target)), archive=archive, jobs=p["jobs"],
                        no_owner=p["no_owner"], no_privileges=p["no_privileges"])
    result["argv"] = argv
    result["changed"] = True
    if module.check_mode:
        result["msg"] = (f"would restore backup {manifest['id']} into a new database {target} like {like_db}"
                         + (f", then put it in the place of {like_db}, keeping {like_db} as {p['keep_as']}"
                            if p["swap"] else ""))
        module.exit_json(**result)

    created: dict[str, int] = {}
    try:
        cause = restore(module, result, conn, manifest, like, create, post, argv, created)
    except Exception as exc:  # a bug must not leave a half-restored target behind either
        cause = f"unexpected error while restoring into {target}: {first_line(exc, p)}"
        result["exception"] = traceback.format_exc()
    oid = created.get("oid")
    if cause is None:
        total = result.get("restore_s", 0) + result.get("verify_s", 0)
        result["msg"] = (f"restored backup {manifest['id']} into {target} ({len(manifest['tables'])} tables, "
                         f"{len(result['checks'])} checks) in {total:.1f}s")
        if not p["swap"]:
            module.exit_json(**result)
        cause = swap_in(module, result, conn, manifest)
        if cause is None:
            module.exit_json(**result)
        if not result["swapped"] and oid is not None and took_the_name(module, conn, like_db, oid):
            # the connection died with the COMMIT in flight, and it had committed: the caller must swap back
            result["swapped"] = True
            cause += f"; but the swap had committed: {like_db} is the restored database now"
        if result["swapped"]:
            # committed: target_db holds the name like_db now; the caller swaps back, nothing is dropped here
            module.fail_json(**{**result, "msg": redact(cause, p)})
    result["changed"] = oid is not None
    if oid is not None and not p["keep_failed"]:
        dropped, problem = drop_target(module, conn, target, oid)
        result["dropped"] = dropped
        cause += f"; the target {target} was dropped" if dropped else (
            f"; the target {target} could NOT be dropped: {problem}" if problem else "")
    elif oid is not None:
        cause += f"; the target {target} was kept (keep_failed=true)"
    # result["msg"] may hold the restore's success line already (a swap that failed after it)
    module.fail_json(**{**result, "msg": redact(cause, p)})


if __name__ == "__main__":
    main()
