# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The threshold logic of runbook.ops.pg_maintenance."""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg_maintenance_plan import (
    Thresholds,
    bloat_crosses,
    bloat_reason,
    bloated,
    check_options,
    check_thresholds,
    crossings,
    dead_ratio,
    display_name,
    human_bytes,
    missing_tables,
    mod_ratio,
    parse_table_name,
    plan,
    still_crosses,
    summary_lines,
    target_estimate,
    vacuum_options,
)

DEFAULTS = Thresholds()
MIB = 1024 * 1024


def fig(schema: str = "public", table: str = "t", live: int = 0, dead: int = 0, mod: int = 0,
        vacuum_age: float | None = 60.0, analyze_age: float | None = 60.0, bloat: tuple[float, int] | None = (0.0, 0),
        indexes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"schema": schema, "table": table, "n_live_tup": live, "n_dead_tup": dead, "n_mod_since_analyze": mod,
            "vacuum_age_s": vacuum_age, "analyze_age_s": analyze_age, **estimate(bloat), "indexes": indexes or []}


def estimate(bloat: tuple[float, int] | None, size: int = 100 * MIB) -> dict[str, Any]:
    """The estimate keys of a table or an index: (ratio, bytes), or None for no estimate."""
    if bloat is None:
        return {"size_bytes": size, "bloat_ratio": None, "bloat_bytes": None, "bloat_note": "no statistics"}
    return {"size_bytes": size, "bloat_ratio": bloat[0], "bloat_bytes": bloat[1], "bloat_note": None}


def idx(name: str, bloat: tuple[float, int] | None, exclusion: bool = False) -> dict[str, Any]:
    return {"name": name, "method": "btree", "valid": True, "exclusion": exclusion, **estimate(bloat)}


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


def test_plan_reindex_forced_takes_the_list() -> None:
    todo, skipped = plan([fig(table="clean", live=100)], "reindex", DEFAULTS, listed=[("public", "clean")], force=True)
    assert todo == [{"schema": "public", "table": "clean", "name": "public.clean", "reasons": ["listed (force)"]}]
    assert skipped == []


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
    ("operation", "full", "allow_full", "error"),
    [
        ("vacuum_analyze", False, False, None),
        ("vacuum", True, True, None),
        ("vacuum", True, False, "allow_full=true"),
        ("vacuum_analyze", True, False, "ACCESS EXCLUSIVE"),
        ("analyze", True, True, "not analyze"),
        ("reindex", False, False, None),  # no table list needed: the bloat thresholds decide
        ("reindex", True, True, "not reindex"),
        ("cluster", False, False, "operation must be one of"),
    ],
)
def test_check_options(operation: str, full: bool, allow_full: bool, error: str | None) -> None:
    problem = check_options(operation, full, allow_full)
    if error is None:
        assert problem is None
    else:
        assert problem is not None and error in problem


@pytest.mark.parametrize(
    ("bloat", "crosses"),
    [
        ((0.5, 10 * MIB), True),  # both at the thresholds reach them
        ((0.4999, 90 * MIB), False),  # ratio just below
        ((0.99, 10 * MIB - 1), False),  # bytes just below: a small relation never qualifies
        ((1.0, 0), False),
        ((0.0, 0), False),
        (None, False),  # no estimate never crosses
    ],
)
def test_bloat_crosses(bloat: tuple[float, int] | None, crosses: bool) -> None:
    assert bloat_crosses(estimate(bloat), DEFAULTS) is crosses
    assert bloat_crosses(None, DEFAULTS) is False


def test_bloat_thresholds_are_options() -> None:
    assert (DEFAULTS.bloat_ratio, DEFAULTS.min_bloat_bytes) == (0.5, 10 * MIB)
    loose = Thresholds(bloat_ratio=0.2, min_bloat_bytes=MIB)
    assert bloat_crosses(estimate((0.25, 2 * MIB)), loose) and not bloat_crosses(estimate((0.25, 2 * MIB)), DEFAULTS)


