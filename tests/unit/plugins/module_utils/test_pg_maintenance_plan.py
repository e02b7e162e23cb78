# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The threshold logic of runbook.ops.pg_maintenance."""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_maintenance_plan import (
    Thresholds,
    check_options,
    crossings,
    dead_ratio,
    display_name,
    missing_tables,
    mod_ratio,
    parse_table_name,
    plan,
    vacuum_options,
)

DEFAULTS = Thresholds()


def fig(schema: str = "public", table: str = "t", live: int = 0, dead: int = 0, mod: int = 0,
        vacuum_age: float | None = 60.0, analyze_age: float | None = 60.0) -> dict[str, Any]:
    return {"schema": schema, "table": table, "n_live_tup": live, "n_dead_tup": dead, "n_mod_since_analyze": mod,
            "vacuum_age_s": vacuum_age, "analyze_age_s": analyze_age}


@pytest.mark.parametrize(
    ("live", "dead", "expected"),
    [(0, 0, 0.0), (None, None, 0.0), (100, 0, 0.0), (0, 100, 1.0), (900, 100, 0.1), (1, 3, 0.75), (-5, 10, 1.0)],
)
def test_dead_ratio(live: Any, dead: Any, expected: float) -> None:
    assert dead_ratio(live, dead) == pytest.approx(expected)


@pytest.mark.parametrize(("live", "mod", "expected"), [(0, 0, 0.0), (100, 0, 0.0), (100, 10, 0.1), (0, 5, 1.0),
                                                       (25000, 75000, 3.0)])
def test_mod_ratio(live: int, mod: int, expected: float) -> None:
    assert mod_ratio(live, mod) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("figures", "operation", "crosses"),
    [
        (fig(live=9000, dead=1000), "vacuum", True),  # both at the threshold reach it
        (fig(live=9001, dead=1000), "vacuum", False),  # ratio just below
        (fig(live=100, dead=999), "vacuum", False),  # ratio far above, too few dead tuples
        (fig(live=25000, dead=25000), "vacuum", True),
        (fig(live=0, dead=20000), "vacuum", True),
        (fig(live=0, dead=0), "vacuum", False),
        (fig(live=1000, dead=0, mod=5000), "vacuum", False),  # modified rows are not a vacuum reason
        (fig(live=1000, dead=0, mod=5000), "analyze", True),
        (fig(live=1000, dead=0, mod=5000), "vacuum_analyze", True),  # either reason
        (fig(live=25000, dead=25000, mod=0), "analyze", False),  # dead tuples are not an analyze reason
        (fig(live=25000, dead=25000, mod=0), "vacuum_analyze", True),
        (fig(live=100000, mod=9999), "analyze", False),
        (fig(live=100000, mod=10000), "analyze", True),
        (fig(live=100, mod=999), "analyze", False),
    ],
)
def test_crossings_counts(figures: dict[str, Any], operation: str, crosses: bool) -> None:
    assert bool(crossings(figures, operation, DEFAULTS)) is crosses


@pytest.mark.parametrize(
    ("vacuum_age", "max_age", "crosses"),
    [(None, 86400.0, True), (86399.0, 86400.0, False), (86400.0, 86400.0, True), (10**7, None, False)],
)
def test_vacuum_age(vacuum_age: float | None, max_age: float | None, crosses: bool) -> None:
    thresholds = Thresholds(vacuum_max_age_s=max_age)
    reasons = crossings(fig(vacuum_age=vacuum_age), "vacuum", thresholds)
    assert bool(reasons) is crosses
    assert not crossings(fig(vacuum_age=vacuum_age), "analyze", thresholds)  # an analyze ignores the vacuum age


@pytest.mark.parametrize(("analyze_age", "crosses"), [(None, True), (3599.0, False), (3600.0, True)])
def test_analyze_age(analyze_age: float | None, crosses: bool) -> None:
    thresholds = Thresholds(analyze_max_age_s=3600.0)
    assert bool(crossings(fig(analyze_age=analyze_age), "analyze", thresholds)) is crosses
    assert bool(crossings(fig(analyze_age=analyze_age), "vacuum_analyze", thresholds)) is crosses
    assert not crossings(fig(analyze_age=analyze_age), "vacuum", thresholds)


