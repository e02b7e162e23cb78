# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Job functions the real RQ workers of the queue tests run (importable by `rq worker` from this directory)."""
from __future__ import annotations

import time


def ok(n: int = 0) -> str:
    return f"ok {n}"


def boom(n: int = 0) -> None:
    raise RuntimeError(f"planned failure {n}")


def flaky(n: int = 0) -> str:
    """Fails until the test sets RQ_FLAKY_OK: a job that fails, is retried by us, then succeeds."""
    import os
    if not os.environ.get("RQ_FLAKY_OK"):
        raise RuntimeError(f"planned failure {n}")
    return f"ok {n}"


def slow(seconds: float = 120) -> str:
    time.sleep(seconds)
    return "slept"
