# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""runbook.ops.backup_schedule: its variables, and its cron path on the fleet's db1.

The systemd path is the molecule scenario tests/molecule/backup_schedule; here only what
it cannot show (the environment file, units a dead run left unloaded). The cron path
runs here on db1, a real Debian host, with backup_schedule_manager=cron (the documented
override for hosts that keep their schedules in /etc/cron.d): never on the machine
that runs the tests. Whatever the tests install on db1 (the schedule, the cron daemon,
the python3-apt the apt module pulls in) is removed again afterwards.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.lib.runner import run_four_times, run_playbook

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "backup_schedule"
STATE = ROOT / ".fleet"
NAME = "runbook-backup-pytest"
OUT = f"/var/tmp/{NAME}.out"
CRON_FILE = f"/etc/cron.d/{NAME}"
ENV_FILE = f"/etc/default/{NAME}"
# What ansible.builtin.apt installs on a bare fleet host for the cron path.
PACKAGES = ["cron", "cron-daemon-common", "python3-apt", "python-apt-common", "distro-info-data"]
SCHEDULE: dict[str, Any] = {
    "backup_schedule_name": NAME,
    "backup_schedule_time": "04:41",
    "backup_schedule_user": "postgres",
    "backup_schedule_working_directory": "/var/tmp",
    "backup_schedule_environment": {"RUNBOOK_PYTEST": 'a "quoted" $value, 50% \\ back'},
    "backup_schedule_command": ["/bin/sh", "-c",
                                "printf '%s\\n' \"ran as $(id -un) in $PWD at 100% with $RUNBOOK_PYTEST\" > " + OUT],
}
EXPECTED_OUT = 'ran as postgres in /var/tmp at 100% with a "quoted" $value, 50% \\ back\n'
PLAY = [{"name": "backup_schedule on db1", "hosts": "db1", "gather_facts": False,
         "roles": [{"role": "runbook.ops.backup_schedule"}]}]
VALIDATE_PLAY = [{"name": "backup_schedule variables", "hosts": "localhost", "connection": "local",
                  "gather_facts": False, "roles": [{"role": "runbook.ops.backup_schedule"}]}]


# --- the role's variables, no target needed ------------------------------------------------------


def test_defaults_match_the_argument_specs_value_for_value() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert {k: v.get("default") for k, v in options.items()} == defaults
    assert all(k.startswith("backup_schedule_") for k in defaults)


@pytest.mark.parametrize(
    ("extravars", "message"),
    [
        # YAML reads an unquoted 12:30 as 750 (base 60): the message says so
        ({"backup_schedule_time": 750}, "backup_schedule_time=750 is not a time of day"),
        ({"backup_schedule_time": 750}, "unquoted, 12:30 is read as the number 750"),
        ({"backup_schedule_time": "24:00"}, "is not a time of day: use HH:MM, 24-hour"),
        ({"backup_schedule_time": "2am"}, "is not a time of day"),
        ({"backup_schedule_name": "nightly.backup"}, "use letters, digits, - and _ only"),
        ({"backup_schedule_command": []}, "give what the schedule runs"),
        ({"backup_schedule_command": ["backup.sh", "--all"]}, "first element is an absolute path"),
        ({"backup_schedule_command": "pg_dump app\nrm -rf /"}, "on one line"),
        ({"backup_schedule_randomized_delay": "2d"}, "use a duration under a day"),
        ({"backup_schedule_environment": {"1X": "y"}}, "keys are variable names"),
        pytest.param({"backup_schedule_manager": "systemd"}, "but systemd is not the init system of localhost",
                     marks=pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="this machine runs systemd")),
        ({"backup_schedule_user": "no-such-user-here"}, "does not exist on localhost"),
        ({"backup_schedule_state": "gone"}, "must be one of: present, absent"),
    ],
)
def test_bad_variables_fail_with_a_clear_message(tmp_path: Path, extravars: dict[str, Any], message: str) -> None:
    # Against the test machine, which has no systemd, in check mode: the role must stop before it
    # writes anything, and check mode makes sure that even a broken guard could not write here.
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(VALIDATE_PLAY))
    variables = {"backup_schedule_command": ["/bin/true"], **extravars,
                 "ansible_python_interpreter": str(ROOT / ".venv" / "bin" / "python")}
    result = run_playbook(str(playbook), "localhost,", extravars=variables, check=True)
    assert result.rc != 0
    assert message in result.stdout, result.stdout[-3000:]
    assert "Nothing was changed" in result.stdout or "must be one of" in result.stdout
    assert result.changed() == 0


