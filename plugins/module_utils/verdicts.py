# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ok / warning / critical: the verdict logic every check shares (modules and filters alike)."""
from __future__ import annotations

from typing import Iterable, Optional

VERDICTS: tuple[str, ...] = ("ok", "warning", "critical")


def level(value: Optional[float], warning: float, critical: float, higher_is_worse: bool = True) -> str:
    """ok, warning or critical: a value at or beyond a threshold reaches it. None is ok (nothing measured)."""
    if value is None:
        return "ok"
    if higher_is_worse:
        if value >= critical:
            return "critical"
        if value >= warning:
            return "warning"
        return "ok"
    if value <= critical:
        return "critical"
    if value <= warning:
        return "warning"
    return "ok"


def worst(verdicts: Iterable[str]) -> str:
    """The worst of the verdicts; ok for none."""
    rank = max((VERDICTS.index(v) for v in verdicts), default=0)
    return VERDICTS[rank]
