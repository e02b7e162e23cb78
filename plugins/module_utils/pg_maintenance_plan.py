# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure decision logic of runbook.ops.pg_maintenance: which tables need which operation.

No database access here: the module reads pg_stat_user_tables and the bloat estimates (pg_bloat)
and hands the figures (one dict per table, its indexes under "indexes") to these functions, so that
every threshold rule is unit tested.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

OPERATIONS = ("vacuum", "vacuum_analyze", "analyze", "reindex")
VACUUMS = ("vacuum", "vacuum_analyze")
ANALYZES = ("analyze", "vacuum_analyze")


@dataclass(frozen=True)
class Thresholds:
    """A table crosses when (dead ratio AND dead count) or (modified ratio AND modified count) or an age.

    Estimated bloat (ratio AND bytes) decides only what rewrites a relation: VACUUM FULL for a table,
    REINDEX for an index. A plain VACUUM does not shrink a table, so bloat as its reason would keep a
    table crossing run after run.
    """

    dead_ratio: float = 0.1
    min_dead_tuples: int = 1000
    mod_ratio: float = 0.1
    min_mod_tuples: int = 1000
    vacuum_max_age_s: float | None = None
    analyze_max_age_s: float | None = None
    bloat_ratio: float = 0.5
    min_bloat_bytes: int = 10 * 1024 * 1024


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


def bloat_crosses(estimate: Mapping[str, Any] | None, thresholds: Thresholds) -> bool:
    """Whether a table's or an index's estimate reaches both bloat thresholds; never without an estimate."""
    if not estimate or estimate.get("bloat_ratio") is None or estimate.get("bloat_bytes") is None:
        return False
    return (int(estimate["bloat_bytes"]) >= thresholds.min_bloat_bytes
            and float(estimate["bloat_ratio"]) >= thresholds.bloat_ratio)


def bloat_reason(estimate: Mapping[str, Any], thresholds: Thresholds, what: str = "") -> str:
    """One line that names the estimate and the thresholds it crosses."""
    return (f"{what}estimated bloat {float(estimate['bloat_ratio']):.1%} ({human_bytes(estimate['bloat_bytes'])} of "
            f"{human_bytes(estimate.get('size_bytes'))}; thresholds {thresholds.bloat_ratio:.1%} and "
            f"{human_bytes(thresholds.min_bloat_bytes)})")


def index_crossings(figures: Mapping[str, Any], thresholds: Thresholds) -> list[tuple[Mapping[str, Any], str]]:
    """(index, reason) for each index of the table whose estimated bloat crosses.

    Indexes of exclusion constraints are left out: REINDEX CONCURRENTLY refuses them, and a plain
    REINDEX blocks the table's writes for the whole rebuild.
    """
    found = []
    for index in figures.get("indexes") or []:
        if not index.get("exclusion") and bloat_crosses(index, thresholds):
            what = f"index {display_name(figures['schema'], index['name'])}: "
            found.append((index, bloat_reason(index, thresholds, what)))
    return found


def crossings(figures: Mapping[str, Any], operation: str, thresholds: Thresholds, *, full: bool = False) -> list[str]:
    """Why the table needs the operation: one reason per crossed threshold; empty when it does not.

    For reindex, one reason per index of the table that crosses; with full, the table's own bloat counts.
    """
    if operation == "reindex":
        return [reason for _index, reason in index_crossings(figures, thresholds)]
    reasons: list[str] = []
    live, dead = figures.get("n_live_tup"), figures.get("n_dead_tup")
    if operation in VACUUMS and full and bloat_crosses(figures, thresholds):
        reasons.append(bloat_reason(figures, thresholds, "table "))
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


def candidates(all_figures: list[Mapping[str, Any]], listed: list[tuple[str, str]] | None) -> list[Mapping[str, Any]]:
    """The listed tables in the order given (once each), or every table by name."""
    if listed:
        by_name = {(f["schema"], f["table"]): f for f in all_figures}
        return [by_name[key] for key in dict.fromkeys(listed)]
    return sorted(all_figures, key=lambda f: (f["schema"], f["table"]))


