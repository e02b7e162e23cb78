# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure decision logic of runbook.ops.pg_maintenance: which tables need which operation.

No database access here: the module reads pg_stat_user_tables and hands the figures
(one dict per table) to these functions, so that every threshold rule is unit tested.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

OPERATIONS = ("vacuum", "vacuum_analyze", "analyze", "reindex")
# Operations whose need is decided by thresholds; reindex runs on the listed tables only.
VACUUMS = ("vacuum", "vacuum_analyze")
ANALYZES = ("analyze", "vacuum_analyze")


@dataclass(frozen=True)
class Thresholds:
    """A table crosses when (dead ratio AND dead count) or (modified ratio AND modified count) or an age."""

    dead_ratio: float = 0.1
    min_dead_tuples: int = 1000
    mod_ratio: float = 0.1
    min_mod_tuples: int = 1000
    vacuum_max_age_s: float | None = None
    analyze_max_age_s: float | None = None


def dead_ratio(live: int | None, dead: int | None) -> float:
    """n_dead_tup / (n_live_tup + n_dead_tup); 0.0 for an empty table."""
    live, dead = max(int(live or 0), 0), max(int(dead or 0), 0)
    total = live + dead
    return dead / total if total else 0.0


def mod_ratio(live: int | None, modified: int | None) -> float:
    """Rows changed since the last analyze per live row (autovacuum's own measure); 1.0+ is possible."""
    live, modified = max(int(live or 0), 0), max(int(modified or 0), 0)
    if modified == 0:
        return 0.0
    return modified / live if live else 1.0  # an empty table that changed: all of it changed


def parse_table_name(name: str, default_schema: str = "public") -> tuple[str, str]:
    """'schema.table' -> (schema, table); a bare 'table' is in default_schema. No case folding.

    A part that starts with a double quote is a quoted identifier ('"my.schema"."T"', "" for a quote
    inside). Otherwise the schema is everything before the first dot and the table everything after
    it, quotes and all: 'public.x"; DROP TABLE y; --' names the table 'x"; DROP TABLE y; --'.
    """
    text = name.strip()
    if text.startswith('"'):
        schema, rest = _quoted(text, name)
        if not rest:
            return _checked(default_schema, schema, name)
        if not rest.startswith("."):
            raise ValueError(f"unexpected text after a quoted name in {name!r}")
        return _checked(schema, _part(rest[1:], name), name)
    schema, dot, rest = text.partition(".")
    if not dot:
        return _checked(default_schema, schema, name)
    return _checked(schema, _part(rest, name), name)


def _part(text: str, name: str) -> str:
    """The table part: quoted ('"a.b"') or literal."""
    if text.startswith('"'):
        value, rest = _quoted(text, name)
        if rest:
            raise ValueError(f"too many parts in table name {name!r} (use schema.table)")
        return value
    return text


def _quoted(text: str, name: str) -> tuple[str, str]:
    """Parse '"..."' at the start of text: (value, the rest after the closing quote)."""
    buf, i = [], 1
    while True:
        k = text.find('"', i)
        if k < 0:
            raise ValueError(f"unterminated quote in table name {name!r}")
        buf.append(text[i:k])
        if text.startswith('"', k + 1):
            buf.append('"')
            i = k + 2
            continue
        return "".join(buf), text[k + 1:]


def _checked(schema: str, table: str, name: str) -> tuple[str, str]:
    if not schema or not table:
        raise ValueError(f"an empty part in table name {name!r} (use schema.table)")
    return schema, table


def display_name(schema: str, table: str) -> str:
    """How a table reads in messages: schema.table, quoted only where needed."""
    def part(text: str) -> str:
        if text and text.replace("_", "a").isalnum() and text == text.lower() and not text[0].isdigit():
            return text
        return '"' + text.replace('"', '""') + '"'
    return f"{part(schema)}.{part(table)}"


