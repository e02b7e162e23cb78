# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The decisions of runbook.ops.pg_restore and runbook.ops.pg_database_swap, apart from any connection.

- what pg_restore's stderr says (it can exit 0 after errors it ignored),
- the statements that create a database like another one: properties, ACL and per-database settings, which a
  single-database pg_dump without --create does not carry,
- the comparison of a restored database with its backup's manifest (tables, exact rows, migration revision)
  and of the smoke_sql results,
- which state a swap of database names is in, and the statements of the swap.

Statements are psycopg.sql objects: identifiers through sql.Identifier, values through sql.Literal (utility
statements such as CREATE DATABASE or ALTER DATABASE take no bind parameters).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

try:
    from psycopg import sql
except ImportError:  # the modules report a missing psycopg through pg.ensure_psycopg()
    sql = None

# NAMEDATALEN - 1: PostgreSQL silently truncates a longer name, so a long keep_as could name another database.
MAX_NAME_BYTES = 63
DATABASE_PRIVILEGES = ("CREATE", "TEMPORARY", "CONNECT")
# Settings whose value is a list of quoted elements: they must be given as several literals, not one string
# (the list pg_dump's variable_is_guc_list_quote() keeps, for the same reason).
GUC_LIST_QUOTE = frozenset({"local_preload_libraries", "search_path", "session_preload_libraries",
                            "shared_preload_libraries", "temp_tablespaces", "unix_socket_directories"})
LOCALE_PROVIDERS = {"c": "libc", "i": "icu", "b": "builtin"}
# The properties a database made "like" another must share with it, as read by like_database_sql().
PROPERTIES = ("owner", "encoding", "collate", "ctype", "locale_provider", "locale", "icu_rules", "tablespace",
              "connection_limit")


def check_database_name(name: Any, option: str) -> str | None:
    """Why name cannot be a database name given in option, or None."""
    if not isinstance(name, str) or not name:
        return f"{option} must be a non-empty database name"
    if "\0" in name:
        return f"{option} {name!r} contains a NUL character"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return (f"{option} {name!r} is longer than {MAX_NAME_BYTES} bytes; PostgreSQL would truncate it and could "
                "then name another database")
    return None


# ---------------------------------------------------------------------------------------------------- pg_restore

# pg_restore 12+ prefixes diagnostics with "pg_restore: error:", "warning:", "detail:", "hint:"; older ones wrote
# "pg_restore: [archiver (db)] Error ..." and "WARNING: errors ignored on restore: N".
_PREFIXED_RE = re.compile(r"^pg_restore:\s+(error|fatal|warning|detail|hint):\s*(.*)$", re.IGNORECASE)
_OLD_ERROR_RE = re.compile(r"^pg_restore:\s+\[[^\]]+\]\s+(.*)$")
_IGNORED_RE = re.compile(r"errors ignored on restore:\s*(\d+)", re.IGNORECASE)


