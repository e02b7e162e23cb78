# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.threshold_verdict import FilterModule, threshold_verdict
from ansible_collections.runbook.ops.plugins.filter.worst_verdict import worst_verdict


@pytest.mark.parametrize(
    ("value", "warning", "critical", "expected"),
    [
        (0, 80, 90, "ok"),
        (79.9, 80, 90, "ok"),
        (80, 80, 90, "warning"),  # at the threshold reaches it
        (89.9, 80, 90, "warning"),
        (90, 80, 90, "critical"),
        (100, 80, 90, "critical"),
        ("93.4", "80", "90", "critical"),  # strings from inventories and extra vars
        (1.9, 2, 10, "ok"),
        (2, 2, 10, "warning"),
        (12.5, 2, 10, "critical"),
        (50, 1, 1, "critical"),  # equal thresholds: nothing is only a warning
        (0.5, 1, 1, "ok"),
    ],
)
def test_higher_is_worse(value: Any, warning: Any, critical: Any, expected: str) -> None:
    assert threshold_verdict(value, warning, critical) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(60, "ok"), (31, "ok"), (30, "warning"), (8, "warning"), (7, "critical"), (-1, "critical")],
)
def test_lower_is_worse(value: float, expected: str) -> None:
    assert threshold_verdict(value, 30, 7, higher_is_worse=False) == expected


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((50, 90, 80), {}, "must not be above critical"),
        ((50, 7, 30), {"higher_is_worse": False}, "must not be below critical"),
        (("lots", 80, 90), {}, "the input must be a number"),
        ((None, 80, 90), {}, "the input must be a number"),
        ((True, 80, 90), {}, "got a boolean"),
        ((50, "", 90), {}, "warning must be a number"),
    ],
)
def test_rejects_bad_input(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        threshold_verdict(*args, **kwargs)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([], "ok"),
        (["ok", "ok"], "ok"),
        (["ok", "warning"], "warning"),
        (["warning", "critical", "ok"], "critical"),
        ([{"verdict": "warning", "msg": "memory"}, {"verdict": "ok"}], "warning"),
        (({"verdict": v} for v in ("ok", "critical")), "critical"),
    ],
)
def test_worst_verdict(items: Any, expected: str) -> None:
    assert worst_verdict(items) == expected


def test_worst_verdict_custom_key() -> None:
    assert worst_verdict([{"level": "critical"}], key="level") == "critical"


@pytest.mark.parametrize("items", [["ok", "fatal"], [{"msg": "no verdict"}], "critical", {"verdict": "ok"}])
def test_worst_verdict_rejects_unknown(items: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        worst_verdict(items)


def test_filter_module_exports() -> None:
    assert FilterModule().filters() == {"threshold_verdict": threshold_verdict}
