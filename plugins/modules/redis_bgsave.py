#!/usr/bin/python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.redis_bgsave: take an RDB snapshot, wait for it, check it."""
from __future__ import annotations

DOCUMENTATION = r"""
module: redis_bgsave
short_description: Take a Redis RDB snapshot (BGSAVE), wait until it has finished and check that it succeeded
version_added: 0.3.0
author:
  - runbook.ops maintainers (@runbook-ops)
description:
  - Automates the seed runbooks' C(If persistence issues ... redis-cli BGSAVE) step, and does the part the seed
    leaves to the operator - waiting until the background save has finished (C(rdb_bgsave_in_progress) back to 0,
    a new C(rdb_last_save_time)) and checking C(rdb_last_bgsave_status) is C(ok). A failed save fails the task.
  - A BGSAVE already in progress (another operator, the server's own C(save) schedule) is waited for instead of
    failing; it then counts as the latest save for the rules below.
  - "B(What changed means): C(changed=true) when this run started a BGSAVE (in check mode - would start one). The
    snapshot is skipped (C(changed=false)) when the last save succeeded and either nothing was written since it
    (C(rdb_changes_since_last_save) 0: a new snapshot would hold the same data) or it is younger than O(max_age).
    So a second run is changed=0. O(force=true) always saves."
  - During an AOF rewrite, C(BGSAVE SCHEDULE) is sent, so the save runs as soon as the rewrite ends.
  - Check mode reads the persistence state for real and never sends BGSAVE.
extends_documentation_fragment:
  - runbook.ops.redis
options:
  max_age:
    description:
      - A last successful save younger than this is recent enough - no new snapshot. Seconds or a duration
        (C(30s), C(5m), C(1h)). V(0) turns this rule off (then only an unchanged dataset skips the snapshot).
    type: raw
    default: 0
  force:
    description: Always take a snapshot (after waiting for one in progress), whatever its age and the changes.
    type: bool
    default: false
  timeout:
    description: How long to wait for the background save to finish before failing. Seconds or a duration.
    type: raw
    default: 10m
  poll_interval:
    description: Seconds between two reads of C(INFO persistence) while waiting.
    type: float
    default: 0.2
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads C(INFO persistence) for real; never sends BGSAVE and never waits.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The save time is the server's (C(rdb_last_save_time), C(TIME)); the host the module runs on may differ in clock.
  - The login needs C(BGSAVE), C(INFO) and C(TIME) (ACL categories C(@admin) and C(@dangerous)).
seealso:
  - module: runbook.ops.redis_health
  - name: BGSAVE
    description: Redis documentation.
    link: https://redis.io/docs/latest/commands/bgsave/
"""

EXAMPLES = r"""
- name: Snapshot before maintenance, unless one from the last 5 minutes exists
  runbook.ops.redis_bgsave:
    login_password: "{{ runbook_redis_password }}"
    max_age: 5m
  register: snapshot

- name: Always a fresh snapshot, waiting up to 30 minutes for a big dataset
  runbook.ops.redis_bgsave:
    login_password: "{{ runbook_redis_password }}"
    force: true
    timeout: 30m
"""

RETURN = r"""
bgsave_started:
  description: Whether this run sent BGSAVE.
  returned: always
  type: bool
  sample: true
would_bgsave:
  description: Whether a snapshot is (or, in check mode, would be) taken.
  returned: always
  type: bool
  sample: true
waited_for_running:
  description: Whether a BGSAVE started by someone else was in progress and waited for.
  returned: always
  type: bool
  sample: false
previous_save_time:
  description: C(rdb_last_save_time) (epoch seconds) before this run.
  returned: always
  type: int
  sample: 1796124546
rdb_last_save_time:
  description: C(rdb_last_save_time) (epoch seconds) at the end of the run.
  returned: always
  type: int
  sample: 1796124900
rdb_last_save_iso:
  description: The same in ISO 8601, UTC.
  returned: always
  type: str
  sample: "2026-12-01T12:15:00Z"
last_save_age_s:
  description: Age of that save at the end of the run, by the server's clock.
  returned: always
  type: float
  sample: 0.4
changes_since_last_save:
  description: C(rdb_changes_since_last_save) when the run started (after waiting for a save in progress).
  returned: always
  type: int
  sample: 6305
rdb_last_bgsave_status:
  description: C(ok) or C(err).
  returned: always
  type: str
  sample: ok
rdb_saves:
  description: C(rdb_saves), the snapshots taken since the server started (Redis 7 and later; null before).
  returned: always
  type: int
  sample: 4
rdb_last_bgsave_time_sec:
  description: How long the last background save took, in seconds (C(-1) before the first).
  returned: always
  type: int
  sample: 0
waited_s:
  description: Seconds spent waiting for background saves.
  returned: always
  type: float
  sample: 0.6
msg:
  description: What was done, or why not.
  returned: always
  type: str
  sample: "BGSAVE done: saved at 2026-12-01T12:15:00Z in 0s (6305 changes since the previous save)"
"""

import time
from datetime import datetime, timezone
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils.durations import to_seconds
from ansible_collections.runbook.ops.plugins.module_utils.pg_health_verdict import human_duration
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import (
    RedisError,
    connect_or_fail,
    error_message,
    redis_argument_spec,
)


def argument_spec() -> dict[str, Any]:
    return redis_argument_spec(
        max_age={"type": "raw", "default": 0},
        force={"type": "bool", "default": False},
        timeout={"type": "raw", "default": "10m"},
        poll_interval={"type": "float", "default": 0.2},
    )


