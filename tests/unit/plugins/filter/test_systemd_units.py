# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.systemd_units import FilterModule, systemd_units

# the role's states (vars/main.yml)
RUNNING = ["active", "activating"]
UP = ["active"]

# systemctl show --all --property=Id,LoadState,ActiveState,SubState -- demo-app demo-cron nosuch demo-old
PLAIN = """\
Id=demo-app.service
LoadState=loaded
ActiveState=active
SubState=running

Id=demo-cron.service
LoadState=loaded
ActiveState=inactive
SubState=dead

Id=nosuch.service
LoadState=not-found
ActiveState=inactive
SubState=dead

Id=demo-old.service
LoadState=masked
ActiveState=inactive
SubState=dead"""

# ... -- 'demo-worker@*.service': systemctl's order, not the instances'
WORKERS = """\
Id=demo-worker@1.service
LoadState=loaded
ActiveState=active
SubState=running

Id=demo-worker@10.service
LoadState=loaded
ActiveState=active
SubState=running

Id=demo-worker@2.service
LoadState=loaded
ActiveState=activating
SubState=start"""


def units(output: str, names: list[str], patterns: list[str] | None = None, rc: Any = 0) -> dict[str, Any]:
    return systemd_units(output, rc=rc, names=names, patterns=patterns or [], running=RUNNING, up=UP)


def block(unit: str, load: str = "loaded", active: str = "active", sub: str = "running") -> str:
    return f"Id={unit}\nLoadState={load}\nActiveState={active}\nSubState={sub}"


def test_plain_names_one_record_each_in_list_order() -> None:
    assert units(PLAIN, ["demo-app", "demo-cron", "nosuch", "demo-old"]) == {
        "answered": True,
        "units": [
            {"given": "demo-app", "name": "demo-app", "unit": "demo-app.service", "known": True, "startable": True,
             "state": "active (running)", "running": True, "up": True},
            {"given": "demo-cron", "name": "demo-cron", "unit": "demo-cron.service", "known": True, "startable": True,
             "state": "inactive (dead)", "running": False, "up": False},
            # a name systemd does not know is still listed: known.yml names it as a typo
            {"given": "nosuch", "name": "nosuch", "unit": "nosuch.service", "known": False, "startable": False,
             "state": "inactive (dead), not-found", "running": False, "up": False},
            {"given": "demo-old", "name": "demo-old", "unit": "demo-old.service", "known": True, "startable": False,
             "state": "inactive (dead), masked", "running": False, "up": False},
        ],
    }


@pytest.mark.parametrize(
    ("active", "sub", "running", "up"),
    [
        ("active", "running", True, True),
        ("activating", "start", True, False),  # a stop acts on it, a start is not done yet
        ("deactivating", "stop-sigterm", False, False),
        ("failed", "failed", False, False),
        ("reloading", "reload", False, False),
    ],
)
def test_running_and_up_come_from_the_given_states(active: str, sub: str, running: bool, up: bool) -> None:
    [unit] = units(block("demo-app.service", active=active, sub=sub), ["demo-app"])["units"]
    assert (unit["state"], unit["running"], unit["up"]) == (f"{active} ({sub})", running, up)


def test_pattern_instances_in_numeric_order() -> None:
    found = units(WORKERS, ["demo-worker@*"], ["demo-worker@*"])
    assert found["answered"] is True
    assert [(u["given"], u["name"], u["unit"]) for u in found["units"]] == [
        ("demo-worker@*", "demo-worker@1", "demo-worker@1.service"),
        ("demo-worker@*", "demo-worker@2", "demo-worker@2.service"),
        ("demo-worker@*", "demo-worker@10", "demo-worker@10.service"),
    ]
    assert [u["running"] for u in found["units"]] == [True, True, True]
    assert [u["up"] for u in found["units"]] == [True, False, True]