def test_reasons_name_the_figures() -> None:
    reasons = crossings(fig(live=25000, dead=25000), "vacuum", DEFAULTS)
    assert reasons == ["25000 dead tuples (50.0%; thresholds 1000 and 10.0%)"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("public.orders", ("public", "orders")),
        ("orders", ("public", "orders")),
        ("Sales.Orders", ("Sales", "Orders")),  # no case folding
        ('public.x"; DROP TABLE y; --', ("public", 'x"; DROP TABLE y; --')),
        ('x"; DROP TABLE y; --', ("public", 'x"; DROP TABLE y; --')),
        ('"my.schema"."a.b"', ("my.schema", "a.b")),
        ('"we""ird".t', ('we"ird', "t")),
        ('s."t""q"', ("s", 't"q')),
        ('"only"', ("public", "only")),
        ("s.t.u", ("s", "t.u")),  # the table is everything after the first dot
        ("  public.t  ", ("public", "t")),
    ],
)
def test_parse_table_name(name: str, expected: tuple[str, str]) -> None:
    assert parse_table_name(name) == expected


@pytest.mark.parametrize("name", ["", "  ", ".t", "s.", '"unterminated', '"a"x', '"a"."b"."c"', '"a".'])
def test_parse_table_name_rejects(name: str) -> None:
    with pytest.raises(ValueError):
        parse_table_name(name)


@pytest.mark.parametrize(
    ("schema", "table", "expected"),
    [("public", "orders", "public.orders"), ("public", "Orders", 'public."Orders"'),
     ("public", 'x"; DROP TABLE y; --', 'public."x""; DROP TABLE y; --"'), ("a b", "t1", '"a b".t1'),
     ("public", "1t", 'public."1t"')],
)
def test_display_name(schema: str, table: str, expected: str) -> None:
    assert display_name(schema, table) == expected


def test_plan_without_list_keeps_only_crossing_tables() -> None:
    figures = [fig(table="b", live=1, dead=5000), fig(table="clean", live=100), fig(table="a", live=0, dead=2000)]
    todo, skipped = plan(figures, "vacuum", DEFAULTS)
    assert [t["table"] for t in todo] == ["a", "b"]
    assert skipped == []


def test_plan_with_list() -> None:
    figures = [fig(table="dirty", live=1, dead=5000), fig(table="clean", live=100), fig(table="other", dead=9000)]
    listed = [("public", "clean"), ("public", "dirty"), ("public", "clean")]
    todo, skipped = plan(figures, "vacuum", DEFAULTS, listed=listed)
    assert [t["table"] for t in todo] == ["dirty"]
    assert [t["table"] for t in skipped] == ["clean"]
    todo, skipped = plan(figures, "vacuum", DEFAULTS, listed=listed, force=True)
    assert [t["table"] for t in todo] == ["clean", "dirty"] and skipped == []


def test_plan_force_needs_a_list() -> None:
    todo, _skipped = plan([fig(table="clean", live=100)], "vacuum", DEFAULTS, force=True)
    assert todo == []


def test_plan_reindex_takes_the_list() -> None:
    todo, _skipped = plan([fig(table="clean", live=100)], "reindex", DEFAULTS, listed=[("public", "clean")])
    assert [t["table"] for t in todo] == ["clean"]


def test_missing_tables() -> None:
    existing = [("public", "a"), ("s", "b")]
    assert missing_tables([("public", "a"), ("s", "b")], existing) == []
    assert missing_tables([("public", "A"), ("public", "b"), ("public", "A")], existing) == ['public."A"', "public.b"]


@pytest.mark.parametrize(
    ("operation", "full", "expected"),
    [("vacuum", False, []), ("vacuum_analyze", False, ["ANALYZE"]), ("vacuum", True, ["FULL", "ANALYZE"]),
     ("vacuum_analyze", True, ["FULL", "ANALYZE"])],
)
def test_vacuum_options(operation: str, full: bool, expected: list[str]) -> None:
    assert vacuum_options(operation, full) == expected


def test_vacuum_options_rejects_other_operations() -> None:
    with pytest.raises(ValueError):
        vacuum_options("analyze", False)


@pytest.mark.parametrize(
    ("operation", "tables", "full", "allow_full", "error"),
    [
        ("vacuum_analyze", [], False, False, None),
        ("vacuum", [], True, True, None),
        ("vacuum", [], True, False, "allow_full=true"),
        ("vacuum_analyze", ["t"], True, False, "ACCESS EXCLUSIVE"),
        ("analyze", [], True, True, "not analyze"),
        ("reindex", [], False, False, "list the tables"),
        ("reindex", ["t"], False, False, None),
        ("cluster", [], False, False, "operation must be one of"),
    ],
)
def test_check_options(operation: str, tables: list[str], full: bool, allow_full: bool, error: str | None) -> None:
    problem = check_options(operation, tables, full, allow_full)
    if error is None:
        assert problem is None
    else:
        assert problem is not None and error in problem
