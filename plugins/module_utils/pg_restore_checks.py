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


# ------------------------------------------------------------------------------- the record of a swap, and since

# What pg_database_swap writes (record_path) once a swap committed, and what pg_restore (swap_record) reads to
# tell whether the database under the name is still the one swapped in, unwritten since. The swap's own
# transaction id is the horizon: the database took the name, and allowed connections again, in that transaction,
# so every transaction that could write to it since has a later xid.
RECORD_VERSION = 1
# the safety copies a swap record remembers (drop_safety_copies.yml reads their ages from it)
LEDGER_MAX = 100
# age() of a 32-bit xid is exact only within 2^31 of the next xid; with a margin, an older horizon is "cannot tell".
MAX_HORIZON_AGE = 2 ** 31 - 2 ** 24


def swap_record(*, live: str, oid: int, keep_as: str, keep_as_oid: int, xid: int, system_identifier: str | None,
                swapped_at: str, data: dict[str, Any], previous: Any = None) -> dict[str, Any]:
    """The record of a committed swap: the database now under live (oid), the xid of the swap's transaction, and
    (safety_copies) when each database kept under another name became that, carried over from previous."""
    copies = safety_copies_ledger(previous, keep_as=keep_as, keep_as_oid=keep_as_oid, swapped_at=swapped_at,
                                  backup_id=data.get("backup_id"))
    return {**data, "version": RECORD_VERSION, "live": live, "oid": oid, "keep_as": keep_as,
            "keep_as_oid": keep_as_oid, "xid": xid, "system_identifier": system_identifier,
            "swapped_at": swapped_at, "safety_copies": copies}


def safety_copies_ledger(previous: Any, *, keep_as: str, keep_as_oid: int, swapped_at: str,
                         backup_id: Any) -> dict[str, dict[str, Any]]:
    """The safety copies' ledger of a new swap record: name -> {oid, swapped_at, backup_id}.

    A safety copy's age is the time it became one, not its backup id's time: a restore of an old backup makes a
    new copy with an old id (drop_safety_copies.yml ages copies from this). The entries of the previous record
    (anything unreadable is left out) are kept, the newest LEDGER_MAX, with this swap's keep_as replacing any entry
    of that name.
    """
    entries: dict[str, dict[str, Any]] = {}
    old = previous.get("safety_copies") if isinstance(previous, dict) else None
    for name, entry in (old.items() if isinstance(old, dict) else []):
        if isinstance(entry, dict) and isinstance(entry.get("oid"), int) and isinstance(entry.get("swapped_at"), str):
            entries[name] = {"oid": entry["oid"], "swapped_at": entry["swapped_at"], "backup_id": entry.get("backup_id")}
    entries[keep_as] = {"oid": keep_as_oid, "swapped_at": swapped_at, "backup_id": backup_id}
    newest = sorted(entries, key=lambda name: entries[name]["swapped_at"], reverse=True)[:LEDGER_MAX]
    return {name: entries[name] for name in sorted(newest)}


def record_problem(record: Any, *, database: str, oid: int | None, backup_id: str,
                   system_identifier: str | None) -> str | None:
    """Why record cannot vouch for database (oid now) as swapped in from backup_id on this cluster, or None."""
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        return "the swap record is not one this module writes"
    if not isinstance(record.get("xid"), int) or isinstance(record.get("xid"), bool) or record["xid"] <= 0:
        return "the swap record has no transaction id"
    if record.get("live") != database:
        return f"the swap record is of database {record.get('live')!r}, not {database!r}"
    if record.get("backup_id") != backup_id:
        return f"the last swap recorded put backup {record.get('backup_id')!r} in place, not {backup_id!r}"
    if oid is None or record.get("oid") != oid:
        return (f"{database} has oid {oid}, the database the swap put in place had {record.get('oid')}: it was "
                "replaced since")
    if system_identifier and record.get("system_identifier") and record["system_identifier"] != system_identifier:
        return f"the swap record is of cluster {record['system_identifier']}, this is {system_identifier}"
    return None


def horizon_problem(next_xid: int, swap_xid: int) -> str | None:
    """Why the swap's xid cannot serve as the horizon now (next_xid: the server's next full xid), or None."""
    if swap_xid >= next_xid:
        return (f"the swap's transaction id {swap_xid} is not in this server's past (next {next_xid}): "
                "another cluster, or its transaction ids were reset")
    if next_xid - swap_xid > MAX_HORIZON_AGE:
        return f"the swap was {next_xid - swap_xid} transactions ago, too far back to compare transaction ids"
    return None


def compare_unchanged(written: dict[str, int], objects: list[str], record: dict[str, Any]) -> dict[str, Any]:
    """The check that nothing was written since the swap: rows per table, and tables, columns or indexes."""
    since = f"since the swap of {record.get('swapped_at') or '?'} (transaction {record['xid']})"
    rows = {name: n for name, n in sorted(written.items()) if n}
    if not rows and not objects:
        return check("unchanged_since_swap", True, f"no row, table, column or index written {since}", 0, 0)
    parts = []
    if rows:
        shown = ", ".join(f"{name} ({n})" for name, n in list(rows.items())[:5])
        parts.append(f"rows written {since}: {shown}" + (f" and {len(rows) - 5} more tables" if len(rows) > 5 else ""))
    if objects:
        parts.append(f"tables, columns or indexes changed {since}: {', '.join(objects[:5])}"
                     + (f" and {len(objects) - 5} more" if len(objects) > 5 else ""))
    return check("unchanged_since_swap", False, "; ".join(parts), 0, {"rows": rows, "objects": objects})


def horizon_sql(server_version: int) -> str:
    """The next full xid and the age of the swap's xid (%s, its low 32 bits as text), in the same transaction.

    age() counts from the next xid as the transaction first reads it, so the rows' age(xmin) compare with the
    swap's on the same scale: a row whose age(xmin) is below the swap's was written after it.
    """
    if server_version >= 130000:
        nxt = "pg_catalog.pg_snapshot_xmax(pg_catalog.pg_current_snapshot())::text::int8"
    else:
        nxt = "pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())"
    return f"SELECT {nxt} AS next_xid, pg_catalog.age(%s::text::xid)::int8 AS swap_age"


# A frozen row keeps its xmin (9.4+), and a FrozenTransactionId xmin has age 2^31-1: neither counts as written
# since. An xmin left from before a wraparound can look recent, which counts as written: never the other way.
WRITTEN_SQL = "SELECT count(*) AS n, count(*) FILTER (WHERE pg_catalog.age(xmin) < %s) AS written FROM ONLY {}"
# DDL since the swap: every ALTER TABLE, CREATE/DROP of a table, index or column, TRUNCATE and rewrite writes a
# new pg_class or pg_attribute row; VACUUM and ANALYZE update pg_class in place, keeping its xmin.
CHANGED_OBJECTS_SQL = """
SELECT DISTINCT n.nspname || '.' || c.relname AS name
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp_'
   AND (pg_catalog.age(c.xmin) < %(age)s
        OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                    WHERE a.attrelid = c.oid AND pg_catalog.age(a.xmin) < %(age)s))
 ORDER BY 1"""