def test_pattern_instances_other_than_numbers_by_name_regardless_of_case() -> None:
    output = "\n\n".join(block(f"demo-worker@{i}.service") for i in ["web-b", "Web-c", "10", "web-A", "0010", "2"])
    found = units(output, ["demo-worker@*"], ["demo-worker@*"])
    # 10 and 0010 have one key: they keep systemctl's order
    assert [u["name"] for u in found["units"]] == [
        "demo-worker@2", "demo-worker@10", "demo-worker@0010", "demo-worker@web-A", "demo-worker@web-b",
        "demo-worker@Web-c"]


@pytest.mark.parametrize(
    ("load", "active", "sub", "kept", "state"),
    [
        ("loaded", "inactive", "dead", True, "inactive (dead)"),  # loaded: a start can act on it
        ("not-found", "inactive", "dead", False, None),  # systemd only remembers it: nothing to act on
        ("not-found", "active", "running", True, "active (running), not-found"),  # unit file gone, still running
        ("masked", "inactive", "dead", False, None),
        ("error", "activating", "start", True, "activating (start), error"),
    ],
)
def test_pattern_keeps_instances_that_run_or_are_loaded(load: str, active: str, sub: str, kept: bool,
                                                        state: str | None) -> None:
    output = block("demo-worker@1.service") + "\n\n" + block("demo-worker@2.service", load, active, sub)
    found = units(output, ["demo-worker@*"], ["demo-worker@*"])
    assert found["answered"] is True
    assert [u["state"] for u in found["units"]] == ["active (running)"] + ([state] if kept else [])


def test_two_patterns_of_one_template_list_every_instance_under_the_first() -> None:
    output = "\n\n".join(block(f"demo-worker@{i}.service") for i in ["web-b", "1", "web-a"])
    patterns = ["demo-worker@web-*", "demo-worker@*"]
    found = units(output, patterns, patterns)
    assert [(u["given"], u["name"]) for u in found["units"]] == [
        ("demo-worker@web-*", "demo-worker@1"),
        ("demo-worker@web-*", "demo-worker@web-a"),
        ("demo-worker@web-*", "demo-worker@web-b"),
    ]


def test_names_and_patterns_mixed_each_unit_once() -> None:
    # the names' blocks first (demo-app, demo-worker@1, demo-mailer), then what the pattern matched
    output = "\n\n".join([
        block("demo-app.service"), block("demo-worker@1.service"), block("demo-mailer.service", active="inactive",
                                                                         sub="dead"),
        block("demo-worker@1.service"), block("demo-worker@2.service")])
    names = ["demo-app", "demo-worker@*", "demo-worker@1", "demo-mailer"]
    found = units(output, names, ["demo-worker@*"])
    assert found["answered"] is True
    # demo-worker@1 came with the pattern already: not again under its own name
    assert [(u["given"], u["name"], u["state"]) for u in found["units"]] == [
        ("demo-app", "demo-app", "active (running)"),
        ("demo-worker@*", "demo-worker@1", "active (running)"),
        ("demo-worker@*", "demo-worker@2", "active (running)"),
        ("demo-mailer", "demo-mailer", "inactive (dead)"),
    ]


def test_an_instance_named_before_its_pattern_stays_under_its_name() -> None:
    output = "\n\n".join([block("demo-worker@1.service"), block("demo-worker@1.service"),
                          block("demo-worker@2.service")])
    found = units(output, ["demo-worker@1", "demo-worker@*"], ["demo-worker@*"])
    assert [(u["given"], u["name"]) for u in found["units"]] == [
        ("demo-worker@1", "demo-worker@1"), ("demo-worker@*", "demo-worker@2")]