def test_bloat_reason_names_the_estimate() -> None:
    reason = bloat_reason(estimate((0.8998, 2470 * 8192), size=2745 * 8192), DEFAULTS, "index public.t_pkey: ")
    assert reason == "index public.t_pkey: estimated bloat 90.0% (19.3 MiB of 21.4 MiB; thresholds 50.0% and 10.0 MiB)"


@pytest.mark.parametrize(
    ("operation", "full", "crosses"),
    [("vacuum", True, True), ("vacuum_analyze", True, True),
     ("vacuum", False, False), ("vacuum_analyze", False, False),  # a plain VACUUM does not shrink a table
     ("analyze", False, False), ("reindex", False, False)],  # a table's own bloat is not a reindex reason
)
def test_table_bloat_is_a_reason_only_for_vacuum_full(operation: str, full: bool, crosses: bool) -> None:
    table = fig(live=100000, bloat=(0.9, 30 * MIB))  # no dead tuples: only the bloat could make it cross
    reasons = crossings(table, operation, DEFAULTS, full=full)
    assert bool(reasons) is crosses
    if crosses:
        assert reasons[0].startswith("table estimated bloat 90.0% (30.0 MiB of 100.0 MiB;")


def test_vacuum_full_keeps_the_dead_tuple_reasons() -> None:
    reasons = crossings(fig(live=25000, dead=25000), "vacuum", DEFAULTS, full=True)
    assert reasons == ["25000 dead tuples (50.0%; thresholds 1000 and 10.0%)"]


def test_reindex_crossings_name_each_bloated_index() -> None:
    table = fig(indexes=[idx("a_pkey", (0.9, 20 * MIB)), idx("a_v", (0.01, 8192)), idx("a_w", (0.6, 12 * MIB))])
    reasons = crossings(table, "reindex", DEFAULTS)
    assert [r.split(":")[0] for r in reasons] == ["index public.a_pkey", "index public.a_w"]


def test_plan_reindex_without_list_takes_the_bloated_indexes() -> None:
    figures = [
        fig(table="b", indexes=[idx("b_pkey", (0.9, 20 * MIB)), idx("b_v_idx", (0.0036, 8192))]),
        fig(table="a", indexes=[idx("a_excl", (0.9, 20 * MIB), exclusion=True), idx("A_Mixed", (0.7, 50 * MIB))]),
        fig(table="tidy", bloat=(0.9, 90 * MIB), indexes=[idx("tidy_pkey", (0.004, 57344))]),  # the table's own bloat
        fig(table="no_stats", indexes=[idx("no_stats_pkey", None)]),
    ]
    todo, skipped = plan(figures, "reindex", DEFAULTS)
    assert [(t["table"], t["index"]) for t in todo] == [("a", "A_Mixed"), ("b", "b_pkey")]
    assert todo[0]["reasons"] == ['index public."A_Mixed": estimated bloat 70.0% (50.0 MiB of 100.0 MiB; '
                                  "thresholds 50.0% and 10.0 MiB)"]
    assert todo[1]["name"] == "public.b" and skipped == []


def test_plan_reindex_with_list_lets_the_thresholds_decide() -> None:
    figures = [fig(table="b", indexes=[idx("b_pkey", (0.9, 20 * MIB))]), fig(table="tidy", indexes=[idx("t", (0, 0))]),
               fig(table="other", indexes=[idx("other_pkey", (0.9, 20 * MIB))])]
    todo, skipped = plan(figures, "reindex", DEFAULTS, listed=[("public", "tidy"), ("public", "b")])
    assert [(t["table"], t.get("index")) for t in todo] == [("b", "b_pkey")]
    assert skipped == [{"schema": "public", "table": "tidy", "name": "public.tidy", "reasons": []}]
    todo, skipped = plan(figures, "reindex", DEFAULTS, listed=[("public", "tidy"), ("public", "b")], force=True)
    assert [(t["table"], t.get("index")) for t in todo] == [("tidy", None), ("b", None)] and skipped == []


