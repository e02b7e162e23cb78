# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The health verdict: pure function from probe results to HTTP code and JSON.

Rules (what the runbooks alert on):
  * database unreachable or schema unreadable -> "down"
  * Redis unreachable, no successful ingest yet, or the newest ingest older
    than DEMO_INGEST_STALE_HOURS                -> "degraded"
  * otherwise                                   -> "ok"
Only "ok" answers 200; anything else is 503 so plain `curl -f` checks fail.
"""
from __future__ import annotations

from datetime import timezone
from typing import Any

from demo_app.probes import DatabaseProbe, RedisProbe


def _component(error: str | None) -> str:
    return "ok" if error is None else f"error: {error}"


def evaluate(
    db: DatabaseProbe, rd: RedisProbe, stale_seconds: float, version: str
) -> tuple[int, dict[str, Any]]:
    reasons: list[str] = []
    if not db.ok:
        reasons.append("database unavailable")
    if not rd.ok:
        reasons.append("redis unavailable")
    if db.ok and db.ingest_age_seconds is None:
        reasons.append("no successful ingest recorded")
    elif db.ingest_age_seconds is not None and db.ingest_age_seconds > stale_seconds:
        reasons.append(f"ingest stale: older than {stale_seconds / 3600:g} h")

    status = "down" if not db.ok else ("degraded" if reasons else "ok")
    last = db.last_ingest
    body: dict[str, Any] = {
        "status": status,
        "database": _component(db.error),
        "redis": _component(rd.error),
        "last_ingest_time": None if last is None else last.astimezone(timezone.utc).isoformat(),
        "ingest_age_seconds": None if db.ingest_age_seconds is None else int(db.ingest_age_seconds),
        "queue_waiting": rd.waiting,
        "version": version,
        "reasons": reasons,
    }
    return (200 if status == "ok" else 503), body