def _iso(epoch: int | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else None


def read_state(client: Any) -> dict[str, Any]:
    """INFO persistence and the server's clock, in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.info("persistence")
    pipe.time()
    info, (sec, usec) = pipe.execute()
    return {"now": sec + usec / 1e6, "in_progress": bool(int(info.get("rdb_bgsave_in_progress", 0))),
            "last_save": int(info.get("rdb_last_save_time", 0)), "saves": info.get("rdb_saves"),
            "status": info.get("rdb_last_bgsave_status"), "changes": int(info.get("rdb_changes_since_last_save", 0)),
            "duration": int(info.get("rdb_last_bgsave_time_sec", -1)),
            "aof_rewrite": bool(int(info.get("aof_rewrite_in_progress", 0)))}


class Waiter:
    def __init__(self, client: Any, timeout: float, interval: float) -> None:
        self.client, self.timeout, self.interval, self.waited = client, timeout, interval, 0.0

    def until(self, done: Any, what: str) -> dict[str, Any]:
        """Poll read_state() until done(state); TimeoutError with the last state after the timeout."""
        start = time.monotonic()
        try:
            while True:
                state = read_state(self.client)
                if done(state):
                    return state
                if time.monotonic() - start > self.timeout:
                    raise TimeoutError(f"{what} not finished after {human_duration(self.timeout)} "
                                       f"(rdb_bgsave_in_progress {int(state['in_progress'])}, "
                                       f"rdb_last_bgsave_status {state['status']})")
                time.sleep(self.interval)
        finally:
            self.waited += time.monotonic() - start


def skip_reason(state: dict[str, Any], max_age: float, force: bool) -> str | None:
    """Why no snapshot is needed, or None when one is."""
    if force or state["status"] != "ok":
        return None
    age = max(0.0, state["now"] - state["last_save"])
    if state["changes"] == 0:
        return f"nothing written since the last save {human_duration(age)} ago (status ok): no snapshot needed"
    if max_age and age < max_age:
        return (f"the last save {human_duration(age)} ago (status ok) is younger than max_age "
                f"{human_duration(max_age)}: no snapshot needed")
    return None


def save_finished(before: dict[str, Any], now: dict[str, Any]) -> bool:
    """Our BGSAVE is over: a save newer than before (rdb_saves, else the save time), or a failure of it."""
    if now["in_progress"]:
        return False
    if before["saves"] is not None and now["saves"] is not None:
        newer = now["saves"] > before["saves"]
    else:
        newer = now["last_save"] > before["last_save"]
    return newer or (now["status"] != "ok" and before["status"] == "ok")


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        max_age, timeout = to_seconds(params["max_age"]), to_seconds(params["timeout"])
    except ValueError as err:
        module.fail_json(msg=f"max_age/timeout: {err}")
    if params["poll_interval"] <= 0:
        module.fail_json(msg="poll_interval must be above 0")
    result: dict[str, Any] = {"changed": False, "bgsave_started": False, "would_bgsave": False,
                              "waited_for_running": False}
    client = connect_or_fail(module, **result)
    waiter = Waiter(client, timeout, params["poll_interval"])
    try:
        state = read_state(client)
        result["previous_save_time"] = state["last_save"]
        if state["in_progress"] and not module.check_mode:
            result["waited_for_running"] = True
            state = waiter.until(lambda s: not s["in_progress"], "the BGSAVE already in progress")
        result["changes_since_last_save"] = state["changes"]
        reason = skip_reason(state, max_age, params["force"])
        if reason is None:
            result.update(changed=True, would_bgsave=True)
            if module.check_mode:
                running = "wait for the BGSAVE in progress, then " if state["in_progress"] else ""
                reason = (f"would {running}BGSAVE: {state['changes']} changes since the last save "
                          f"{human_duration(max(0.0, state['now'] - state['last_save']))} ago "
                          f"(status {state['status']})")
            else:
                if state["saves"] is None and int(state["now"]) == state["last_save"]:
                    time.sleep(1.0 - state["now"] % 1)  # without rdb_saves, only a later second tells ours apart
                before = state
                try:
                    if state["aof_rewrite"]:
                        client.execute_command("BGSAVE", "SCHEDULE")
                    else:
                        client.bgsave()
                    result["bgsave_started"] = True
                except RedisError as exc:
                    # one started since our read (the server's save schedule): it is the snapshot we wait for
                    if "already in progress" not in str(exc):
                        raise
                    result["waited_for_running"] = True

                state = waiter.until(lambda s: save_finished(before, s), "BGSAVE")
                if state["status"] != "ok":
                    module.fail_json(msg=f"BGSAVE failed: rdb_last_bgsave_status {state['status']} (the Redis log says "
                                         "why: disk full, permissions of dir, fork refused)", **result)
                reason = (f"BGSAVE done: saved at {_iso(state['last_save'])} in {state['duration']}s "
                          f"({before['changes']} changes since the previous save)")
    except TimeoutError as exc:
        module.fail_json(msg=str(exc), **result)
    except RedisError as exc:
        module.fail_json(msg=error_message(exc, params), **result)
    finally:
        client.close()
    result.update(rdb_last_save_time=state["last_save"], rdb_last_save_iso=_iso(state["last_save"]),
                  last_save_age_s=round(max(0.0, state["now"] - state["last_save"]), 1),
                  rdb_last_bgsave_status=state["status"], rdb_last_bgsave_time_sec=state["duration"], rdb_saves=state["saves"],
                  waited_s=round(waiter.waited, 2))
    module.exit_json(msg=reason, **result)


if __name__ == "__main__":
    main()
