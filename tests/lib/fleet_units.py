# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A command on a fleet host over plain ssh, for the tests that read or set systemd units there.

Plain ssh costs about 0.2 s where an ad-hoc Ansible run costs seconds. The exit code is the caller's to
judge: `systemctl is-active` exits non-zero for an inactive unit, and that is an answer.
"""
from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest


def on_host(fleet: Any, host: str, *command: str) -> subprocess.CompletedProcess[str]:
    """command as root on the fleet's host (app1, db1, ...); the test is skipped when the fleet lacks it."""
    port, key = fleet.env.get(f"FLEET_SSH_PORT_{host.upper()}"), fleet.env.get("FLEET_SSH_KEY")
    if not port or not key:
        pytest.skip(f"the fleet has no {host} (.fleet/env)")
    return subprocess.run(["ssh", "-i", key, "-p", port, "-o", "StrictHostKeyChecking=no", "-o",
                           "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                           # ssh hands the remote shell one string: quoted, so that a unit pattern stays one
                           "root@127.0.0.1", shlex.join(command)], text=True, capture_output=True, check=False,
                          timeout=120)