def plan(all_figures: list[Mapping[str, Any]], operation: str, thresholds: Thresholds, *,
         listed: list[tuple[str, str]] | None = None, force: bool = False,
         full: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(todo, skipped): what needs the operation, with the reasons, and the listed tables that do not.

    Without listed tables every table is a candidate and only the ones crossing a threshold are kept.
    With listed tables only those are candidates; force keeps them all. A reindex decided by the
    thresholds gives one entry per bloated index (key "index"), so that an index that is not bloated
    is never rebuilt; a forced one gives one entry per table (REINDEX TABLE).
    """
    todo: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for fig in candidates(all_figures, listed):
        entry = {"schema": fig["schema"], "table": fig["table"], "name": display_name(fig["schema"], fig["table"])}
        if force and listed:
            todo.append({**entry, "reasons": ["listed (force)"]})
        elif operation == "reindex":
            found = index_crossings(fig, thresholds)
            todo.extend({**entry, "index": index["name"], "reasons": [reason]} for index, reason in found)
            if not found and listed:
                skipped.append({**entry, "reasons": []})
        else:
            reasons = crossings(fig, operation, thresholds, full=full)
            if reasons:
                todo.append({**entry, "reasons": reasons})
            elif listed:
                skipped.append({**entry, "reasons": reasons})
    return todo, skipped


def find_index(figures: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    """The index of that name among the table's figures (REINDEX CONCURRENTLY keeps the name, not the oid)."""
    for index in (figures or {}).get("indexes") or []:
        if index.get("name") == name:
            return index
    return None


def target_estimate(entry: Mapping[str, Any], figures: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The estimate of what the entry's statement rewrites: its index, else the table."""
    source = find_index(figures, entry["index"]) if "index" in entry else figures
    if source is None:
        return None
    return {key: source.get(key) for key in ("size_bytes", "bloat_ratio", "bloat_bytes", "bloat_note")}


def still_crosses(entry: Mapping[str, Any], after: Mapping[str, Any] | None, operation: str, thresholds: Thresholds,
                  *, full: bool = False) -> list[str]:
    """The thresholds the entry's table (or, for an index entry, its index) still crosses after the statement."""
    if after is None:
        return []
    if "index" in entry:
        index = find_index(after, entry["index"])
        if index is None or not bloat_crosses(index, thresholds):
            return []
        return [bloat_reason(index, thresholds, f"index {display_name(after['schema'], index['name'])}: ")]
    return crossings(after, operation, thresholds, full=full)


def bloated(figures: list[Mapping[str, Any]], thresholds: Thresholds) -> list[dict[str, Any]]:
    """Every table and index among figures whose estimated bloat crosses, whatever the operation.

    Only REINDEX (indexes) and VACUUM FULL (tables) give the space back; this is what the other
    operations report instead of acting on it.
    """
    found: list[dict[str, Any]] = []
    for fig in figures:
        base = {"schema": fig["schema"], "table": fig["table"], "name": display_name(fig["schema"], fig["table"])}
        relations = [(None, fig)] + [(index["name"], index) for index in fig.get("indexes") or []]
        for index_name, estimate in relations:
            if bloat_crosses(estimate, thresholds):
                found.append({**base, "index": index_name, "size_bytes": estimate.get("size_bytes"),
                              "bloat_bytes": estimate["bloat_bytes"], "bloat_ratio": estimate["bloat_ratio"]})
    return found


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


def check_thresholds(thresholds: Thresholds) -> str | None:
    """The first threshold out of range, or None."""
    for name in ("dead_ratio", "mod_ratio"):
        if getattr(thresholds, name) < 0:
            return f"{name} cannot be negative"
    if not 0 <= thresholds.bloat_ratio <= 1:
        return f"bloat_ratio is the wasted share of a relation, from 0 to 1, not {thresholds.bloat_ratio}"
    if thresholds.min_bloat_bytes < 0:
        return "min_bloat_bytes cannot be negative"
    return None


def check_options(operation: str, full: bool, allow_full: bool) -> str | None:
    """The first reason the options cannot run together, or None."""
    if operation not in OPERATIONS:
        return f"operation must be one of {', '.join(OPERATIONS)}, not {operation!r}"
    if full and not allow_full:
        return ("full=true runs VACUUM FULL, which takes an ACCESS EXCLUSIVE lock on each table (no reads, no "
                "writes) while it rewrites it; set allow_full=true as well to confirm")
    if full and operation not in VACUUMS:
        return f"full=true applies to the vacuum and vacuum_analyze operations, not {operation}"
    return None


def summary_lines(result: Mapping[str, Any], operation: str, full: bool, *, ran: bool) -> list[str]:
    """One line per statement (why -> what, and after a run how long and the figures before -> after),
    one per listed table left alone, one per bloated relation this operation leaves as it is.

    The module returns these so that a playbook prints them as they are, without templating the figures.
    """
    lines = []
    for entry in result.get("tables") or []:
        line = f"{entry['name']}: {'; '.join(entry['reasons'])} -> {entry['statement']}"
        if ran and "error" in entry:
            line += f" FAILED: {entry['error']}"
        elif ran:
            line += f" in {entry.get('duration_s')} s" + "".join(_changes(entry, operation, full))
        lines.append(line)
    lines.extend(f"{entry['name']}: below every threshold, left alone" for entry in result.get("left_alone") or [])
    if not result.get("tables"):
        lines.append(f"nothing to do ({result.get('examined', 0)} tables examined)")
    for found in result.get("bloated") or []:
        if (found["index"] and operation != "reindex") or (not found["index"] and not full):
            what = f" index {display_name(found['schema'], found['index'])}" if found["index"] else " table"
            lines.append(f"{found['name']}{what}: estimated bloat {float(found['bloat_ratio']):.1%} "
                         f"({human_bytes(found['bloat_bytes'])}), left as it is by {operation}")
    return lines


def _changes(entry: Mapping[str, Any], operation: str, full: bool) -> list[str]:
    """'; dead tuples 25000 -> 0, changed rows 25000 -> 0' and, for a rewrite, the estimated bloat before -> after."""
    before, after = entry.get("before") or {}, entry.get("after") or {}
    parts = []
    if operation != "reindex":
        parts.append(f"; dead tuples {before.get('n_dead_tup', '?')} -> {after.get('n_dead_tup', '?')}, changed rows "
                     f"{before.get('n_mod_since_analyze', '?')} -> {after.get('n_mod_since_analyze', '?')}")
    was, now = entry.get("bloat_before") or {}, entry.get("bloat_after") or {}
    if (operation == "reindex" or full) and was.get("bloat_ratio") is not None:
        now_text = f"{float(now['bloat_ratio']):.1%}" if now.get("bloat_ratio") is not None else "?"
        parts.append(f"; estimated bloat {float(was['bloat_ratio']):.1%} -> {now_text}")
    return parts


def human_bytes(size: int | float | None) -> str:
    """Bytes as a reader wants them: 512 B, 10.0 MiB, 1.5 GiB."""
    value = float(size or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
