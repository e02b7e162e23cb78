# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.test.duration import TestModule as DurationTests, duration


@pytest.mark.parametrize(("value", "ok"), [
    (300, True), ("300", True), ("5m", True), ("30s", True), ("1h30m", True), (0, True), (2.5, True),
    ("soon", False), ("", False), (None, False), (-1, False), (True, False), ("5 minutes", False), ([], False),
])
def test_duration(value: object, ok: bool) -> None:
    assert duration(value) is ok
    assert DurationTests().tests()["duration"](value) is ok