@pytest.mark.parametrize(
    ("output", "names", "patterns"),
    [
        (block("demo-app.service"), ["demo-app", "demo-cron"], []),  # a block short
        (PLAIN, ["demo-app", "demo-cron"], []),  # blocks to spare
        (block("demo-app.service"), ["demo-app", "demo-cron", "demo-worker@*"], ["demo-worker@*"]),
        # a matched unit of another template: the blocks are not where they should be
        (WORKERS + "\n\n" + block("demo-mailer@1.service"), ["demo-worker@*"], ["demo-worker@*"]),
        (block("demo-app.service") + "\n\n" + block("demo-app.service"), ["demo-app", "demo-worker@*"],
         ["demo-worker@*"]),
        ("", ["demo-app"], []),
    ],
)
def test_not_answered_when_the_blocks_do_not_fit(output: str, names: list[str], patterns: list[str]) -> None:
    assert units(output, names, patterns) == {"answered": False, "units": []}


@pytest.mark.parametrize(("rc", "answered"), [(0, True), (1, False), (-1, False), (None, False), ("0", False)])
def test_answered_only_when_systemctl_exited_0(rc: Any, answered: bool) -> None:
    found = units(block("demo-app.service"), ["demo-app"], rc=rc)
    assert (found["answered"], len(found["units"])) == (answered, 1 if answered else 0)


def test_a_failed_call_is_not_read() -> None:
    # a matched block without Id would be an error, were it read
    assert units("LoadState=loaded", ["demo-worker@*"], ["demo-worker@*"], rc=1) == {"answered": False, "units": []}


@pytest.mark.parametrize("output", ["", "\n\n  \n"])
def test_a_pattern_that_matches_nothing_names_nothing(output: str) -> None:
    assert units(output, ["demo-worker@*"], ["demo-worker@*"]) == {"answered": True, "units": []}


def test_blocks_part_on_any_run_of_blank_lines_and_lines_part_on_the_first_equals() -> None:
    output = "\n" + block("a.service", sub="x=y") + "\n\n\n\n" + block("b.service") + "\nno property here\n"
    found = units(output, ["a", "b"])
    expected = [("a.service", "active (x=y)"), ("b.service", "active (running)")]
    assert [(u["unit"], u["state"]) for u in found["units"]] == expected


def test_missing_properties() -> None:
    # a block without Id is the name's; no LoadState is unknown to systemd, no ActiveState is 'unknown'
    [unit] = units("SubState=dead", ["demo-app"])["units"]
    assert unit == {"given": "demo-app", "name": "demo-app", "unit": "demo-app", "known": False, "startable": False,
                    "state": "unknown (dead), ", "running": False, "up": False}


def test_one_unit_under_two_names_once() -> None:
    found = units(block("dbus.service") + "\n\n" + block("dbus.service"), ["dbus", "dbus.service"])
    assert [u["given"] for u in found["units"]] == ["dbus"]


@pytest.mark.parametrize(
    ("output", "kwargs", "message"),
    [
        (None, {}, "the input must be the output of systemctl show, got NoneType"),
        (["Id=demo-app.service"], {}, "the input must be the output of systemctl show, got list"),
        ("", {"names": "demo-app"}, "names must be a list of strings"),
        ("", {"names": ["demo-app", 1]}, "names must be a list of strings"),
        ("", {"patterns": None}, "patterns must be a list of strings"),
        ("", {"running": "active"}, "running must be a list of strings"),  # 'act' would be in 'active'
        ("", {"up": {"active": True}}, "up must be a list of strings"),
        ("Id=demo-worker@1.service\n\nLoadState=loaded", {"names": ["demo-worker@*"], "patterns": ["demo-worker@*"]},
         "a unit a pattern matched has no Id"),
    ],
)
def test_rejects_bad_input(output: Any, kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"rc": 0, "names": ["demo-app"], "patterns": [], "running": RUNNING, "up": UP,
                                 **kwargs}
    with pytest.raises(AnsibleFilterError, match=message):
        systemd_units(output, **arguments)


def test_filter_module_exports() -> None:
    assert FilterModule().filters() == {"systemd_units": systemd_units}
