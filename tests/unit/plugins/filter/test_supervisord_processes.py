# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""supervisord_processes: which processes of `supervisorctl status` the names of services stand for."""
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.supervisord_processes import FilterModule, supervisord_processes

# as supervisorctl prints it: the sandbox's demo app, two processes of the worker group, and one that failed
STATUS = [
    "demo-app                         RUNNING   pid 4242, uptime 0:10:02",
    "demo-worker:demo-worker-0        RUNNING   pid 4243, uptime 0:10:02",
    "demo-worker:demo-worker-1        STOPPED   Dec 02 12:41 AM",
    "demo-workers-old                 FATAL     Exited too quickly (process log may have details)",
    "s3                               STARTING  ",
    "",
]


def names(found: list[dict]) -> list[str]:
    return [entry["name"] for entry in found]


def test_a_process_by_its_name_with_its_state() -> None:
    assert supervisord_processes(STATUS, ["demo-app"]) == [
        {"given": "demo-app", "name": "demo-app", "known": True, "startable": True, "state": "RUNNING",
         "running": True, "up": True}]


def test_starting_is_running_for_a_stop_but_not_up_for_a_start() -> None:
    (entry,) = supervisord_processes(STATUS, ["s3"])
    assert (entry["state"], entry["running"], entry["up"]) == ("STARTING", True, False)


def test_a_stopped_and_a_fatal_process_are_neither_running_nor_up() -> None:
    found = supervisord_processes(STATUS, ["demo-worker:demo-worker-1", "demo-workers-old"])
    assert [(e["state"], e["running"], e["up"]) for e in found] == [("STOPPED", False, False), ("FATAL", False, False)]


@pytest.mark.parametrize("group", ["demo-worker:", "demo-worker:*"])
def test_a_group_stands_for_its_processes_only(group: str) -> None:
    # demo-workers-old starts with the group's name but is not of it
    found = supervisord_processes(STATUS, [group])
    assert names(found) == ["demo-worker:demo-worker-0", "demo-worker:demo-worker-1"]
    assert {e["given"] for e in found} == {group}


def test_in_the_order_given_each_process_once() -> None:
    found = supervisord_processes(STATUS, ["demo-worker:demo-worker-1", "demo-app", "demo-worker:"])
    assert names(found) == ["demo-worker:demo-worker-1", "demo-app", "demo-worker:demo-worker-0"]
    assert [e["given"] for e in found] == ["demo-worker:demo-worker-1", "demo-app", "demo-worker:"]


def test_an_unknown_name_and_an_empty_group_are_unknown_not_dropped() -> None:
    found = supervisord_processes(STATUS, ["demo-ap", "nothing:"])
    assert found == [
        {"given": given, "name": given, "known": False, "startable": False, "state": "unknown", "running": False,
         "up": False} for given in ("demo-ap", "nothing:")]


def test_a_prefix_of_a_name_is_not_that_process() -> None:
    assert supervisord_processes(STATUS, ["demo"])[0]["known"] is False


def test_a_line_without_a_state_is_known_in_state_unknown() -> None:
    assert supervisord_processes(["lonely"], ["lonely"])[0]["state"] == "UNKNOWN"


def test_no_answer_knows_nothing() -> None:
    assert supervisord_processes([], ["demo-app"])[0]["known"] is False


def test_the_states_that_count_as_running_and_up_are_the_callers() -> None:
    (entry,) = supervisord_processes(STATUS, ["s3"], running=["RUNNING"], up=["RUNNING", "STARTING"])
    assert (entry["running"], entry["up"]) == (False, True)


@pytest.mark.parametrize("status, given", [("demo-app RUNNING", ["demo-app"]), (STATUS, "demo-app"),
                                           (None, ["demo-app"])])
def test_not_lists_are_refused(status: object, given: object) -> None:
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        supervisord_processes(status, given)


def test_filter_module_exports() -> None:
    assert FilterModule().filters() == {"supervisord_processes": supervisord_processes}