def test_plan_vacuum_full_takes_the_bloated_tables() -> None:
    figures = [fig(table="bloated", live=100000, bloat=(0.9, 30 * MIB)), fig(table="small", bloat=(0.9, MIB)),
               fig(table="packed", live=100000, bloat=(0.0, 0))]
    assert [t["table"] for t in plan(figures, "vacuum", DEFAULTS, full=True)[0]] == ["bloated"]
    assert plan(figures, "vacuum", DEFAULTS)[0] == []  # without full the bloat is only reported


@pytest.mark.parametrize(
    ("entry", "after", "expected"),
    [
        ({"index": "b_pkey"}, fig(indexes=[idx("b_pkey", (0.0036, 8192))]), []),  # rebuilt
        ({"index": "b_pkey"}, fig(indexes=[idx("b_pkey", (0.9, 20 * MIB))]), ["index public.b_pkey: estimated"]),
        ({"index": "b_pkey"}, fig(indexes=[]), []),  # gone meanwhile
        ({"index": "b_pkey"}, None, []),
        ({}, fig(bloat=(0.9, 30 * MIB)), ["table estimated"]),  # VACUUM FULL that did not pack it
        ({}, fig(bloat=(0.01, 8192)), []),
    ],
)
def test_still_crosses(entry: dict[str, Any], after: dict[str, Any] | None, expected: list[str]) -> None:
    entry = {"schema": "public", "table": "t", "name": "public.t", **entry}
    found = still_crosses(entry, after, "reindex" if "index" in entry else "vacuum", DEFAULTS, full=True)
    assert [r[:len(e)] for r, e in zip(found, expected)] == expected and len(found) == len(expected)


def test_still_crosses_of_a_forced_reindex_table_checks_every_index() -> None:
    after = fig(indexes=[idx("t_pkey", (0.9, 20 * MIB)), idx("t_v", (0.0, 0))])
    assert len(still_crosses({"schema": "public", "table": "t"}, after, "reindex", DEFAULTS)) == 1


def test_target_estimate() -> None:
    table = fig(bloat=(0.9, 30 * MIB), indexes=[idx("t_pkey", (0.5, 11 * MIB))])
    assert target_estimate({"table": "t"}, table) == estimate((0.9, 30 * MIB))
    assert target_estimate({"table": "t", "index": "t_pkey"}, table) == estimate((0.5, 11 * MIB))
    assert target_estimate({"table": "t", "index": "gone"}, table) is None
    assert target_estimate({"table": "t"}, None) is None


def test_bloated_reports_tables_and_indexes_whatever_the_operation() -> None:
    indexes = [idx("b_pkey", (0.9, 20 * MIB)), idx("b_v", (0, 0)), idx("b_excl", (0.8, 40 * MIB), exclusion=True)]
    figures = [fig(table="b", bloat=(0.9, 30 * MIB), indexes=indexes),
               fig(table="tidy", indexes=[idx("tidy_pkey", (0.004, 57344))])]
    found = bloated(figures, DEFAULTS)
    assert [(b["table"], b["index"]) for b in found] == [("b", None), ("b", "b_pkey"), ("b", "b_excl")]
    assert found[0] == {"schema": "public", "table": "b", "name": "public.b", "index": None, "size_bytes": 100 * MIB,
                        "bloat_bytes": 30 * MIB, "bloat_ratio": 0.9}


@pytest.mark.parametrize(
    ("kw", "error"),
    [({}, None), ({"bloat_ratio": 0.0, "min_bloat_bytes": 0}, None), ({"bloat_ratio": 1.0}, None),
     ({"bloat_ratio": 1.5}, "from 0 to 1"), ({"bloat_ratio": -0.1}, "from 0 to 1"),
     ({"min_bloat_bytes": -1}, "min_bloat_bytes cannot be negative"), ({"dead_ratio": -1}, "dead_ratio cannot"),
     ({"mod_ratio": -1}, "mod_ratio cannot be negative")],
)
def test_check_thresholds(kw: dict[str, Any], error: str | None) -> None:
    problem = check_thresholds(Thresholds(**kw))
    assert problem is None if error is None else (problem is not None and error in problem)