@dataclass
class RestoreOutput:
    """pg_restore's stderr, sorted: errors, warnings, the count of errors it ignored, and everything else."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    ignored: int = 0
    context: list[str] = field(default_factory=list)  # "Command was: ...", detail and hint lines


def parse_restore_stderr(stderr: str) -> RestoreOutput:
    out = RestoreOutput()
    for raw in (stderr or "").splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        ignored = _IGNORED_RE.search(line)
        if ignored:
            out.ignored += int(ignored.group(1))
            continue
        prefixed = _PREFIXED_RE.match(line)
        if prefixed:
            kind = prefixed.group(1).lower()
            if kind in ("error", "fatal"):
                out.errors.append(line)
            elif kind == "warning":
                out.warnings.append(line)
            else:
                out.context.append(line)
        elif _OLD_ERROR_RE.match(line):
            out.errors.append(line)
        else:
            out.context.append(line)
    return out


def restore_failure(rc: int, out: RestoreOutput, limit: int = 3) -> str | None:
    """Why a pg_restore run failed, or None: a non-zero exit, an error line, or errors it ignored and exited 0."""
    detail = "; ".join(line.strip() for line in (out.errors[:limit] or out.context[:limit]))
    if len(out.errors) > limit:
        detail += f"; and {len(out.errors) - limit} more errors"
    detail = detail[:2000] or "no message"
    if rc != 0:
        return f"pg_restore failed (exit code {rc}): {detail}"
    if out.ignored:
        return f"pg_restore exited 0 but reported {out.ignored} errors ignored on restore: {detail}"
    if out.errors:
        return f"pg_restore exited 0 but reported errors: {detail}"
    return None


def restore_argv(pg_restore: str, *, connection: str, archive: str, jobs: int, no_owner: bool,
                 no_privileges: bool) -> list[str]:
    """The pg_restore command line. The password never is in it (PGPASSWORD); --no-password: never prompt.

    --exit-on-error: the first error ends the restore, whose target is then dropped, instead of hours of
    restoring around a missing table.
    """
    argv = [pg_restore, f"--dbname={connection}", "--no-password", f"--jobs={jobs}", "--exit-on-error"]
    if no_owner:
        argv.append("--no-owner")
    if no_privileges:
        argv.append("--no-privileges")
    argv.append(archive)
    return argv


# ------------------------------------------------------------------------------------ a database like another


def like_database_sql(server_version: int) -> str:
    """The properties of database %s (by name) that CREATE DATABASE can give another, for this server version.

    Locale providers came with 15 (daticulocale), ICU rules with 16, datlocale and the builtin provider with 17.
    """
    if server_version >= 170000:
        locale = "d.datlocprovider::text AS locale_provider, d.datlocale AS locale, d.daticurules AS icu_rules"
    elif server_version >= 160000:
        locale = "d.datlocprovider::text AS locale_provider, d.daticulocale AS locale, d.daticurules AS icu_rules"
    elif server_version >= 150000:
        locale = "d.datlocprovider::text AS locale_provider, d.daticulocale AS locale, NULL::text AS icu_rules"
    else:
        locale = "'c'::text AS locale_provider, NULL::text AS locale, NULL::text AS icu_rules"
    return f"""
