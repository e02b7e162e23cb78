# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.to_seconds import to_seconds as to_seconds_filter
from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds


@pytest.mark.parametrize(("value", "seconds"), [
    (300, 300.0), (0, 0.0), (2.5, 2.5), ("300", 300.0), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0),
    ("1d", 86400.0), ("1w", 604800.0), ("1h30m", 5400.0), ("1h 30m", 5400.0), ("500ms", 0.5), (" 10M ", 600.0),
])
def test_durations(value: object, seconds: float) -> None:
    assert to_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "5 minutes", "m5", "5x", "-5", -1, True, None, "1h30", "5m;DROP"])
def test_not_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        to_seconds(value)


def test_filter_reports_the_accepted_forms() -> None:
    assert to_seconds_filter("10m") == 600.0
    with pytest.raises(AnsibleFilterError, match=r"to_seconds: not a duration: 'soon' \(use seconds"):
        to_seconds_filter("soon")
