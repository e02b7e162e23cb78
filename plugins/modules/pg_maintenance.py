#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""VACUUM, ANALYZE and REINDEX the tables of one database that need it."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_maintenance
short_description: VACUUM, ANALYZE or REINDEX the PostgreSQL tables and indexes that cross thresholds
version_added: 0.1.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Reads C(pg_stat_user_tables) and the catalog statistics of one database (O(login_db)), decides which tables
    (or, for a REINDEX, which indexes) need the operation and runs it on them, one statement each, each in its own
    session-level autocommit transaction (VACUUM and REINDEX CONCURRENTLY cannot run inside a transaction block).
  - "A table needs a VACUUM when it has at least O(min_dead_tuples) dead tuples B(and) its dead-tuple ratio
    C(n_dead_tup / (n_live_tup + n_dead_tup)) is at least O(dead_ratio), or when its last (auto)vacuum is older
    than O(vacuum_max_age)."
  - "A table needs an ANALYZE when at least O(min_mod_tuples) rows changed since its last analyze B(and) they
    are at least O(mod_ratio) of its live rows, or when its last (auto)analyze is older than O(analyze_max_age).
    O(operation=vacuum_analyze) runs C(VACUUM (ANALYZE)) on the tables that need either."
  - "Estimated bloat comes from the catalog statistics alone, without any extension. For a table: the pages that
    C(pg_class.reltuples) rows would take, each the average row width (C(avg_width) and C(null_frac) of its columns
    in C(pg_stats)) plus the tuple header and line pointer, packed to the table's fillfactor under the page header,
    against its C(pg_class.relpages). For a btree index: likewise from the widths of the columns it stores (keys,
    expressions, C(INCLUDE)), its own C(reltuples), the btree page overhead, a metapage and fillfactor 90 unless set.
    Bloat is the real size minus that, in bytes and as a share of the real size. Without statistics (no ANALYZE
    yet) there is no estimate, and nothing crosses."
  - "An index needs a REINDEX when its estimated bloat is at least O(bloat_ratio) of its size B(and) at least
    O(min_bloat_bytes). O(operation=reindex) rebuilds each such index with C(REINDEX INDEX CONCURRENTLY) (plain
    C(REINDEX INDEX) before PostgreSQL 12), so that the other indexes of the same table are left alone. Only btree
    indexes have an estimate; indexes of exclusion constraints are reported in RV(bloated) but never chosen, since
    REINDEX CONCURRENTLY refuses them; invalid indexes (left by a failed CONCURRENTLY build) are never chosen."
  - "With O(full=true), a table also needs its VACUUM FULL when its own estimated bloat crosses the
    same two thresholds. A plain VACUUM does not shrink a table (it makes the space reusable, the table keeps its
    size), so bloat is never a reason for it: the table would still cross after it and every run would change it
    again. Bloat is reported for every operation instead, in RV(bloated) and in each table's figures."
  - With O(tables), only the listed tables are candidates and the thresholds still decide, unless O(force=true),
    which runs the operation on every listed table; for O(operation=reindex) that is C(REINDEX TABLE CONCURRENTLY)
    (every index of the table). A listed table that does not exist is one error and nothing runs.
  - Idempotent. VACUUM resets C(n_dead_tup), ANALYZE resets C(n_mod_since_analyze), and a REINDEX or VACUUM FULL
    writes the relation packed, so its estimated bloat falls to a few percent; a table or index just done no
    longer crosses and a second run changes nothing (a forced run changes every time). The module re-reads the
    figures after acting (polling briefly until the statistics show the new run) and returns them.
  - Identifiers are quoted by C(psycopg.sql.Identifier); values are passed as parameters. A table named
    C(x"; DROP TABLE y; --) is vacuumed as that table.
  - Schemas C(pg_catalog), C(information_schema), C(pg_toast) and the temporary schemas are never touched.
options:
  operation:
    description:
      - What to run on the tables that need it. V(vacuum) runs C(VACUUM), V(vacuum_analyze) C(VACUUM (ANALYZE)),
        V(analyze) C(ANALYZE), V(reindex) C(REINDEX INDEX [CONCURRENTLY]) on the indexes whose estimated bloat
        crosses O(bloat_ratio) and O(min_bloat_bytes) (C(REINDEX TABLE [CONCURRENTLY]) on the listed O(tables)
        with O(force=true)).
      - V(vacuum_analyze) is the seed runbooks' C(VACUUM ANALYZE).
    type: str
    choices: [vacuum, vacuum_analyze, analyze, reindex]
    default: vacuum_analyze
  tables:
    description:
      - Restrict the work to these tables, as C(schema.table) (a bare name is in schema C(public)). For
        O(operation=reindex), to the indexes of these tables.
      - Names are matched as stored, without case folding. A part that starts with a double quote is a quoted
        identifier (C("my.schema"."Orders"), with C("") for a quote); otherwise the schema is everything before the
        first dot and the table everything after it.
      - Every listed table must exist, or the module fails before running anything.
    type: list
    elements: str
    default: []
  force:
    description:
      - Run the operation on every listed O(tables) even when it crosses no threshold. With O(operation=reindex)
        this is C(REINDEX TABLE [CONCURRENTLY]), which rebuilds every index of each listed table.
      - Without O(tables) it has no effect.
    type: bool
    default: false
  full:
    description:
      - Run C(VACUUM FULL) instead of C(VACUUM). It rewrites each table and takes an B(ACCESS EXCLUSIVE) lock on it
        for the whole rewrite (no reads, no writes), and needs free disk space for a full copy of the table and its
        indexes. Requires O(allow_full=true) as well.
      - A table then also needs it when its estimated bloat crosses O(bloat_ratio) and O(min_bloat_bytes).
      - VACUUM FULL leaves C(n_dead_tup) and C(last_vacuum) as they were, so the module always runs it as
        C(VACUUM (FULL, ANALYZE)), whose ANALYZE refreshes the figures.
    type: bool
    default: false
  allow_full:
    description: The explicit confirmation O(full=true) needs. Without it O(full=true) is an error and nothing runs.
    type: bool
    default: false
  dead_ratio:
    description:
      - Dead tuples per tuple (0 to 1) at or above which a table needs a VACUUM, together with O(min_dead_tuples).
      - The default 0.1 is not from the seed runbooks (they vacuum everything); it is half of autovacuum's
        C(autovacuum_vacuum_scale_factor) of 0.2, so this catches what autovacuum has not reached yet.
    type: float
    default: 0.1
  min_dead_tuples:
    description:
      - Dead tuples at or above which a table needs a VACUUM, together with O(dead_ratio). Keeps small tables out.
      - The default 1000 is not from the seed runbooks.
    type: int
    default: 1000
  mod_ratio:
    description:
      - Rows changed since the last analyze per live row at or above which a table needs an ANALYZE, together
        with O(min_mod_tuples). The default 0.1 is not from the seed runbooks (autovacuum's own is 0.1).
    type: float
    default: 0.1
  min_mod_tuples:
    description: Rows changed since the last analyze at or above which a table needs an ANALYZE, together with O(mod_ratio).
    type: int
    default: 1000
  bloat_ratio:
    description:
      - Estimated bloat as a share of the relation's size (0 to 1) at or above which an index needs a REINDEX
        (O(operation=reindex)) and, with O(full=true), a table needs a VACUUM FULL; together with O(min_bloat_bytes).
      - "The default 0.5 (the relation is twice the size a packed copy would take) is not from the seed runbooks.
        The estimate is rough (alignment padding between columns can make a packed table read tens of percent
        bloated) and a rebuild is heavy (I/O, disk for a copy, for VACUUM FULL an exclusive lock), so only clear
        cases qualify; a relation just rebuilt reads a few percent, far below, so the second run changes nothing."
    type: float
    default: 0.5
  min_bloat_bytes:
    description:
      - Estimated bloat in bytes at or above which an index needs a REINDEX and, with O(full=true), a table a VACUUM
        FULL; together with O(bloat_ratio).
      - "The default 10485760 (10 MiB) is not from the seed runbooks. It keeps small relations out: on a few pages
        the estimate's rounding alone (the metapage, a partly filled last page) is a large share, and rebuilding them
        gives back nothing worth the rebuild."
    type: int
    default: 10485760
  vacuum_max_age:
    description:
      - A table whose last VACUUM or autovacuum is older than this (or that was never vacuumed) needs a VACUUM,
        whatever its dead tuples. A duration such as C(7d), C(12h) or seconds. Empty disables the rule.
    type: str
    default: ''
  analyze_max_age:
    description: Like O(vacuum_max_age), for the last ANALYZE or autoanalyze. Empty disables the rule.
    type: str
    default: ''
  lock_timeout:
    description:
      - Session C(lock_timeout) as a duration (C(10s), C(1m), seconds). A statement that waits longer for its table
        lock fails, that table is reported, and the module goes on with the next table. V(0) waits forever.
      - The default C(10s) is not from the seed runbooks; it keeps a VACUUM FULL from queueing every reader of a
        busy table behind it.
    type: str
    default: 10s
  statement_timeout:
    description: Session C(statement_timeout) as a duration. V(0) (the default) sets no limit.
    type: str
    default: '0'
  jobs:
    description:
      - Sessions that run the statements in parallel, each taking the largest table (or index) left (like
        C(vacuumdb -j)). The first session starts at once; each other one connects in its own thread while the first
        statements run, and one that cannot connect leaves its share to the others (with a warning).
      - More sessions finish sooner and load the server more (I/O, and C(maintenance_work_mem) each).
    type: int
    default: 1
extends_documentation_fragment:
  - runbook.ops.pg
attributes:
  check_mode:
    support: full
    description: >-
      Reads the figures and estimates for real, runs nothing, and returns the tables (and indexes) and the exact
      statements it would run.
  diff_mode:
    support: none
    description: The module returns the statements and the figures before and after instead of a diff.
notes:
  - The login needs to own the tables or be a superuser (PostgreSQL 15), or have C(pg_maintain) (PostgreSQL 17+).
    VACUUM and ANALYZE skip, with a warning in the server log, tables the login may not process. The bloat
    estimate needs to read C(pg_stats), which shows only the columns the login may read.
  - One database per call; loop over databases in the playbook.
  - "The bloat estimate does not see alignment padding between columns (a packed table with mixed 4- and 8-byte
    columns reads somewhat bloated), btree deduplication (PostgreSQL 13+: an index with many duplicates reads less
    bloated than it is), internal btree pages, nor TOAST (a table's estimate covers its main heap only). The
    extension pgstattuple measures exactly, at the cost of reading every page."
  - REINDEX CONCURRENTLY blocks neither reads nor writes, but needs disk for a second copy of the index while it
    runs; one that fails leaves an invalid index named C(*_ccnew), which this module never chooses (drop it).
seealso:
  - name: PostgreSQL VACUUM
    description: What VACUUM, VACUUM FULL and ANALYZE do and the locks they take.
    link: https://www.postgresql.org/docs/current/sql-vacuum.html
  - name: PostgreSQL REINDEX
    description: REINDEX INDEX and TABLE, CONCURRENTLY and its limits.
    link: https://www.postgresql.org/docs/current/sql-reindex.html
  - name: Routine vacuuming
    description: Why dead tuples need vacuuming and how autovacuum decides.
    link: https://www.postgresql.org/docs/current/routine-vacuuming.html
"""

EXAMPLES = r"""
- name: VACUUM ANALYZE the tables of app that need it (the seed runbooks' VACUUM ANALYZE)
  runbook.ops.pg_maintenance:
    login_host: 127.0.0.1
    login_user: runbook_admin
    login_password: "{{ runbook_pg_password }}"
    login_db: app
  register: maintenance

- name: Plan only (check mode) - which tables, which statements, and what is bloated
  runbook.ops.pg_maintenance:
    login_db: app
    operation: vacuum
    dead_ratio: 0.2
    min_dead_tuples: 10000
  check_mode: true
  register: plan

- name: Show the relations whose estimated bloat a plain VACUUM would not give back
  ansible.builtin.debug:
    msg: "{{ item.name }} {{ item.index or '(table)' }}: {{ (item.bloat_ratio * 100) | round(1) }}%"
  loop: "{{ plan.bloated }}"

- name: ANALYZE tables not analyzed for a week
  runbook.ops.pg_maintenance:
    login_db: app
    operation: analyze
    analyze_max_age: 7d

- name: VACUUM ANALYZE one table whatever its figures (seed "VACUUM ANALYZE documents")
  runbook.ops.pg_maintenance:
    login_db: app
    tables: [public.documents]
    force: true

- name: Rebuild, without blocking writes, every index estimated at least 30% and 100 MiB bloated
  runbook.ops.pg_maintenance:
    login_db: app
    operation: reindex
    bloat_ratio: 0.3
    min_bloat_bytes: 104857600

- name: Rebuild every index of one table whatever its bloat (REINDEX TABLE CONCURRENTLY)
  runbook.ops.pg_maintenance:
    login_db: app
    operation: reindex
    tables: [public.orders]
    force: true

- name: VACUUM FULL a table with many dead tuples or at least half of it bloated (ACCESS EXCLUSIVE lock)
  runbook.ops.pg_maintenance:
    login_db: app
    tables: [public.events]
    full: true
    allow_full: true
    lock_timeout: 5s
"""

RETURN = r"""
database:
  description: The database worked in.
  returned: always
  type: str
  sample: app
server_version:
  description: The server's version number (C(server_version_num)).
  returned: success
  type: int
  sample: 150018
operation:
  description: The operation.
  returned: always
  type: str
  sample: vacuum_analyze
statements:
  description: The statements run, or in check mode the statements that would run, in order.
  returned: success
  type: list
  elements: str
  sample: ['VACUUM (ANALYZE) "public"."orders"', 'REINDEX INDEX CONCURRENTLY "public"."orders_pkey"']
tables:
  description:
    - One entry per statement run (or that would run, in check mode). That is one per table, except for an
      O(operation=reindex) decided by the thresholds, which has one per bloated index (key RV(tables[].index)).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The table as C(schema.table), quoted where needed.
      type: str
      sample: public.orders
    schema:
      description: The schema.
      type: str
    table:
      description: The table name, as stored.
      type: str
    index:
      description: The index rebuilt, as stored (in the table's schema). Only in an entry of a REINDEX INDEX.
      type: str
      returned: for O(operation=reindex) without O(force)
      sample: orders_pkey
    reasons:
      description: The thresholds it crosses (C(listed (force)) for a forced table).
      type: list
      elements: str
      sample:
        - "25000 dead tuples (50.0%; thresholds 1000 and 10.0%)"
        - "index public.orders_pkey: estimated bloat 90.0% (19.3 MiB of 21.4 MiB; thresholds 50.0% and 10.0 MiB)"
    statement:
      description: The statement.
      type: str
      sample: VACUUM (ANALYZE) "public"."orders"
    before:
      description:
        - The table's figures before, from C(pg_stat_user_tables) (C(n_live_tup), C(n_dead_tup), C(dead_ratio),
          C(n_mod_since_analyze), C(last_vacuum), C(last_autovacuum), C(last_analyze), C(last_autoanalyze),
          C(vacuum_age_s), C(analyze_age_s)), C(size_bytes) from C(pg_class.relpages), and its estimated bloat
          C(expected_bytes), C(bloat_bytes), C(bloat_ratio) (C(null) without an estimate, then C(bloat_note) says why).
        - C(indexes), one dict per index of the table with C(name), C(method), C(valid), C(exclusion), C(size_bytes)
          and the same estimate keys (btree indexes only).
      type: dict
    after:
      description: The same figures after the statement. Not in check mode.
      type: dict
      returned: when the statement ran
    bloat_before:
      description:
        - The estimate of what the statement rewrites (the index of a REINDEX INDEX, else the table) before it,
          with C(size_bytes), C(bloat_bytes), C(bloat_ratio) and C(bloat_note).
      type: dict
      sample: {"size_bytes": 22487040, "bloat_bytes": 20234240, "bloat_ratio": 0.8998, "bloat_note": null}
    bloat_after:
      description: The same estimate after the statement. Not in check mode.
      type: dict
      returned: when the statement ran
      sample: {"size_bytes": 2260992, "bloat_bytes": 8192, "bloat_ratio": 0.0036, "bloat_note": null}
    still_crosses:
      description: The thresholds the table (or the index) still crosses after the statement (empty when it is done).
      type: list
      elements: str
      returned: when the statement ran
    duration_s:
      description: Seconds the statement took.
      type: float
      returned: when the statement ran
    error:
      description: The error of a statement that failed (the module then fails after trying every table).
      type: str
      returned: when the statement failed
left_alone:
  description: >-
    Listed tables that cross no threshold (for a reindex, that have no index that crosses) and were left alone.
  returned: success
  type: list
  elements: dict
  sample: [{"name": "public.users", "schema": "public", "table": "users", "reasons": []}]
bloated:
  description:
    - Every candidate table and index whose estimated bloat crosses O(bloat_ratio) and O(min_bloat_bytes), before
      the run and whatever the operation. Only O(operation=reindex) (indexes) and O(full=true) (tables) act on it;
      for the other operations this is the report.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The table as C(schema.table), quoted where needed.
      type: str
    schema:
      description: The schema.
      type: str
    table:
      description: The table name, as stored.
      type: str
    index:
      description: The index name as stored, or C(null) for the table itself.
      type: str
    size_bytes:
      description: The relation's size.
      type: int
    bloat_bytes:
      description: The estimated bloat in bytes.
      type: int
    bloat_ratio:
      description: The estimated bloat as a share of the size (0 to 1).
      type: float
  sample:
    - {"name": "public.events", "schema": "public", "table": "events", "index": null, "size_bytes": 36249600,
       "bloat_bytes": 32620544, "bloat_ratio": 0.8999}
failed_tables:
  description: The tables whose statement failed (the module then fails, after trying every table).
  returned: success, and when a statement failed
  type: list
  elements: str
  sample: []
examined:
  description: How many tables were candidates.
  returned: success
  type: int
  sample: 42
summary:
  description:
    - The plan and its outcome as lines for a report, one per statement (the reasons, then C(->) and the statement;
      after a run also its duration and the figures before C(->) after, or C(FAILED:) and the error), one per listed
      table left alone (or C(nothing to do (N tables examined))), one per bloated table or index that this operation
      leaves as it is, and after a run a last line with RV(timings).
  returned: success, and when a statement failed
  type: list
  elements: str
  sample:
    - 'public.orders: 25000 dead tuples (50.0%; thresholds 1000 and 10.0%) -> VACUUM (ANALYZE) "public"."orders" in
      0.412 s; dead tuples 25000 -> 0, changed rows 25000 -> 0'
    - 'timings: connect 0.012 s, read 0.061 s, statements 0.412 s in 2 session(s), re-read 0.035 s'
timings:
  description:
    - Seconds of each phase, to tell the server's work from the module's own. C(connect_s) the first session,
      C(read_s) the figures and estimates before acting, C(statements_s) the statements (wall clock, all sessions),
      C(sessions) the sessions that ran them, C(reread_s) the figures after. In check mode, or with nothing to do,
      only the first two.
  returned: when connected
  type: dict
  sample: {"connect_s": 0.012, "read_s": 0.061, "statements_s": 0.412, "sessions": 2, "reread_s": 0.035}
"""

import queue
import threading
import time
from typing import Any, Mapping

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_bloat import Estimate, btree_bloat, table_bloat
from ansible_collections.runbook.ops.plugins.module_utils.pg_maintenance_plan import (
    OPERATIONS,
    Thresholds,
    bloated,
    candidates,
    check_options,
    check_thresholds,
    dead_ratio,
    missing_tables,
    parse_table_name,
    plan,
    still_crosses,
    summary_lines,
    target_estimate,
    vacuum_options,
)

try:
    from psycopg import sql
except ImportError:  # reported by connect() through ensure_psycopg()
    sql = None

FIGURES_SQL = """
SELECT s.schemaname AS schema, s.relname AS table,
       s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8 AS vacuum_age_s,
       extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze))::float8 AS analyze_age_s,
       c.relpages::bigint * current_setting('block_size')::bigint AS size_bytes
  FROM pg_stat_user_tables s
  JOIN pg_class c ON c.oid = s.relid
 WHERE c.relkind IN ('r', 'm', 'p')
   AND s.schemaname !~ '^pg_temp_' AND s.schemaname !~ '^pg_toast'
"""
# The constants the estimates need. MAXALIGN is not exposed to SQL to every login (pg_control_init()
# is for superusers and pg_monitor); 64-bit builds, which version() names, align on 8.
SERVER_SQL = """
SELECT current_setting('block_size')::int AS block_size,
       CASE WHEN version() ~ '64-bit|x86_64|amd64|aarch64|ppc64|ia64|mingw32' THEN 8 ELSE 4 END AS maxalign
"""
# What pg_bloat.table_bloat needs per table: the heap's pages and rows, its fillfactor, and its live
# columns' null fraction and average width from pg_stats (count(s.attname) < columns: not analyzed).
TABLE_BLOAT_SQL = """
SELECT n.nspname AS schema, c.relname AS table,
       c.relpages::bigint AS relpages, c.reltuples::float8 AS reltuples,
       (SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o
         WHERE o.option_name = 'fillfactor') AS fillfactor,
       count(a.attnum) AS columns, count(s.attname) AS columns_with_stats,
       coalesce(max(s.null_frac), 0)::float8 AS max_null_frac,
       coalesce(sum((1 - s.null_frac) * s.avg_width), 0)::float8 AS data_width
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                      AND NOT s.inherited
 WHERE c.relkind IN ('r', 'm', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
 GROUP BY n.nspname, c.relname, c.oid, c.relpages, c.reltuples
"""
# The same per index, over every column it stores: a column's statistics are the table's, an
# expression's are filed in pg_stats under the index's own name.
INDEX_BLOAT_SQL = """
SELECT n.nspname AS schema, t.relname AS table, c.relname AS index, am.amname AS method,
       i.indisvalid AS valid, i.indisexclusion AS exclusion,
       c.relpages::bigint AS relpages, c.reltuples::float8 AS reltuples,
       (SELECT o.option_value::int FROM pg_options_to_table(c.reloptions) o
         WHERE o.option_name = 'fillfactor') AS fillfactor,
       k.columns, k.columns_with_stats, k.max_null_frac, k.data_width
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = c.relam
  CROSS JOIN LATERAL (
        SELECT count(*) AS columns, count(s.attname) AS columns_with_stats,
               coalesce(max(s.null_frac), 0)::float8 AS max_null_frac,
               coalesce(sum((1 - s.null_frac) * s.avg_width), 0)::float8 AS data_width
          FROM generate_series(0, i.indnatts - 1) AS k(pos)
          LEFT JOIN pg_attribute ta ON i.indkey[k.pos] <> 0
                                   AND ta.attrelid = i.indrelid AND ta.attnum = i.indkey[k.pos]
          LEFT JOIN pg_attribute ia ON i.indkey[k.pos] = 0
                                   AND ia.attrelid = i.indexrelid AND ia.attnum = k.pos + 1
          LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND NOT s.inherited
                              AND s.tablename = CASE WHEN ta.attname IS NULL THEN c.relname ELSE t.relname END
                              AND s.attname = coalesce(ta.attname, ia.attname)
       ) k
 WHERE c.relkind = 'i' AND t.relkind IN ('r', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
"""
TIMESTAMPS = ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")
ESTIMATE_INPUTS = ("relpages", "reltuples", "columns", "columns_with_stats", "data_width", "max_null_frac",
                   "fillfactor")
# Seconds to wait for the statistics to show a run (immediate from PostgreSQL 15, ~0.5 s before).
STATS_WAIT_S = 3.0


def _inputs(row: Mapping[str, Any], server: Mapping[str, Any]) -> dict[str, Any]:
    return {**{key: row[key] for key in ESTIMATE_INPUTS}, "block_size": server["block_size"],
            "maxalign": server["maxalign"]}


def read_estimates(conn: Any, server: Mapping[str, Any]) -> tuple[dict[tuple[str, str], dict[str, Any]],
                                                                  dict[tuple[str, str], list[dict[str, Any]]]]:
    """Per (schema, table): the table's estimate, and its indexes' (by name) with theirs."""
    tables = {(r["schema"], r["table"]): table_bloat(**_inputs(r, server)).figures()
              for r in conn.execute(TABLE_BLOAT_SQL).fetchall()}
    indexes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in conn.execute(INDEX_BLOAT_SQL).fetchall():
        estimate = btree_bloat(**_inputs(r, server), method=r["method"], valid=r["valid"])
        indexes.setdefault((r["schema"], r["table"]), []).append(
            {"name": r["index"], "method": r["method"], "valid": r["valid"], "exclusion": r["exclusion"],
             **estimate.figures()})
    for found in indexes.values():
        found.sort(key=lambda index: index["name"])
    return tables, indexes


def read_figures(conn: Any, server: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every user table's figures and estimated bloat, its indexes' under "indexes"; a fresh snapshot each time."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(FIGURES_SQL).fetchall()
    tables, indexes = read_estimates(conn, server)
    figures = []
    for row in rows:
        fig = dict(row)
        for key in TIMESTAMPS:
            fig[key] = fig[key].isoformat() if fig[key] is not None else None
        fig["dead_ratio"] = round(dead_ratio(fig["n_live_tup"], fig["n_dead_tup"]), 4)
        key = (fig["schema"], fig["table"])
        # a table created between the two reads has no estimate yet
        fig.update(tables.get(key) or Estimate(size_bytes=fig["size_bytes"] or 0, note="created while read").figures())
        fig["indexes"] = indexes.get(key, [])
        figures.append(fig)
    return figures


def build_statement(operation: str, schema: str, table: str, full: bool, server_version: int,
                    index: str | None = None) -> Any:
    target = sql.Identifier(schema, table)
    if operation == "analyze":
        return sql.SQL("ANALYZE {}").format(target)
    if operation == "reindex":
        # keywords from a fixed list, never from input; an index lives in its table's schema
        kind = sql.SQL("INDEX" if index else "TABLE")
        target = sql.Identifier(schema, index) if index else target
        if server_version >= 120000:
            return sql.SQL("REINDEX {} CONCURRENTLY {}").format(kind, target)
        return sql.SQL("REINDEX {} {}").format(kind, target)
    opts = vacuum_options(operation, full)
    if opts:
        # keywords from a fixed list, never from input
        return sql.SQL("VACUUM ({}) {}").format(sql.SQL(", ").join(sql.SQL(o) for o in opts), target)
    return sql.SQL("VACUUM {}").format(target)


def _ran(before: dict[str, Any], after: dict[str, Any] | None, operation: str, full: bool) -> bool:
    """Whether the statistics show the run: the timestamp the operation sets has moved."""
    if after is None:
        return False
    keys = []
    if operation == "vacuum" and not full:
        keys = ["last_vacuum"]
    elif operation in ("analyze", "vacuum_analyze") or full:
        keys = ["last_analyze"]
    return all(after.get(k) != before.get(k) for k in keys)


def _duration_ms(module: AnsibleModule, name: str) -> str:
    try:
        return str(int(round(to_seconds(module.params[name]) * 1000)))
    except ValueError as err:
        module.fail_json(msg=f"{name}: {err}")
        raise


def _max_age(module: AnsibleModule, name: str) -> float | None:
    value = module.params[name]
    if value in (None, ""):
        return None
    try:
        return to_seconds(value)
    except ValueError as err:
        module.fail_json(msg=f"{name}: {err}")
        raise


def main() -> None:
    argument_spec = pg_argument_spec()
    argument_spec.update(
        operation={"type": "str", "default": "vacuum_analyze", "choices": list(OPERATIONS)},
        tables={"type": "list", "elements": "str", "default": []},
        force={"type": "bool", "default": False},
        full={"type": "bool", "default": False},
        allow_full={"type": "bool", "default": False},
        dead_ratio={"type": "float", "default": 0.1},
        min_dead_tuples={"type": "int", "default": 1000},
        mod_ratio={"type": "float", "default": 0.1},
        min_mod_tuples={"type": "int", "default": 1000},
        bloat_ratio={"type": "float", "default": 0.5},
        min_bloat_bytes={"type": "int", "default": 10485760},
        vacuum_max_age={"type": "str", "default": ""},
        analyze_max_age={"type": "str", "default": ""},
        lock_timeout={"type": "str", "default": "10s"},
        statement_timeout={"type": "str", "default": "0"},
        jobs={"type": "int", "default": 1},
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    operation: str = p["operation"]
    database: str = p["login_db"]
    result: dict[str, Any] = {"changed": False, "database": database, "operation": operation}

    problem = check_options(operation, p["full"], p["allow_full"])
    if problem:
        module.fail_json(msg=problem, **result)
    if p["jobs"] < 1:
        module.fail_json(msg="jobs must be 1 or more", **result)
    try:
        listed = [parse_table_name(t) for t in p["tables"]]
    except ValueError as err:
        module.fail_json(msg=f"tables: {err}", **result)
    thresholds = Thresholds(dead_ratio=p["dead_ratio"], min_dead_tuples=p["min_dead_tuples"], mod_ratio=p["mod_ratio"],
                            min_mod_tuples=p["min_mod_tuples"], vacuum_max_age_s=_max_age(module, "vacuum_max_age"),
                            analyze_max_age_s=_max_age(module, "analyze_max_age"), bloat_ratio=p["bloat_ratio"],
                            min_bloat_bytes=p["min_bloat_bytes"])
    problem = check_thresholds(thresholds)
    if problem:
        module.fail_json(msg=problem, **result)
    lock_ms = _duration_ms(module, "lock_timeout")
    statement_ms = _duration_ms(module, "statement_timeout")

    started = time.monotonic()
    conn, err = connect(module, autocommit=True)
    if err:
        module.fail_json(msg=err, **result)
    result["timings"] = {"connect_s": _since(started)}
    try:
        run(module, conn, result, operation, listed, thresholds, lock_ms, statement_ms)
    except PsycopgError as exc:
        module.fail_json(msg=redact(f"PostgreSQL error in database {database}: {str(exc).strip()}", p), **result)
    finally:
        conn.close()


def set_timeouts(conn: Any, lock_ms: str, statement_ms: str) -> None:
    conn.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                 (lock_ms, statement_ms))


def _error_text(exc: BaseException, params: dict[str, Any]) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__, params)


def _work_size(entry: dict[str, Any]) -> int:
    """The size of what the statement rewrites: the index of a REINDEX INDEX, else the table."""
    return int((entry.get("bloat_before") or {}).get("size_bytes") or entry["before"].get("size_bytes") or 0)


def execute_all(module: AnsibleModule, conn: Any, todo: list[dict[str, Any]], operation: str, full: bool,
                server_version: int, lock_ms: str, statement_ms: str) -> int:
    """Run each entry's statement, recording duration_s and error in the entry; return the sessions used.

    With jobs > 1, that many sessions work in parallel, each taking the largest table (or index) left,
    as vacuumdb -j does. conn starts at once; each other session connects in its own thread, so that
    its connection time overlaps the first statements instead of delaying them.
    """
    work: queue.Queue[dict[str, Any]] = queue.Queue()
    for entry in sorted(todo, key=lambda e: -_work_size(e)):
        work.put(entry)
    used: list[Any] = []  # the sessions that ran at least one statement

    def worker(session: Any) -> None:
        while True:
            try:
                entry = work.get_nowait()
            except queue.Empty:
                return
            if session not in used:
                used.append(session)
            stmt = build_statement(operation, entry["schema"], entry["table"], full, server_version, entry.get("index"))
            start = time.monotonic()
            try:
                session.execute(stmt)
            except PsycopgError as exc:
                entry["error"] = _error_text(exc, module.params)
            entry["duration_s"] = round(time.monotonic() - start, 3)

    def extra_worker() -> None:
        session, err = connect(module, autocommit=True)
        if err:
            # the other sessions take its share of the work
            module.warn(f"jobs: could not open another session, the others do its share: {err}")
            return
        try:
            set_timeouts(session, lock_ms, statement_ms)
            worker(session)
        except PsycopgError as exc:
            module.warn(f"jobs: a session failed, the others do its share: {_error_text(exc, module.params)}")
        finally:
            session.close()

    jobs = max(1, min(module.params["jobs"], len(todo)))
    threads = [threading.Thread(target=extra_worker, daemon=True) for _n in range(jobs - 1)]
    for thread in threads:
        thread.start()
    worker(conn)
    for thread in threads:
        thread.join()
    return len(used)


def run(module: AnsibleModule, conn: Any, result: dict[str, Any], operation: str, listed: list[tuple[str, str]],
        thresholds: Thresholds, lock_ms: str, statement_ms: str) -> None:
    p = module.params
    full = bool(p["full"])
    timings = result["timings"]
    started = time.monotonic()
    set_timeouts(conn, lock_ms, statement_ms)
    server_version = conn.info.server_version
    result["server_version"] = server_version
    server = conn.execute(SERVER_SQL).fetchone()

    figures = read_figures(conn, server)
    by_name = {(f["schema"], f["table"]): f for f in figures}
    missing = missing_tables(listed, list(by_name))
    if missing:
        module.fail_json(msg=f"no such table in database {result['database']}: {', '.join(missing)}; nothing was run",
                         missing=missing, **result)
    todo, skipped = plan(figures, operation, thresholds, listed=listed, force=p["force"], full=full)
    for entry in todo:
        entry["before"] = by_name[(entry["schema"], entry["table"])]
        entry["bloat_before"] = target_estimate(entry, entry["before"])
        entry["statement"] = build_statement(operation, entry["schema"], entry["table"], full, server_version,
                                             entry.get("index")).as_string(conn)
    result.update(tables=todo, left_alone=skipped, examined=len(listed) or len(figures),
                  statements=[e["statement"] for e in todo], failed_tables=[],
                  bloated=bloated(candidates(figures, listed), thresholds))
    timings["read_s"] = _since(started)
    if module.check_mode or not todo:
        result["changed"] = bool(todo)
        result["summary"] = summary_lines(result, operation, full, ran=False)
        module.exit_json(**result)

    started = time.monotonic()
    timings["sessions"] = execute_all(module, conn, todo, operation, full, server_version, lock_ms, statement_ms)
    timings["statements_s"] = _since(started)
    failed = [e for e in todo if "error" in e]
    done = [e for e in todo if "error" not in e]
    result["failed_tables"] = [e["name"] for e in failed]
    result["changed"] = bool(done)

    # The figures after: PostgreSQL 15 shows a VACUUM or ANALYZE at once, older servers after the stats
    # collector's next message (about 0.5 s), so poll briefly until every table done shows its run.
    # A REINDEX shows at once: its estimate is read from pg_class, not from the statistics.
    started = time.monotonic()
    deadline = started + STATS_WAIT_S
    while True:
        after = {(f["schema"], f["table"]): f for f in read_figures(conn, server)}
        if time.monotonic() >= deadline or all(
                _ran(e["before"], after.get((e["schema"], e["table"])), operation, full) for e in done):
            break
        time.sleep(0.1)
    for entry in todo:
        entry["after"] = after.get((entry["schema"], entry["table"]))
        entry["bloat_after"] = target_estimate(entry, entry["after"])
        entry["still_crosses"] = still_crosses(entry, entry["after"], operation, thresholds, full=full)
    timings["reread_s"] = _since(started)
    result["summary"] = summary_lines(result, operation, full, ran=True) + [
        f"timings: connect {timings['connect_s']} s, read {timings['read_s']} s, statements {timings['statements_s']} s "
        f"in {timings['sessions']} session(s), re-read {timings['reread_s']} s"]
    if failed:
        module.fail_json(msg=f"{len(failed)} of {len(todo)} statements failed in database {result['database']}: "
                         + "; ".join(f"{e['name']}: {e['error']}" for e in failed), **result)
    module.exit_json(**result)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


if __name__ == "__main__":
    main()
