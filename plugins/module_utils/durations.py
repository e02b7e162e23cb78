# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Durations as operators write them: 300, "300", "30s", "5m", "2h", "1d", "1h30m"."""
from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def to_seconds(value: object) -> float:
    """Seconds in value; ValueError with the accepted forms when it is not a duration."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    if text and _PART.sub("", text) == "":
        return sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    raise ValueError(f"not a duration: {value!r} (use seconds, or a number with ms, s, m, h, d or w, e.g. 30s, 5m, 1h30m)")
