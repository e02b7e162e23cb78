# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_restore_checks import (
    DONE,
    SWAP,
    acl_statements,
    check_database_name,
    comment_statement,
    compare_migration,
    compare_properties,
    compare_sets,
    compare_tables,
    create_database_statement,
    describe_failures,
    evaluate_smoke,
    flatten_settings,
    like_database_sql,
    parse_restore_stderr,
    restore_argv,
    restore_failure,
    setting_statement,
    split_guc_list,
    swap_state,
    swap_statements,
)


def text(statement: Any) -> str:
    return statement.as_string(None)


@pytest.mark.parametrize(("name", "problem"), [
    ("app", None),
    ("app_pre_restore_20261201T083000Z", None),
    ('x"; DROP DATABASE app; --', None),  # hostile but valid: quoted wherever it is used
    ("a" * 63, None),
    ("a" * 64, "longer than 63 bytes"),
    ("é" * 32, "longer than 63 bytes"),  # 64 bytes in UTF-8: the limit is bytes, not characters
    ("", "non-empty"),
    (None, "non-empty"),
    ("a\0b", "NUL"),
])
def test_check_database_name(name: Any, problem: str | None) -> None:
    found = check_database_name(name, "target_db")
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and "target_db" in found


# pg_restore 15's own words, from a restore into a database that already had the table, and a killed session.
PG15_ERROR = """pg_restore: error: could not execute query: ERROR:  relation "t" already exists
Command was: CREATE TABLE public.t (
    id integer
);
"""
PG15_IGNORED = PG15_ERROR + "pg_restore: warning: errors ignored on restore: 1\n"
PG15_KILLED = ("pg_restore: error: error returned by PQputCopyData: server closed the connection unexpectedly\n"
               "\tThis probably means the server terminated abnormally\n")
OLD_STYLE = ("pg_restore: [archiver (db)] Error while PROCESSING TOC:\n"
             "pg_restore: [archiver (db)] could not execute query: ERROR:  schema \"x\" already exists\n"
             "WARNING: errors ignored on restore: 2\n")


@pytest.mark.parametrize(("stderr", "rc", "errors", "warnings", "ignored", "failure"), [
    ("", 0, 0, 0, 0, None),
    ("pg_restore: warning: archive was made on a machine with larger integers\n", 0, 0, 1, 0, None),
    (PG15_ERROR, 1, 1, 0, 0, "pg_restore failed (exit code 1): pg_restore: error: could not execute query"),
    (PG15_IGNORED, 0, 1, 0, 1, "pg_restore exited 0 but reported 1 errors ignored on restore"),
    (PG15_ERROR, 0, 1, 0, 0, "pg_restore exited 0 but reported errors"),
    (PG15_KILLED, 1, 1, 0, 0, "error returned by PQputCopyData"),
    (OLD_STYLE, 0, 2, 0, 2, "reported 2 errors ignored on restore"),
    ("something unexpected\n", 3, 0, 0, 0, "pg_restore failed (exit code 3): something unexpected"),
    ("", 1, 0, 0, 0, "pg_restore failed (exit code 1): no message"),
])
def test_restore_output(stderr: str, rc: int, errors: int, warnings: int, ignored: int, failure: str | None) -> None:
    out = parse_restore_stderr(stderr)
    assert (len(out.errors), len(out.warnings), out.ignored) == (errors, warnings, ignored)
    found = restore_failure(rc, out)
    if failure is None:
        assert found is None
    else:
        assert found is not None and failure in found


def test_restore_failure_names_the_first_errors_and_counts_the_rest() -> None:
    stderr = "".join(f"pg_restore: error: could not execute query: ERROR:  e{n}\n" for n in range(7))
    found = restore_failure(1, parse_restore_stderr(stderr))
    assert "e0" in found and "e2" in found and "e3" not in found and "and 4 more errors" in found


@pytest.mark.parametrize(("no_owner", "no_privileges", "extra"), [
    (False, False, []),
    (True, False, ["--no-owner"]),
    (True, True, ["--no-owner", "--no-privileges"]),
])
def test_restore_argv(no_owner: bool, no_privileges: bool, extra: list[str]) -> None:
    argv = restore_argv("/usr/lib/postgresql/15/bin/pg_restore", connection="host='h' dbname='t'",
                        archive="/b/app/1/dump", jobs=3, no_owner=no_owner, no_privileges=no_privileges)
    assert argv == ["/usr/lib/postgresql/15/bin/pg_restore", "--dbname=host='h' dbname='t'", "--no-password",
                    "--jobs=3", "--exit-on-error", *extra, "/b/app/1/dump"]


LIKE = {"owner": "app", "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8", "locale_provider": "c",
        "locale": None, "icu_rules": None, "tablespace": "pg_default", "connection_limit": -1}


