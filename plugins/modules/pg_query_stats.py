#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.pg_query_stats: the top statements of pg_stat_statements, and an optional reset."""
from __future__ import annotations

DOCUMENTATION = r"""
module: pg_query_stats
short_description: Report the slowest or busiest statements from pg_stat_statements, optionally reset the statistics
version_added: 0.2.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the diagnosis step of the seed runbooks' C(Slow Database Queries) procedure
    (C(SELECT query, mean_exec_time, calls FROM pg_stat_statements ORDER BY mean_exec_time DESC LIMIT 10)).
  - Returns the top O(limit) statements ordered by O(order_by), each with its calls, mean, total and maximum
    execution time in milliseconds, rows, query text (cut to O(query_max_length)), database and user.
  - When C(pg_stat_statements) cannot be read (the library is not in C(shared_preload_libraries), or the
    extension is not created in O(login_db)), the module does not fail; it returns RV(available=false), a
    message that says what is missing and RV(enable_steps), the steps that enable it.
  - A server that cannot be reached is also a result (RV(available=false) with the error), not a failure.
  - With O(reset=true) it calls C(pg_stat_statements_reset) after reading the statistics (so the result shows
    what was reset) and reports a change. In check mode it reads the statistics, reports RV(would_reset) and
    resets nothing.
extends_documentation_fragment:
  - runbook.ops.pg
options:
  order_by:
    description: The column the statements are ordered by, largest first.
    type: str
    choices: [mean_exec_time, total_exec_time, calls]
    default: mean_exec_time
  limit:
    description: How many statements to return.
    type: int
    default: 10
  filter_database:
    description:
      - Only the statements run in this database. Default, every database (C(pg_stat_statements) covers the
        whole server, whichever database O(login_db) is).
      - Not to be confused with O(login_db) (alias C(database)), the database the module connects to, where the
        extension must be created.
    type: str
  query_max_length:
    description: Query texts are cut to this many characters (the C(truncated) key of each statement in RV(statements) says when).
    type: int
    default: 500
  reset:
    description: Call C(pg_stat_statements_reset) after reading the statistics.
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The statistics are read in check mode too; a reset is only reported (RV(would_reset)), never done.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - C(pg_stat_statements) must be in C(shared_preload_libraries) (a server restart) and created with
    C(CREATE EXTENSION pg_stat_statements) in O(login_db). Without it RV(enable_steps) lists the steps.
  - Other roles' query texts show only to superusers and members of C(pg_read_all_stats); the reset needs a
    superuser or an explicit grant on C(pg_stat_statements_reset).
  - PostgreSQL 13 or later (the C(*_exec_time) columns).
seealso:
  - module: runbook.ops.pg_health
  - name: pg_stat_statements
    description: PostgreSQL documentation.
    link: https://www.postgresql.org/docs/current/pgstatstatements.html
"""

EXAMPLES = r"""
- name: The ten statements with the highest mean time, with the shared inventory login
  module_defaults:
    group/runbook.ops.pg:
      login_host: "{{ runbook_pg_host }}"
      login_port: "{{ runbook_pg_port }}"
      login_user: "{{ runbook_pg_user }}"
      login_password: "{{ runbook_pg_password }}"
      login_db: "{{ runbook_pg_database }}"
      ssl_mode: "{{ runbook_pg_sslmode }}"
  block:
    - name: Read pg_stat_statements
      runbook.ops.pg_query_stats:
      register: slow
      no_log: true

- name: Say how to enable pg_stat_statements when it is missing
  ansible.builtin.debug:
    msg: "{{ slow.msg }}: {{ slow.enable_steps | join('; ') }}"
  when: not slow.available

- name: The busiest statements of database app, then start the statistics afresh
  runbook.ops.pg_query_stats:
    login_host: db1.example.com
    login_user: postgres
    login_password: "{{ vault_pg_password }}"
    order_by: calls
    limit: 20
    filter_database: app
    reset: true
  register: busiest
  no_log: true
"""