@pytest.mark.parametrize(("size", "text"), [(0, "0 B"), (None, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
                                            (10 * MIB, "10.0 MiB"), (1536 * MIB, "1.5 GiB"),
                                            (3 * 1024 * 1024 * MIB, "3.0 TiB")])
def test_human_bytes(size: int | None, text: str) -> None:
    assert human_bytes(size) == text


def _entry(statement: str = 'VACUUM (ANALYZE) "public"."t"', **extra: Any) -> dict[str, Any]:
    return {"schema": "public", "table": "t", "name": "public.t", "reasons": ["25000 dead tuples", "25000 rows changed"],
            "statement": statement, "before": {"n_dead_tup": 25000, "n_mod_since_analyze": 25000}, **extra}


def test_summary_lines_of_a_plan_name_the_reasons_and_the_statement() -> None:
    result = {"tables": [_entry()], "left_alone": [{"name": "public.u"}], "examined": 2, "bloated": []}
    assert summary_lines(result, "vacuum_analyze", False, ran=False) == [
        'public.t: 25000 dead tuples; 25000 rows changed -> VACUUM (ANALYZE) "public"."t"',
        "public.u: below every threshold, left alone"]


def test_summary_lines_after_a_run_give_duration_figures_and_failures() -> None:
    done = _entry(duration_s=0.42, after={"n_dead_tup": 0, "n_mod_since_analyze": 0})
    failed = {**_entry(), "name": "public.v", "statement": 'VACUUM (ANALYZE) "public"."v"', "duration_s": 1.0,
              "error": "canceling statement due to lock timeout"}
    lines = summary_lines({"tables": [done, failed], "examined": 2}, "vacuum_analyze", False, ran=True)
    assert lines == [
        'public.t: 25000 dead tuples; 25000 rows changed -> VACUUM (ANALYZE) "public"."t" in 0.42 s; '
        "dead tuples 25000 -> 0, changed rows 25000 -> 0",
        'public.v: 25000 dead tuples; 25000 rows changed -> VACUUM (ANALYZE) "public"."v" FAILED: '
        "canceling statement due to lock timeout"]


def test_summary_lines_of_a_rewrite_give_the_bloat_before_and_after() -> None:
    entry = _entry('REINDEX INDEX CONCURRENTLY "public"."t_pkey"', index="t_pkey", reasons=["index bloated"],
                   duration_s=2.5, bloat_before={"bloat_ratio": 0.9}, bloat_after={"bloat_ratio": 0.004})
    assert summary_lines({"tables": [entry]}, "reindex", False, ran=True) == [
        'public.t: index bloated -> REINDEX INDEX CONCURRENTLY "public"."t_pkey" in 2.5 s; estimated bloat 90.0% -> 0.4%']
    vacuum_full = _entry('VACUUM (FULL, ANALYZE) "public"."t"', duration_s=1, bloat_before={"bloat_ratio": 0.5},
                         bloat_after=None, after=None)
    assert summary_lines({"tables": [vacuum_full]}, "vacuum", True, ran=True)[0].endswith(
        "in 1 s; dead tuples 25000 -> ?, changed rows 25000 -> ?; estimated bloat 50.0% -> ?")


@pytest.mark.parametrize(
    ("operation", "full", "left_as_is"),
    [("vacuum_analyze", False, ["table", "index"]), ("reindex", False, ["table"]), ("vacuum", True, ["index"])],
)
def test_summary_lines_report_the_bloat_the_operation_leaves(operation: str, full: bool, left_as_is: list[str]) -> None:
    base = {"schema": "public", "table": "b", "name": "public.b", "size_bytes": 40 * MIB}
    found = [{**base, "index": None, "bloat_bytes": 30 * MIB, "bloat_ratio": 0.75},
             {**base, "index": "B_pkey", "bloat_bytes": 20 * MIB, "bloat_ratio": 0.5}]
    lines = summary_lines({"tables": [], "examined": 7, "bloated": found}, operation, full, ran=False)
    expected = {"table": f"public.b table: estimated bloat 75.0% (30.0 MiB), left as it is by {operation}",
                "index": f'public.b index public."B_pkey": estimated bloat 50.0% (20.0 MiB), left as it is by {operation}'}
    assert lines == ["nothing to do (7 tables examined)"] + [expected[kind] for kind in left_as_is]