SELECT d.oid::int8 AS oid, r.rolname AS owner, pg_catalog.pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS collate, d.datctype AS ctype, {locale},
       t.spcname AS tablespace, d.datconnlimit AS connection_limit, d.datallowconn AS allow_connections,
       d.datistemplate AS is_template, pg_catalog.shobj_description(d.oid, 'pg_database') AS comment
  FROM pg_catalog.pg_database d
  JOIN pg_catalog.pg_roles r ON r.oid = d.datdba
  JOIN pg_catalog.pg_tablespace t ON t.oid = d.dattablespace
 WHERE d.datname = %s"""


# A NULL datacl means the default ACL (acldefault), so both sides are compared after coalesce().
ACL_SQL = """
SELECT g.rolname AS grantor, r.rolname AS grantee, a.privilege_type AS privilege, a.is_grantable AS grantable
  FROM pg_catalog.pg_database d
 CROSS JOIN LATERAL pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
  JOIN pg_catalog.pg_roles g ON g.oid = a.grantor
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
 WHERE d.datname = %s
 ORDER BY 1, 2 NULLS FIRST, 3"""
ACL_IS_DEFAULT_SQL = "SELECT datacl IS NULL AS is_default FROM pg_catalog.pg_database WHERE datname = %s"

# Settings of the database for everyone (role NULL) and for one role in it (ALTER ROLE r IN DATABASE d SET).
SETTINGS_SQL = """
SELECT r.rolname AS role, s.setconfig AS config
  FROM pg_catalog.pg_db_role_setting s
  JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
 WHERE d.datname = %s
 ORDER BY 1 NULLS FIRST"""


def create_database_statement(target: str, like: dict[str, Any]) -> Any:
    """CREATE DATABASE target like the database whose properties like_database_sql() read, from template0.

    template0: the dump brings every object; template1 may hold objects of its own that would then clash.
    """
    opts = [
        sql.SQL("OWNER {}").format(sql.Identifier(like["owner"])),
        sql.SQL("TEMPLATE template0"),
        sql.SQL("ENCODING {}").format(sql.Literal(like["encoding"])),
        sql.SQL("LC_COLLATE {}").format(sql.Literal(like["collate"])),
        sql.SQL("LC_CTYPE {}").format(sql.Literal(like["ctype"])),
    ]
    provider = like.get("locale_provider") or "c"
    if provider not in LOCALE_PROVIDERS:
        raise ValueError(f"unknown locale provider {provider!r}")
    if provider != "c":
        opts.append(sql.SQL("LOCALE_PROVIDER {}").format(sql.Literal(LOCALE_PROVIDERS[provider])))
        if like.get("locale"):
            key = "ICU_LOCALE" if provider == "i" else "BUILTIN_LOCALE"
            opts.append(sql.SQL(key + " {}").format(sql.Literal(like["locale"])))  # key from a fixed pair
        if provider == "i" and like.get("icu_rules"):
            opts.append(sql.SQL("ICU_RULES {}").format(sql.Literal(like["icu_rules"])))
    if like.get("tablespace") and like["tablespace"] != "pg_default":
        opts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(like["tablespace"])))
    if like.get("connection_limit") is not None and like["connection_limit"] >= 0:
        opts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(int(like["connection_limit"]))))
    return sql.SQL("CREATE DATABASE {} WITH ").format(sql.Identifier(target)) + sql.SQL(" ").join(opts)


def acl_statements(target: str, owner: str, items: list[dict[str, Any]]) -> list[Any]:
    """The statements that give target exactly the ACL items (as ACL_SQL reads them), grant chains included.

    Start from nothing (revoke the default from PUBLIC and the owner), then grant each item as its grantor: a
    superuser's GRANT is recorded as the owner's, and an item granted by another role (who held the privilege
    WITH GRANT OPTION) is granted under SET ROLE to that role, after the item that gave it the grant option.
    """
    ident = sql.Identifier(target)
    stmts = [sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
             sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(ident, sql.Identifier(owner))]
    for item in items:
        if item["privilege"] not in DATABASE_PRIVILEGES:
            raise ValueError(f"unknown database privilege {item['privilege']!r}")
    may_grant = {(owner, p) for p in DATABASE_PRIVILEGES}
    pending = list(items)
    while pending:
        ready = [i for i in pending if (i["grantor"], i["privilege"]) in may_grant]
        if not ready:
            left = ", ".join(f"{i['privilege']} to {i['grantee'] or 'PUBLIC'} by {i['grantor']}" for i in pending)
            raise ValueError(f"cannot rebuild the grant chain of the database ACL: {left}")
        for item in ready:
            grantee = sql.Identifier(item["grantee"]) if item["grantee"] else sql.SQL("PUBLIC")
            grant = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(item["privilege"]), ident, grantee)
            if item["grantable"]:
                grant += sql.SQL(" WITH GRANT OPTION")
                if item["grantee"]:
                    may_grant.add((item["grantee"], item["privilege"]))
            if item["grantor"] == owner:
                stmts.append(grant)
            else:
                stmts += [sql.SQL("SET ROLE {}").format(sql.Identifier(item["grantor"])), grant,
                          sql.SQL("RESET ROLE")]
        pending = [i for i in pending if not any(i is r for r in ready)]
    return stmts


def split_guc_list(value: str) -> list[str]:
    """The elements of a list setting as PostgreSQL flattens it: '"$user", public' -> ['$user', 'public'].

    Like the server's SplitGUCList(): comma-separated, blanks around elements ignored, an element in double
    quotes may hold anything ("" is a quote); unquoted elements are taken as they are. ValueError on bad syntax.
    """
    items: list[str] = []
    i, n = 0, len(value)

    def blanks(pos: int) -> int:
        while pos < n and value[pos].isspace():
            pos += 1
        return pos

    i = blanks(i)
    if i == n:
        return items
    while True:
        if i == n:
            raise ValueError(f"empty element in list setting {value!r}")
        if value[i] == '"':
            parts, i = [], i + 1
            while True:
                end = value.find('"', i)
                if end < 0:
                    raise ValueError(f"unterminated quote in list setting {value!r}")
                if end + 1 < n and value[end + 1] == '"':
                    parts.append(value[i:end + 1])
                    i = end + 2
                    continue
                parts.append(value[i:end])
                i = end + 1
                break
            items.append("".join(parts))
        else:
            start = i
            while i < n and value[i] != "," and not value[i].isspace():
                i += 1
            if i == start:
                raise ValueError(f"empty element in list setting {value!r}")
            items.append(value[start:i])
        i = blanks(i)
        if i == n:
            return items
        if value[i] != ",":
            raise ValueError(f"invalid list setting {value!r}")
        i = blanks(i + 1)


def setting_statement(target: str, role: str | None, entry: str) -> Any:
    """ALTER DATABASE target SET name TO ... (or ALTER ROLE role IN DATABASE target) for one 'name=value'."""
    name, sep, value = entry.partition("=")
    if not sep or not name:
        raise ValueError(f"not a name=value setting: {entry!r}")
    if name.lower() in GUC_LIST_QUOTE:
        values = split_guc_list(value) or [""]
    else:
        values = [value]
    setting = sql.SQL("SET {} TO {}").format(sql.Identifier(name), sql.SQL(", ").join(sql.Literal(v) for v in values))
    if role is None:
        return sql.SQL("ALTER DATABASE {} ").format(sql.Identifier(target)) + setting
    return sql.SQL("ALTER ROLE {} IN DATABASE {} ").format(sql.Identifier(role), sql.Identifier(target)) + setting


def settings_statements(target: str, rows: list[dict[str, Any]]) -> list[Any]:
    """One statement per setting of the rows SETTINGS_SQL read from the database to copy."""
    return [setting_statement(target, row["role"], entry) for row in rows for entry in (row["config"] or [])]


def comment_statement(target: str, comment: str | None) -> list[Any]:
    if comment is None:
        return []
    return [sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(target), sql.Literal(comment))]


# ---------------------------------------------------------------------------------------------- verification


def check(name: str, ok: bool, msg: str, expected: Any = None, actual: Any = None) -> dict[str, Any]:
    """One verification result as the modules return it."""
    return {"name": name, "ok": bool(ok), "expected": expected, "actual": actual, "msg": msg}


def qualified(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def compare_tables(expected: list[dict[str, Any]], actual: list[dict[str, Any]],
                   count_rows: bool = True) -> list[dict[str, Any]]:
    """One check per table of the manifest or of the database: present in both, and the same exact row count.

    A manifest row count of null (the backup counted no rows) checks presence only, and so does
    count_rows=False. A table the database has but the backup has not is a failure as well: it means the
    database is not what the backup holds.
    """
    want = {(t["schema"], t["name"]): t for t in expected}
    have = {(t["schema"], t["name"]): t for t in actual}
    checks = []
    for key in sorted(set(want) | set(have)):
        name = f"rows {qualified(*key)}"
        rows = want[key]["rows"] if key in want else None
        if key not in have:
            checks.append(check(name, False, "missing from the database", rows, None))
        elif key not in want:
            checks.append(check(name, False, "in the database but not in the backup", None, have[key]["rows"]))
        elif rows is None or not count_rows:
            checks.append(check(name, True, "present (rows not compared)", rows, have[key]["rows"]))
        elif have[key]["rows"] == rows:
            checks.append(check(name, True, f"{rows} rows, as in the backup", rows, rows))
        else:
            checks.append(check(name, False, f"{have[key]['rows']} rows, the backup has {rows}", rows,
                                have[key]["rows"]))
    return checks


def compare_migration(manifest: dict[str, Any], tool: str | None, revision: str | None,
                      warning: str | None) -> dict[str, Any]:
    """The migration revision of the database against the manifest's (both null is a match: no migrations)."""
    expected = {"tool": manifest.get("migration_tool"), "revision": manifest.get("migration_revision")}
    actual = {"tool": tool, "revision": revision}
    if warning:
        return check("migration_revision", False, warning, expected, actual)
    if expected == actual:
        what = f"{tool} {revision}" if tool else "no migration table, as in the backup"
        return check("migration_revision", True, what, expected, actual)
    return check("migration_revision", False,
                 f"{tool or 'no migration table'} {revision or ''}".strip()
                 + f", the backup has {expected['tool'] or 'no migration table'} {expected['revision'] or ''}".rstrip(),
                 expected, actual)