def crossings(figures: Mapping[str, Any], operation: str, thresholds: Thresholds) -> list[str]:
    """Why the table needs the operation: one reason per crossed threshold; empty when it does not."""
    reasons: list[str] = []
    live, dead = figures.get("n_live_tup"), figures.get("n_dead_tup")
    if operation in VACUUMS:
        ratio = dead_ratio(live, dead)
        if int(dead or 0) >= thresholds.min_dead_tuples and ratio >= thresholds.dead_ratio:
            reasons.append(f"{int(dead or 0)} dead tuples ({ratio:.1%}; thresholds {thresholds.min_dead_tuples} "
                           f"and {thresholds.dead_ratio:.1%})")
        if thresholds.vacuum_max_age_s is not None:
            age = figures.get("vacuum_age_s")
            if age is None:
                reasons.append("never vacuumed")
            elif float(age) >= thresholds.vacuum_max_age_s:
                reasons.append(f"last vacuumed {_human(float(age))} ago (threshold {_human(thresholds.vacuum_max_age_s)})")
    if operation in ANALYZES:
        modified = figures.get("n_mod_since_analyze")
        ratio = mod_ratio(live, modified)
        if int(modified or 0) >= thresholds.min_mod_tuples and ratio >= thresholds.mod_ratio:
            reasons.append(f"{int(modified or 0)} rows changed since the last analyze ({ratio:.1%} of live rows; "
                           f"thresholds {thresholds.min_mod_tuples} and {thresholds.mod_ratio:.1%})")
        if thresholds.analyze_max_age_s is not None:
            age = figures.get("analyze_age_s")
            if age is None:
                reasons.append("never analyzed")
            elif float(age) >= thresholds.analyze_max_age_s:
                reasons.append(f"last analyzed {_human(float(age))} ago (threshold {_human(thresholds.analyze_max_age_s)})")
    return reasons


def plan(all_figures: list[Mapping[str, Any]], operation: str, thresholds: Thresholds, *,
         listed: list[tuple[str, str]] | None = None, force: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(todo, skipped): tables that need the operation, with their reasons, and the listed tables that do not.

    Without listed tables every table is a candidate and only the ones crossing a threshold are kept.
    With listed tables only those are candidates; force (and reindex, which has no threshold) keeps them all.
    """
    by_name = {(f["schema"], f["table"]): f for f in all_figures}
    if listed:
        candidates = [by_name[key] for key in dict.fromkeys(listed)]
    else:
        candidates = sorted(all_figures, key=lambda f: (f["schema"], f["table"]))
    todo: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for fig in candidates:
        if operation == "reindex" or (force and listed):
            reasons = ["listed" + (" (force)" if operation != "reindex" else "")]
        else:
            reasons = crossings(fig, operation, thresholds)
        entry = {"schema": fig["schema"], "table": fig["table"], "name": display_name(fig["schema"], fig["table"]),
                 "reasons": reasons}
        if reasons:
            todo.append(entry)
        elif listed:
            skipped.append(entry)
    return todo, skipped


def missing_tables(listed: list[tuple[str, str]], existing: list[tuple[str, str]]) -> list[str]:
    """The listed tables that do not exist, as display names, in the order given."""
    have = set(existing)
    return [display_name(s, t) for s, t in dict.fromkeys(listed) if (s, t) not in have]


def vacuum_options(operation: str, full: bool) -> list[str]:
    """Keywords of VACUUM (...) for the operation. FULL always brings ANALYZE: VACUUM FULL alone leaves
    n_dead_tup and last_vacuum as they were, so the table would still cross on the next run."""
    if operation not in VACUUMS:
        raise ValueError(f"not a vacuum operation: {operation}")
    opts = ["FULL"] if full else []
    if operation == "vacuum_analyze" or full:
        opts.append("ANALYZE")
    return opts


def check_options(operation: str, tables: list[str] | None, full: bool, allow_full: bool) -> str | None:
    """The first reason the options cannot run together, or None."""
    if operation not in OPERATIONS:
        return f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}"
    if full and not allow_full:
        return ("full=true runs VACUUM FULL, which takes an ACCESS EXCLUSIVE lock on each table (no reads, no "
                "writes) while it rewrites it; set allow_full=true as well to confirm")
    if full and operation not in VACUUMS:
        return f"full=true applies to the vacuum and vacuum_analyze operations, not {operation}"
    if operation == "reindex" and not tables:
        return "operation reindex has no threshold: list the tables to reindex in tables"
    return None


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