RETURN = r"""
available:
  description: Whether pg_stat_statements could be read.
  returned: always
  type: bool
  sample: true
msg:
  description: What was found, or what is missing and how to enable it, or the connection error.
  returned: always
  type: str
  sample: "10 statements ordered by mean_exec_time"
statements:
  description: The top statements, ordered by O(order_by), largest first. Times in milliseconds.
  returned: always
  type: list
  elements: dict
  sample: [{"queryid": 4239487239, "database": "app", "user": "app", "calls": 12, "mean_ms": 812.4,
            "total_ms": 9748.8, "max_ms": 1500.2, "rows": 12, "query": "SELECT * FROM tenders WHERE ...",
            "truncated": false}]
order_by:
  description: The column the statements are ordered by.
  returned: always
  type: str
  sample: mean_exec_time
extension:
  description: What the server has of pg_stat_statements.
  returned: when the server answered
  type: dict
  sample: {"preloaded": true, "installed": true, "version": "1.10", "schema": "public", "available": true}
enable_steps:
  description: How to enable pg_stat_statements; empty when it is enabled.
  returned: always
  type: list
  elements: str
  sample: ["ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements' (keep any libraries already listed)",
           "restart PostgreSQL", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; (in database app)"]
reset:
  description: Whether the statistics were reset.
  returned: always
  type: bool
  sample: false
would_reset:
  description: In check mode with O(reset=true), whether a real run would reset the statistics.
  returned: always
  type: bool
  sample: false
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.pg import PsycopgError, connect, pg_argument_spec, redact, sql

ORDER_COLUMNS = ("mean_exec_time", "total_exec_time", "calls")

SQL_EXTENSION = """
SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
         AS preloaded,
       (SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements') AS version,
       (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_stat_statements') AS schema,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements') AS available,
       current_setting('shared_preload_libraries') AS shared_preload_libraries,
       current_database() AS database"""

SQL_TOP = """
SELECT s.queryid, d.datname AS database, r.rolname AS "user", s.calls,
       round(s.mean_exec_time::numeric, 3)::float8 AS mean_ms,
       round(s.total_exec_time::numeric, 3)::float8 AS total_ms,
       round(s.max_exec_time::numeric, 3)::float8 AS max_ms,
       s.rows, left(s.query, %(len)s) AS query, length(s.query) > %(len)s AS truncated
FROM {view} s
LEFT JOIN pg_database d ON d.oid = s.dbid
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE %(db)s::text IS NULL OR d.datname = %(db)s::text
ORDER BY {order} DESC NULLS LAST, s.queryid
LIMIT %(limit)s"""


def argument_spec() -> dict[str, Any]:
    spec = pg_argument_spec()
    spec.update(
        order_by={"type": "str", "default": "mean_exec_time", "choices": list(ORDER_COLUMNS)},
        limit={"type": "int", "default": 10},
        filter_database={"type": "str"},
        query_max_length={"type": "int", "default": 500},
        reset={"type": "bool", "default": False},
    )
    return spec


def enable_steps(ext: dict[str, Any]) -> list[str]:
    """What is missing of pg_stat_statements, as steps an operator can follow in order."""
    steps = []
    if not ext["available"]:
        steps.append("install the PostgreSQL contrib modules on the server (Debian: postgresql-contrib, "
                     "included in the postgresql-<major> package)")
    if not ext["preloaded"]:
        current = [lib.strip() for lib in (ext["shared_preload_libraries"] or "").split(",") if lib.strip()]
        wanted = ", ".join(current + ["pg_stat_statements"])
        steps.append(f"ALTER SYSTEM SET shared_preload_libraries = '{wanted}' "
                     "(or add pg_stat_statements to shared_preload_libraries in postgresql.conf)")
        steps.append("restart PostgreSQL (shared_preload_libraries is read at start only)")
    if not ext["version"]:
        steps.append(f"CREATE EXTENSION IF NOT EXISTS pg_stat_statements; (in database {ext['database']}, "
                     "as a superuser)")
    return steps


def missing_message(ext: dict[str, Any]) -> str:
    missing = []
    if not ext["preloaded"]:
        missing.append("pg_stat_statements is not in shared_preload_libraries")
    if not ext["version"]:
        missing.append(f"the extension pg_stat_statements is not created in database {ext['database']}")
    return "pg_stat_statements is not enabled: " + " and ".join(missing)


def read_extension(conn: Any) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(SQL_EXTENSION)
        return dict(cur.fetchone())


def read_top(conn: Any, ext: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    query = sql.SQL(SQL_TOP).format(view=sql.Identifier(ext["schema"], "pg_stat_statements"),
                                    order=sql.SQL("s.") + sql.Identifier(params["order_by"]))
    with conn.cursor() as cur:
        cur.execute(query, {"len": params["query_max_length"], "db": params["filter_database"], "limit": params["limit"]})
        return [dict(row) for row in cur.fetchall()]


def reset_statistics(conn: Any, ext: dict[str, Any]) -> None:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {fn}()").format(fn=sql.Identifier(ext["schema"], "pg_stat_statements_reset")))


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["limit"] < 1 or params["query_max_length"] < 1:
        module.fail_json(msg="limit and query_max_length must be at least 1")
    result: dict[str, Any] = {"changed": False, "available": False, "statements": [], "order_by": params["order_by"],
                              "enable_steps": [], "reset": False, "would_reset": False}
    conn, err = connect(module)
    if err:
        module.exit_json(msg=err, **result)
    try:
        ext = read_extension(conn)
        result["extension"] = {k: ext[k] for k in ("preloaded", "available", "version", "schema")}
        result["extension"]["installed"] = bool(ext["version"])
        if not ext["preloaded"] or not ext["version"]:
            result["enable_steps"] = enable_steps(ext)
            module.exit_json(msg=missing_message(ext), **result)
        result["statements"] = read_top(conn, ext, params)
        result["available"] = True
        result["msg"] = f"{len(result['statements'])} statements ordered by {params['order_by']}"
        if params["reset"]:
            result["changed"] = True
            if module.check_mode:
                result["would_reset"] = True
                result["msg"] += "; would reset pg_stat_statements (check mode)"
            else:
                reset_statistics(conn, ext)
                result["reset"] = True
                result["msg"] += "; pg_stat_statements reset"
    except PsycopgError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        module.fail_json(msg=redact(f"reading pg_stat_statements failed: {text}", params), **result)
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