def evaluate_smoke(rows: list[tuple[Any, ...]]) -> tuple[bool, str]:
    """Whether a smoke_sql result is exactly one row whose first column is true, and what it was."""
    if len(rows) != 1:
        return False, f"returned {len(rows)} rows, expected exactly one"
    if not rows[0]:
        return False, "returned a row without columns, expected one whose first column is true"
    value = rows[0][0]
    if value is True:
        return True, "true"
    shown = repr(value)
    return False, f"returned {shown[:200]}, expected true"


def compare_sets(name: str, expected: list[Any], actual: list[Any], what: str) -> dict[str, Any]:
    """A check that two lists hold the same items in any order; msg names what is missing and extra."""
    def key(item: Any) -> str:
        return repr(sorted(item.items(), key=lambda kv: kv[0])) if isinstance(item, dict) else repr(item)

    want = {key(i): i for i in expected}
    have = {key(i): i for i in actual}
    if set(want) == set(have):
        return check(name, True, f"{what} as in the original ({len(want)})", expected, actual)
    missing = [want[k] for k in sorted(set(want) - set(have))]
    extra = [have[k] for k in sorted(set(have) - set(want))]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"extra {extra}")
    return check(name, False, f"{what} differ: " + "; ".join(parts), expected, actual)


def flatten_settings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SETTINGS_SQL rows as one {role, setting} per setting, comparable between two databases."""
    return [{"role": row["role"], "setting": entry} for row in rows for entry in (row["config"] or [])]


def compare_properties(like: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    want = {k: like.get(k) for k in PROPERTIES}
    have = {k: target.get(k) for k in PROPERTIES}
    diff = [f"{k} {have[k]!r} (original {want[k]!r})" for k in PROPERTIES if want[k] != have[k]]
    if diff:
        return check("database_properties", False, "differ: " + ", ".join(diff), want, have)
    return check("database_properties", True, "owner, encoding, locale, tablespace and connection limit as in "
                 "the original", want, have)


def failed_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in checks if not c["ok"]]


def describe_failures(checks: list[dict[str, Any]], limit: int = 5) -> str:
    bad = failed_checks(checks)
    text = "; ".join(f"{c['name']}: {c['msg']}" for c in bad[:limit])
    if len(bad) > limit:
        text += f"; and {len(bad) - limit} more"
    return text


# -------------------------------------------------------------------------------------------------- the swap

SWAP = "swap"
DONE = "done"


def swap_state(live: str, replacement: str, keep_as: str, present: set[str]) -> str:
    """SWAP when live and replacement exist and keep_as does not; DONE when the swap has happened (replacement
    gone, keep_as there); ValueError saying why for anything else, which the module must not touch."""
    has_live, has_new, has_keep = live in present, replacement in present, keep_as in present
    if has_live and has_new and not has_keep:
        return SWAP
    if has_live and has_keep and not has_new:
        return DONE
    if has_live and has_new and has_keep:
        raise ValueError(f"database {keep_as!r} (keep_as) already exists: the swap needs that name for the current "
                         f"{live!r}; drop or rename it, or choose another keep_as")
    if not has_live:
        others = [n for n, there in ((replacement, has_new), (keep_as, has_keep)) if there]
        raise ValueError(f"database {live!r} (live) does not exist" + (
            f" (present: {', '.join(repr(o) for o in others)})" if others else "") + "; nothing to swap")
    raise ValueError(f"database {replacement!r} (replacement) does not exist, and neither does {keep_as!r} "
                     "(keep_as), so this is not a swap already done either")


@dataclass
class SwapStatements:
    close: list[Any]  # autocommit, before the swap: no new session can start in either database
    swap: list[Any]  # one transaction: both renames and the connections allowed again as before
    reopen: list[Any]  # autocommit, when the swap did not commit: the databases under their old names as before


def swap_statements(live: str, replacement: str, keep_as: str, allow: dict[str, bool]) -> SwapStatements:
    """The statements of the swap; allow is each database's datallowconn before it (by its current name).

    A database that refused connections before is left so: it is neither closed nor reopened.
    """
    def allow_connections(name: str, value: bool) -> Any:
        return sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if value else "false"))

    def rename(old: str, new: str) -> Any:
        return sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))

    close = [allow_connections(n, False) for n in (live, replacement) if allow[n]]
    swap = [rename(live, keep_as), rename(replacement, live)]
    if allow[live]:
        swap.append(allow_connections(keep_as, True))
    if allow[replacement]:
        swap.append(allow_connections(live, True))
    reopen = [allow_connections(n, True) for n in (live, replacement) if allow[n]]
    return SwapStatements(close, swap, reopen)
