# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""After converge, systemd on db1 runs the schedule of vars/schedule.yml (testinfra, the real host)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SCHEDULE = yaml.safe_load((Path(__file__).resolve().parents[1] / "vars" / "schedule.yml").read_text())
NAME = SCHEDULE["backup_schedule_name"]
TIMER, SERVICE = f"{NAME}.timer", f"{NAME}.service"


def _show(host, unit: str, *props: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show --property={','.join(props)} {unit}")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.mark.parametrize("unit", [TIMER, SERVICE])
def test_the_units_are_installed_root_owned(host, unit: str) -> None:
    f = host.file(f"/etc/systemd/system/{unit}")
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    # systemd itself finds nothing wrong with them
    verify = host.run(f"systemd-analyze verify /etc/systemd/system/{unit}")
    assert verify.rc == 0 and NAME not in verify.stderr, verify.stderr


def test_the_timer_is_loaded_enabled_and_active(host) -> None:
    state = _show(host, TIMER, "LoadState", "UnitFileState", "ActiveState", "SubState")
    assert state == {"LoadState": "loaded", "UnitFileState": "enabled", "ActiveState": "active", "SubState": "waiting"}


def test_the_next_run_is_at_the_configured_time(host) -> None:
    hh, mm = SCHEDULE["backup_schedule_time"].split(":")
    next_run = _show(host, TIMER, "NextElapseUSecRealtime")["NextElapseUSecRealtime"]
    assert f" {hh}:{mm}:00 " in f"{next_run} ", next_run
    # the next one: today's if it is still ahead, else tomorrow's (host clock, host time zone)
    at = int(host.check_output(f"date -d '{next_run}' +%s"))
    now = int(host.check_output("date +%s"))
    today = int(host.check_output(f"date -d 'today {hh}:{mm}' +%s"))
    assert at == (today if today > now else int(host.check_output(f"date -d 'tomorrow {hh}:{mm}' +%s")))
    assert _show(host, TIMER, "Persistent", "RandomizedDelayUSec") == {"Persistent": "yes", "RandomizedDelayUSec": "0"}


def test_the_service_runs_the_command_exactly_as_given(host) -> None:
    out = f"/var/tmp/{NAME}.out"
    host.run(f"rm -f {out}")
    started = host.run(f"systemctl start {SERVICE}")  # a oneshot: returns when the command is done
    assert started.rc == 0, started.stderr
    assert _show(host, SERVICE, "Result")["Result"] == "success"
    value = SCHEDULE["backup_schedule_environment"]["RUNBOOK_MOLECULE"]
    user, cwd = SCHEDULE["backup_schedule_user"], SCHEDULE["backup_schedule_working_directory"]
    assert host.file(out).content_string == f"ran as {user} in {cwd} at 100% with {value}\n"
    assert host.file(out).user == user


def test_there_is_no_cron_entry_of_the_same_name(host) -> None:
    assert not host.file(f"/etc/cron.d/{NAME}").exists
