# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""After converge, what prepare took away is back and works (testinfra, real hosts)."""
from __future__ import annotations

import pytest


def _require_group(host, group: str) -> None:
    if group not in host.ansible.get_variables().get("group_names", []):
        pytest.skip(f"not in group {group}")


def test_redis_library_is_back_for_the_hosts_interpreter(host):
    _require_group(host, "redis")
    assert host.package("python3-redis").is_installed
    assert host.run("/usr/bin/python3 -c 'import redis'").rc == 0
    assert host.service("redis-server").is_running


def test_psycopg_imports_for_the_hosts_interpreter(host):
    _require_group(host, "postgres")
    assert host.package("python3-psycopg").is_installed
    assert host.run("/usr/bin/python3 -c 'import psycopg'").rc == 0
    assert host.service("postgresql@15-main").is_running


def test_every_host_runs_systemd_and_sshd(host):
    assert host.service("ssh").is_running
    assert host.run("systemctl is-system-running").stdout.strip() in {"running", "degraded"}