# --- the cron path on db1 ------------------------------------------------------------------------


def _ssh(*command: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    port = json.loads((STATE / "state.json").read_text())["hosts"]["db1"]["ssh_port"]
    argv = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-i", str(STATE / "ssh" / "id_ed25519"), "-p", str(port), "root@127.0.0.1",
            " ".join(shlex.quote(arg) for arg in command)]  # ssh hands the remote shell one string
    return subprocess.run(argv, text=True, capture_output=True, check=check, timeout=120, input=stdin)


def _installed(packages: list[str]) -> set[str]:
    out = _ssh("dpkg-query", "--show", "--showformat=${Package} ${db:Status-Status}\\n", *packages, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}


def _remove_schedule() -> None:
    _ssh("sh", "-c", f"systemctl disable --now {NAME}.timer 2>/dev/null; "
                     f"rm -f /etc/systemd/system/{NAME}.service /etc/systemd/system/{NAME}.timer "
                     f"/var/lib/systemd/timers/stamp-{NAME}.timer {CRON_FILE} {ENV_FILE} /var/log/{NAME}.log {OUT}; "
                     "systemctl daemon-reload")


@pytest.fixture(scope="module")
def db1(fleet) -> Iterator[Any]:
    """db1 without our schedule; afterwards as it was found (schedule gone, packages we added purged)."""
    before = _installed(PACKAGES)
    _remove_schedule()
    yield fleet
    _remove_schedule()
    added = [p for p in PACKAGES if p in _installed(PACKAGES) - before]
    if added:
        _ssh("env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", *added)


def _playbook(tmp_path: Path) -> str:
    path = tmp_path / "backup_schedule.yml"
    path.write_text(yaml.safe_dump(PLAY))
    return str(path)


def _schedule_state() -> dict[str, Any]:
    """What the role may change on db1: the cron file, the timer, the cron daemon."""
    cron_file = _ssh("cat", CRON_FILE, check=False)
    timer = _ssh("systemctl", "show", "--property=LoadState,UnitFileState,ActiveState", f"{NAME}.timer").stdout
    return {
        "cron_file": cron_file.stdout if cron_file.returncode == 0 else None,
        "cron_file_mode": _ssh("stat", "-c", "%U %G %a", CRON_FILE, check=False).stdout.strip(),
        "timer": dict(line.split("=", 1) for line in timer.splitlines() if "=" in line),
        "timer_unit_exists": _ssh("test", "-e", f"/etc/systemd/system/{NAME}.timer", check=False).returncode == 0,
        "cron_daemon": _ssh("systemctl", "is-active", "cron", check=False).stdout.strip(),
        "env_file_mode": _ssh("stat", "-c", "%U %a", ENV_FILE, check=False).stdout.strip(),
    }