@pytest.mark.parametrize(("over", "expected"), [
    ({}, "CREATE DATABASE \"t\" WITH OWNER \"app\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' "
         "LC_CTYPE 'C.UTF-8'"),
    ({"locale_provider": "i", "locale": "de-DE"}, "LC_CTYPE 'C.UTF-8' LOCALE_PROVIDER 'icu' ICU_LOCALE 'de-DE'"),
    ({"locale_provider": "i", "locale": "und", "icu_rules": "&a < b"},
     "ICU_LOCALE 'und' ICU_RULES '&a < b'"),
    ({"locale_provider": "b", "locale": "C.UTF-8"}, "LOCALE_PROVIDER 'builtin' BUILTIN_LOCALE 'C.UTF-8'"),
    ({"tablespace": "fast ssd"}, "LC_CTYPE 'C.UTF-8' TABLESPACE \"fast ssd\""),
    ({"connection_limit": 50}, "LC_CTYPE 'C.UTF-8' CONNECTION LIMIT 50"),
    ({"owner": 'o"wn', "collate": "it's"}, "OWNER \"o\"\"wn\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'it''s'"),
])
def test_create_database_statement(over: dict[str, Any], expected: str) -> None:
    statement = text(create_database_statement("t", {**LIKE, **over}))
    assert expected in statement
    assert statement.startswith('CREATE DATABASE "t" WITH OWNER')
    if over.get("tablespace") is None:
        assert "TABLESPACE" not in statement


def test_create_database_refuses_an_unknown_locale_provider() -> None:
    with pytest.raises(ValueError, match="unknown locale provider"):
        create_database_statement("t", {**LIKE, "locale_provider": "x"})


@pytest.mark.parametrize(("version", "column"), [(140000, "NULL::text AS locale"), (150000, "d.daticulocale"),
                                                 (160000, "d.daticurules"), (170000, "d.datlocale")])
def test_like_database_sql_fits_the_server(version: int, column: str) -> None:
    assert column in like_database_sql(version)


def _item(grantor: str, grantee: str | None, privilege: str, grantable: bool = False) -> dict[str, Any]:
    return {"grantor": grantor, "grantee": grantee, "privilege": privilege, "grantable": grantable}


def test_acl_statements_start_from_nothing_and_grant_each_item() -> None:
    stmts = [text(s) for s in acl_statements("t", "app", [_item("app", "app", "CONNECT"),
                                                          _item("app", None, "TEMPORARY"),
                                                          _item("app", "reader", "CONNECT", True)])]
    assert stmts == ['REVOKE ALL ON DATABASE "t" FROM PUBLIC', 'REVOKE ALL ON DATABASE "t" FROM "app"',
                     'GRANT CONNECT ON DATABASE "t" TO "app"', 'GRANT TEMPORARY ON DATABASE "t" TO PUBLIC',
                     'GRANT CONNECT ON DATABASE "t" TO "reader" WITH GRANT OPTION']


def test_acl_statements_rebuild_a_grant_chain_in_order() -> None:
    # listed in the wrong order on purpose: carol's grant needs bob's grant option first
    items = [_item("bob", "carol", "CONNECT"), _item("app", "bob", "CONNECT", True)]
    stmts = [text(s) for s in acl_statements("t", "app", items)]
    assert stmts[2:] == ['GRANT CONNECT ON DATABASE "t" TO "bob" WITH GRANT OPTION', 'SET ROLE "bob"',
                         'GRANT CONNECT ON DATABASE "t" TO "carol"', "RESET ROLE"]


