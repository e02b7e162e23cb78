# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The operator guides in docs/ name only variables that exist.

A guide that tells an operator at 3 a.m. to set `-e vacuum_allow_ful=true` is worse than none: every
backticked name that starts like a role's variables (its role prefix, or runbook_ for the inventory's)
must be an option of some role's meta/argument_specs.yml or a variable of inventories/example, or else
one of the other names a guide quotes: a tag, a choice of an option, a value of the example inventory.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
# `name`, `name=value`, `name: value`: the name a guide tells the operator to set
BACKTICKED = re.compile(r"`([a-z][a-z0-9_]*)(?=[`=:\s])")
# on a command line: -e name=value, -e '{"name": value}'
EXTRA_VARS = re.compile(r"""(?:-e |\{"|, ")([a-z][a-z0-9_]*)(?:=|": )""")


def role_options() -> tuple[set[str], set[str]]:
    """The options of every role's argument specs, and the choices they offer."""
    names: set[str] = set()
    choices: set[str] = set()
    for spec in (ROOT / "roles").glob("*/meta/argument_specs.yml"):
        for entry in (yaml.safe_load(spec.read_text())["argument_specs"] or {}).values():
            options = (entry or {}).get("options") or {}
            names.update(options)
            for option in options.values():
                choices.update(str(c) for c in option.get("choices") or [])
    return names, choices


def inventory_names() -> tuple[set[str], set[str]]:
    """The runbook_* variables of the example inventory, and the words of their values."""
    names: set[str] = set()
    values: set[str] = set()
    for path in (ROOT / "inventories" / "example").rglob("*.yml"):
        for name, value in re.findall(r"^\s*(runbook_[a-z0-9_]+):(.*)$", path.read_text(), re.M):
            names.add(name)
            values.update(re.findall(r"[a-z0-9_]+", value))
    return names, values


def tags() -> set[str]:
    found: set[str] = set()
    for path in [*(ROOT / "roles").rglob("*.yml"), *(ROOT / "playbooks").glob("*.yml")]:
        for listed in re.findall(r"^\s*tags: \[([^]]*)\]", path.read_text(), re.M):
            found.update(t.strip() for t in listed.split(","))
    return found


def prefixes() -> tuple[str, ...]:
    roles = [p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists()]
    return tuple(f"{r}_" for r in roles) + ("runbook_",)


def test_the_guides_are_there() -> None:
    assert {p.name for p in DOCS} >= {"restore.md", "backup.md", "postgresql.md"}


@pytest.mark.parametrize("guide", DOCS, ids=lambda p: p.name)
def test_every_variable_a_guide_names_exists(guide: Path) -> None:
    options, choices = role_options()
    variables, values = inventory_names()
    known = options | choices | variables | values | tags() | {p.name for p in (ROOT / "roles").iterdir()}
    # a name ending in _ is a prefix the guide explains (`db_health_` + the option)
    text = guide.read_text()
    named = {m for m in BACKTICKED.findall(text) + EXTRA_VARS.findall(text)
             if m.startswith(prefixes()) and not m.endswith("_")}
    unknown = sorted(named - known)
    assert not unknown, f"{guide.name} names variables no role or inventory has: {unknown}"