def _timer(*props: str) -> dict[str, str]:
    out = _ssh("systemctl", "show", f"--property={','.join(props)}", f"{NAME}.timer").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _cron_line() -> tuple[list[str], str, str]:
    """The time fields, the user and the command of the cron file's one line."""
    lines = [line for line in _ssh("cat", CRON_FILE).stdout.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, lines
    *fields, user, command = lines[0].split(None, 6)
    return fields, user, command


def _run_as_cron_would(user: str, command: str) -> subprocess.CompletedProcess[str]:
    """Run a cron command the way Debian's cron does: % handling, /bin/sh -c, its environment, in $HOME."""
    assert "%" not in command.replace("\\%", ""), f"an unescaped % would become a newline: {command}"
    home = _ssh("getent", "passwd", user).stdout.split(":")[5]
    return _ssh("runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"LOGNAME={user}", "SHELL=/bin/sh",
                "PATH=/usr/bin:/bin", "sh", "-c", 'cd "$HOME" && exec /bin/sh -c "$0"', command.replace("\\%", "%"),
                check=False)


@pytest.mark.fleet
def test_cron_path_replaces_the_timer_then_goes_away(db1, tmp_path: Path) -> None:
    playbook = _playbook(tmp_path)
    # a systemd timer of the same name first: switching to cron must remove it
    first = run_playbook(playbook, db1.inventory, extravars=SCHEDULE)
    assert first.rc == 0, first.stdout[-3000:]
    assert _schedule_state()["timer"]["UnitFileState"] == "enabled"

    cron = {**SCHEDULE, "backup_schedule_manager": "cron", "backup_schedule_randomized_delay": "2s"}
    runs = run_four_times(playbook, db1.inventory, read_state=_schedule_state, extravars=cron, diff=True)
    assert runs.before["cron_file"] is None
    after = runs.after
    # the value is in the 0600 file only: not in the 0644 cron line, nor in --diff
    assert after["env_file_mode"] == "postgres 600" and "RUNBOOK_PYTEST=" not in after["cron_file"]
    assert "RUNBOOK_PYTEST=" not in runs.check.stdout + runs.real.stdout
    assert after["timer"]["LoadState"] == "not-found" and not after["timer_unit_exists"]
    assert after["cron_daemon"] == "active"
    assert after["cron_file_mode"] == "root root 644"  # cron ignores files writable by others
    assert f"#Ansible: {NAME}\n" in after["cron_file"]
    fields, user, command = _cron_line()
    assert (fields, user) == (["41", "4", "*", "*", "*"], "postgres")
    assert 'sleep "$(shuf -i 0-2 -n 1)" && ' in command and f"/usr/bin/flock -n {CRON_FILE} " in command
    assert command.endswith(f">> /var/log/{NAME}.log 2>&1")
    assert _ssh("stat", "-c", "%U %a", f"/var/log/{NAME}.log").stdout.strip() == "postgres 640"

    # the command reaches the shell exactly as given, and as the user, in the working directory
    ran = _run_as_cron_would(user, command)
    assert ran.returncode == 0, ran.stderr
    assert _ssh("cat", OUT).stdout == EXPECTED_OUT
    assert _ssh("cat", f"/var/log/{NAME}.log").stdout == ""

    # switched off: the line stays, commented out
    off = run_playbook(playbook, db1.inventory, extravars={**cron, "backup_schedule_enabled": False})
    assert off.rc == 0 and off.changed("db1") == 1, off.stdout[-3000:]
    lines = _ssh("cat", CRON_FILE).stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("#41 4 * * * postgres "), lines

    gone = run_four_times(playbook, db1.inventory, read_state=_schedule_state,
                          extravars={**cron, "backup_schedule_state": "absent"})
    assert gone.after["cron_file"] is None and not gone.after["timer_unit_exists"]
    assert gone.after["env_file_mode"] == ""  # the environment file is gone too
    assert gone.after["cron_daemon"] == "active"  # other cron jobs may need it


@pytest.mark.fleet
def test_systemd_keeps_the_environment_private_and_reloads_units_a_dead_run_left(db1, tmp_path: Path) -> None:
    playbook = _playbook(tmp_path)
    first = run_playbook(playbook, db1.inventory, extravars=SCHEDULE, diff=True)
    assert first.rc == 0, first.stdout[-3000:]
    unit = _ssh("cat", f"/etc/systemd/system/{NAME}.service").stdout
    assert f"\nEnvironmentFile={ENV_FILE}\n" in unit and "RUNBOOK_PYTEST=" not in unit, unit
    assert _ssh("stat", "-c", "%U %a", ENV_FILE).stdout.strip() == "postgres 600"
    assert "RUNBOOK_PYTEST=" not in first.stdout  # no diff shows the value
    # systemd reads the file as the cron line's shell does: the command gets the value exactly
    _ssh("rm", "-f", OUT)
    _ssh("systemctl", "start", f"{NAME}.service")  # a oneshot: returns when the command is done
    assert _ssh("cat", OUT).stdout == EXPECTED_OUT

    # a run that writes the new time, then dies before its handlers reload systemd
    moved = {**SCHEDULE, "backup_schedule_time": "05:52"}
    died = tmp_path / "died.yml"
    died.write_text(yaml.safe_dump([{**PLAY[0], "tasks": [{"name": "The run dies",
                                                          "ansible.builtin.fail": {"msg": "died"}}]}]))
    assert run_playbook(str(died), db1.inventory, extravars=moved).rc != 0
    assert _timer("NeedDaemonReload")["NeedDaemonReload"] == "yes"
    assert "OnCalendar=*-*-* 04:41:00" in _timer("TimersCalendar")["TimersCalendar"]
    # the next run finds the templates unchanged, yet must reload, say so, and then be idempotent
    again = run_playbook(playbook, db1.inventory, extravars=moved)
    assert again.rc == 0 and again.changed("db1") > 0, again.stdout[-3000:]
    state = _timer("NeedDaemonReload", "TimersCalendar", "ActiveState")
    assert state["NeedDaemonReload"] == "no" and state["ActiveState"] == "active", state
    assert "OnCalendar=*-*-* 05:52:00" in state["TimersCalendar"], state
    for check in (True, False):
        done = run_playbook(playbook, db1.inventory, extravars=moved, check=check)
        assert done.rc == 0 and done.changed("db1") == 0, done.stdout[-3000:]


@pytest.mark.fleet
@pytest.mark.slow
def test_cron_really_runs_the_line(db1, tmp_path: Path) -> None:
    """The cron daemon itself picks the file up and runs the command (25 to 85 s of waiting)."""
    # The first minute that starts after the playbook is done (it takes about 10 s): cron rereads
    # changed files in /etc/cron.d when a minute starts, then runs that minute's lines.
    now = int(_ssh("date", "+%s").stdout)
    at = -(-(now + 25) // 60) * 60
    hhmm = _ssh("date", "-d", f"@{at}", "+%H:%M").stdout.strip()
    # the command as a shell command line this time (the role runs it with /bin/sh -c)
    cron = {**SCHEDULE, "backup_schedule_manager": "cron", "backup_schedule_time": hhmm,
            "backup_schedule_command": SCHEDULE["backup_schedule_command"][2]}
    _ssh("rm", "-f", OUT)
    result = run_playbook(_playbook(tmp_path), db1.inventory, extravars=cron)
    assert result.rc == 0, result.stdout[-3000:]
    assert int(_ssh("date", "+%s").stdout) < at, "the playbook took too long for the minute picked"
    deadline = at + 45
    while int(_ssh("date", "+%s").stdout) < deadline and _ssh("test", "-s", OUT, check=False).returncode != 0:
        time.sleep(3)
    assert _ssh("cat", OUT, check=False).stdout == EXPECTED_OUT, _ssh("cat", f"/var/log/{NAME}.log").stdout
    journal = _ssh("journalctl", "-u", "cron", "--since", f"@{at - 60}", "--no-pager", check=False).stdout
    assert f"(*system*{NAME}) RELOAD" in journal or "(postgres) CMD" in journal, journal
    absent = run_playbook(_playbook(tmp_path), db1.inventory, extravars={**cron, "backup_schedule_state": "absent"})
    assert absent.rc == 0, absent.stdout[-3000:]