@pytest.mark.parametrize(("items", "error"), [
    ([_item("bob", "carol", "CONNECT")], "cannot rebuild the grant chain"),
    ([_item("app", "bob", "CONNECT", True), _item("bob", "carol", "CREATE")], "cannot rebuild the grant chain"),
    ([_item("app", "bob", "CONNECT; DROP DATABASE app")], "unknown database privilege"),
])
def test_acl_statements_refuse_what_they_cannot_rebuild(items: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        acl_statements("t", "app", items)


@pytest.mark.parametrize(("value", "items"), [
    ("", []),
    ("public", ["public"]),
    ('"$user", public', ["$user", "public"]),
    ('  a ,b,  "c d"  ', ["a", "b", "c d"]),
    ('"say ""hi""", x', ['say "hi"', "x"]),
    ('""', [""]),
    ('"a,b"', ["a,b"]),
    ("MixedCase", ["MixedCase"]),  # not folded: the server keeps list elements as given
])
def test_split_guc_list(value: str, items: list[str]) -> None:
    assert split_guc_list(value) == items


@pytest.mark.parametrize("value", ['"open', "a,,b", "a b", "a,", ",a"])
def test_split_guc_list_refuses_bad_syntax(value: str) -> None:
    with pytest.raises(ValueError):
        split_guc_list(value)


@pytest.mark.parametrize(("role", "entry", "expected"), [
    (None, "work_mem=7MB", 'ALTER DATABASE "t" SET "work_mem" TO \'7MB\''),
    (None, 'search_path="$user", public, "we ird"',
     'ALTER DATABASE "t" SET "search_path" TO \'$user\', \'public\', \'we ird\''),
    (None, 'search_path=""', 'ALTER DATABASE "t" SET "search_path" TO \'\''),
    (None, "myext.flag=a b", 'ALTER DATABASE "t" SET "myext.flag" TO \'a b\''),
    (None, "application_name=it's=x", 'ALTER DATABASE "t" SET "application_name" TO \'it\'\'s=x\''),
    ("app", "statement_timeout=5s", 'ALTER ROLE "app" IN DATABASE "t" SET "statement_timeout" TO \'5s\''),
])
def test_setting_statement(role: str | None, entry: str, expected: str) -> None:
    assert text(setting_statement("t", role, entry)) == expected


@pytest.mark.parametrize("entry", ["work_mem", "=7MB"])
def test_setting_statement_refuses_what_is_no_setting(entry: str) -> None:
    with pytest.raises(ValueError):
        setting_statement("t", None, entry)


def test_comment_statement() -> None:
    assert comment_statement("t", None) == []
    assert [text(s) for s in comment_statement("t", "it's the app")] == ['COMMENT ON DATABASE "t" IS \'it\'\'s the app\'']


def _table(schema: str, name: str, rows: int | None) -> dict[str, Any]:
    return {"schema": schema, "name": name, "rows": rows, "rows_estimate": None}


@pytest.mark.parametrize(("expected", "actual", "count_rows", "results"), [
    ([_table("public", "a", 3)], [_table("public", "a", 3)], True, [("rows public.a", True, "3 rows, as in the backup")]),
    ([_table("public", "a", 3)], [_table("public", "a", 2)], True,
     [("rows public.a", False, "2 rows, the backup has 3")]),
    ([_table("public", "a", 0)], [_table("public", "a", 1)], True, [("rows public.a", False, "1 rows, the backup has 0")]),
    ([_table("public", "a", 3)], [], True, [("rows public.a", False, "missing from the database")]),
    ([], [_table("s", "b", 1)], True, [("rows s.b", False, "in the database but not in the backup")]),
    ([_table("public", "a", None)], [_table("public", "a", None)], True, [("rows public.a", True, "present")]),
    ([_table("public", "a", 3)], [_table("public", "a", None)], False, [("rows public.a", True, "present")]),
    ([_table("b", "x", 1), _table("a", "y", 1)], [_table("a", "y", 1), _table("b", "x", 1)], True,
     [("rows a.y", True, "1 rows"), ("rows b.x", True, "1 rows")]),
])
def test_compare_tables(expected: list, actual: list, count_rows: bool, results: list[tuple[str, bool, str]]) -> None:
    checks = compare_tables(expected, actual, count_rows=count_rows)
    assert [(c["name"], c["ok"]) for c in checks] == [(name, ok) for name, ok, _msg in results]
    for found, (_name, _ok, msg) in zip(checks, results):
        assert msg in found["msg"]


@pytest.mark.parametrize(("manifest", "found", "ok", "msg"), [
    ({"migration_tool": None, "migration_revision": None}, (None, None, None), True, "no migration table"),
    ({"migration_tool": "alembic", "migration_revision": "ae10"}, ("alembic", "ae10", None), True, "alembic ae10"),
    ({"migration_tool": "alembic", "migration_revision": "ae10"}, ("alembic", "bf20", None), False,
     "alembic bf20, the backup has alembic ae10"),
    ({"migration_tool": "prisma", "migration_revision": "2026_init"}, (None, None, None), False,
     "no migration table, the backup has prisma 2026_init"),
    ({"migration_tool": "alembic", "migration_revision": "ae10"}, (None, None, "cannot read the migration revision"),
     False, "cannot read"),
])
def test_compare_migration(manifest: dict, found: tuple, ok: bool, msg: str) -> None:
    result = compare_migration(manifest, *found)
    assert result["name"] == "migration_revision" and result["ok"] is ok and msg in result["msg"]


@pytest.mark.parametrize(("rows", "ok", "msg"), [
    ([(True,)], True, "true"),
    ([(True, "extra columns are fine")], True, "true"),
    ([(False,)], False, "returned False"),
    ([(None,)], False, "returned None"),
    ([(1,)], False, "returned 1"),  # only a boolean true counts, not a truthy value
    ([("t",)], False, "returned 't'"),
    ([], False, "returned 0 rows"),
    ([(True,), (True,)], False, "returned 2 rows"),
    ([()], False, "without columns"),
])
def test_evaluate_smoke(rows: list[tuple], ok: bool, msg: str) -> None:
    assert evaluate_smoke(rows)[0] is ok
    assert msg in evaluate_smoke(rows)[1]


def test_compare_sets_ignores_order_and_names_the_difference() -> None:
    a = {"grantor": "app", "grantee": None, "privilege": "CONNECT", "grantable": False}
    b = {"grantor": "app", "grantee": "app", "privilege": "CREATE", "grantable": False}
    assert compare_sets("database_acl", [a, b], [b, a], "database privileges")["ok"] is True
    differ = compare_sets("database_acl", [a, b], [b], "database privileges")
    assert differ["ok"] is False and "missing" in differ["msg"] and "CONNECT" in differ["msg"]
    extra = compare_sets("database_acl", [b], [a, b], "database privileges")
    assert extra["ok"] is False and "extra" in extra["msg"]


def test_flatten_settings_compares_per_setting() -> None:
    rows = [{"role": None, "config": ["work_mem=7MB", "search_path=a"]}, {"role": "app", "config": ["x.y=1"]}]
    assert flatten_settings(rows) == [{"role": None, "setting": "work_mem=7MB"},
                                      {"role": None, "setting": "search_path=a"},
                                      {"role": "app", "setting": "x.y=1"}]
    assert compare_sets("s", flatten_settings(rows), flatten_settings(list(reversed(rows))), "settings")["ok"]


@pytest.mark.parametrize(("over", "ok", "msg"), [
    ({}, True, "as in the original"),
    ({"owner": "someone"}, False, "owner 'someone' (original 'app')"),
    ({"collate": "de_DE.UTF-8", "connection_limit": 5}, False, "collate 'de_DE.UTF-8'"),
])
def test_compare_properties(over: dict[str, Any], ok: bool, msg: str) -> None:
    result = compare_properties(LIKE, {**LIKE, "oid": 99, "comment": "ignored", **over})
    assert result["ok"] is ok and msg in result["msg"]


def test_describe_failures_names_the_failed_checks_only() -> None:
    checks = compare_tables([_table("public", f"t{n}", 1) for n in range(8)], [_table("public", "t0", 1)])
    described = describe_failures(checks)
    assert "rows public.t0" not in described
    assert described.startswith("rows public.t1: missing from the database") and "and 2 more" in described


@pytest.mark.parametrize(("present", "state"), [
    ({"app", "app_new"}, SWAP),
    ({"app", "app_old"}, DONE),
    ({"app", "app_new", "app_old"}, "keep_as) already exists"),
    ({"app"}, "(replacement) does not exist, and neither does"),
    ({"app_new"}, "(live) does not exist"),
    ({"app_new", "app_old"}, "present: 'app_new', 'app_old'"),
    ({"app_old"}, "(live) does not exist"),
    (set(), "(live) does not exist; nothing to swap"),
])
def test_swap_state(present: set[str], state: str) -> None:
    if state in (SWAP, DONE):
        assert swap_state("app", "app_new", "app_old", present) == state
    else:
        with pytest.raises(ValueError, match=None) as exc:
            swap_state("app", "app_new", "app_old", present)
        assert state in str(exc.value)


def test_swap_statements_close_rename_and_reopen_each_as_before() -> None:
    plan = swap_statements("app", "app_new", "app_old", {"app": True, "app_new": True})
    assert [text(s) for s in plan.close] == [
        'ALTER DATABASE "app" ALLOW_CONNECTIONS false',
        'ALTER DATABASE "app_new" ALLOW_CONNECTIONS false',
    ]
    assert [text(s) for s in plan.swap] == [
        'ALTER DATABASE "app" RENAME TO "app_old"',
        'ALTER DATABASE "app_new" RENAME TO "app"',
        'ALTER DATABASE "app_old" ALLOW_CONNECTIONS true',
        'ALTER DATABASE "app" ALLOW_CONNECTIONS true',
    ]
    assert [text(s) for s in plan.reopen] == [
        'ALTER DATABASE "app" ALLOW_CONNECTIONS true',
        'ALTER DATABASE "app_new" ALLOW_CONNECTIONS true',
    ]


def test_swap_statements_leave_a_closed_database_closed() -> None:
    plan = swap_statements("app", "app_new", "app_old", {"app": False, "app_new": True})
    assert [text(s) for s in plan.close] == ['ALTER DATABASE "app_new" ALLOW_CONNECTIONS false']
    assert [text(s) for s in plan.swap][2:] == ['ALTER DATABASE "app" ALLOW_CONNECTIONS true']
    assert [text(s) for s in plan.reopen] == ['ALTER DATABASE "app_new" ALLOW_CONNECTIONS true']


def test_swap_statements_quote_hostile_names() -> None:
    plan = swap_statements('a"b', "c", "d", {'a"b': True, "c": True})
    assert text(plan.swap[0]) == 'ALTER DATABASE "a""b" RENAME TO "d"'
