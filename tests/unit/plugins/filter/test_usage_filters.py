# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.runbook.ops.plugins.filter.disk_usage import disk_usage, parse_df
from ansible_collections.runbook.ops.plugins.filter.memory_usage import memory_usage

GIB = 1024 ** 3


def mount(path: str, *, used_pct: float = 50.0, total: int = 100 * GIB, fstype: str = "ext4",
          device: str | None = None, options: str = "rw,relatime") -> dict[str, Any]:
    available = int(round(total * (100.0 - used_pct) / 100.0))
    return {"mount": path, "device": device or f"/dev/disk-{path}", "fstype": fstype, "options": options,
            "size_total": total, "size_available": available}


@pytest.mark.parametrize(
    ("used", "verdict", "msg"),
    [
        (10.0, "ok", "disk / 10.0% used"),
        (79.94, "ok", "disk / 79.9% used"),
        (79.96, "warning", "disk / 80.0% used (warning at 80%)"),  # rounded value decides
        (85.0, "warning", "disk / 85.0% used (warning at 80%)"),
        (93.4, "critical", "disk / 93.4% used (critical at 90%)"),
        (100.0, "critical", "disk / 100.0% used (critical at 90%)"),
    ],
)
def test_disk_verdicts(used: float, verdict: str, msg: str) -> None:
    [entry] = disk_usage({"/": mount("/", used_pct=used)}, 80, 90)
    assert (entry["verdict"], entry["msg"]) == (verdict, msg)
    assert entry["mount"] == "/"


@pytest.mark.parametrize(
    ("mounts", "expected"),
    [
        # pseudo and memory filesystems, and filesystems without a size, are left out
        ([mount("/"), mount("/dev/shm", fstype="tmpfs"), mount("/proc", fstype="proc", total=0),
          mount("/sys/fs/cgroup/cpu", fstype="cgroup")], ["/"]),
        # read-only mounts are left out ("ro" as an option, not as part of another word)
        ([mount("/"), mount("/usr/lib/ro-layer", options="ro,relatime"), mount("/srv", options="rw,errors=ro")],
         ["/", "/srv"]),
        # container roots are overlay: they count
        ([mount("/", fstype="overlay", device="overlay")], ["/"]),
        # sorted by mount point
        ([mount("/var"), mount("/"), mount("/boot")], ["/", "/boot", "/var"]),
        ([], []),
    ],
)
def test_disk_selection(mounts: list[dict[str, Any]], expected: list[str]) -> None:
    assert [e["mount"] for e in disk_usage(mounts)] == expected


def test_disk_accepts_mount_facts_dict_and_collapses_bind_mounts() -> None:
    shared = {"device": "/dev/vda1", "total": 50 * GIB, "used_pct": 95.0}
    facts = {
        "/var/lib/postgresql": mount("/var/lib/postgresql", **shared),
        "/": mount("/", **shared),
        "/data": mount("/data", device="/dev/vdb", used_pct=20.0),
    }
    result = disk_usage(facts, 80, 90)
    assert [(e["mount"], e["mounts"], e["verdict"]) for e in result] == [
        ("/", ["/", "/var/lib/postgresql"], "critical"),
        ("/data", ["/data"], "ok"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"exclude_mounts": ["/etc/hosts", "/snap/*"]}, ["/"]),
        ({"exclude_fstypes": []}, ["/", "/dev/shm", "/etc/hosts"]),
        ({"include_readonly": True}, ["/", "/etc/hosts", "/snap/core/1"]),
    ],
)
def test_disk_options(kwargs: dict[str, Any], expected: list[str]) -> None:
    mounts = [mount("/"), mount("/dev/shm", fstype="tmpfs"), mount("/etc/hosts", device="/dev/sdz"),
              mount("/snap/core/1", fstype="ext4", options="ro")]
    assert [e["mount"] for e in disk_usage(mounts, **kwargs)] == expected


def test_disk_threshold_of_one_percent_makes_everything_critical() -> None:
    [entry] = disk_usage([mount("/", used_pct=1.0)], 1, 1)
    assert entry["msg"] == "disk / 1.0% used (critical at 1%)"


@pytest.mark.parametrize(
    ("mounts", "kwargs", "message"),
    [
        ("/", {}, "expected mount facts"),
        ([{"device": "/dev/sda"}], {}, "needs at least a 'mount' key"),
        ([{"mount": "/", "size_total": "big", "size_available": 1}], {}, "are not numbers"),
        ([], {"warning": 95, "critical": 90}, "must not be above critical"),
    ],
)
def test_disk_rejects_bad_input(mounts: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        disk_usage(mounts, **kwargs)


MEMINFO = """\
MemTotal:        1000000 kB
MemFree:          100000 kB
MemAvailable:     {available} kB
Buffers:           10000 kB
Cached:           200000 kB
SwapCached:            0 kB
HugePages_Total:       0
"""


@pytest.mark.parametrize(
    ("available", "used_pct", "verdict", "msg"),
    [
        (900000, 10.0, "ok", "memory 10.0% used"),
        (200000, 80.0, "warning", "memory 80.0% used (warning at 80%)"),
        (150000, 85.0, "warning", "memory 85.0% used (warning at 80%)"),
        (50000, 95.0, "critical", "memory 95.0% used (critical at 90%)"),
        (0, 100.0, "critical", "memory 100.0% used (critical at 90%)"),
    ],
)
def test_memory_verdicts(available: int, used_pct: float, verdict: str, msg: str) -> None:
    result = memory_usage(MEMINFO.format(available=available), 80, 90)
    assert result["used_pct"] == used_pct
    assert (result["verdict"], result["msg"]) == (verdict, msg)
    assert result["total_mb"] == 1000000 // 1024


def test_memory_without_memavailable_uses_free_buffers_cached() -> None:
    text = "\n".join(line for line in MEMINFO.splitlines() if not line.startswith("MemAvailable"))
    result = memory_usage(text, 80, 90)
    assert result["available_mb"] == (100000 + 10000 + 200000) // 1024
    assert result["used_pct"] == 69.0


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (b"MemTotal: 1 kB", {}, "expected the text of /proc/meminfo"),
        ("MemFree: 10 kB\n", {}, "no MemTotal"),
        ("", {}, "no MemTotal"),
        (MEMINFO.format(available=1), {"warning": 91, "critical": 90}, "must not be above critical"),
    ],
)
def test_memory_rejects_bad_input(text: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        memory_usage(text, **kwargs)


def test_disk_usage_matches_df_and_leaves_the_root_reserve_out() -> None:
    # 100 GiB: 20 used, 55 reserved for root, 25 available: df says 44.4 %, not 75 %
    info = {"mount": "/", "fstype": "ext4", "device": "/dev/vda", "size_total": 100 * GIB,
            "size_available": 25 * GIB}
    df = ("Filesystem 1-blocks Used Available Capacity Mounted on\n"
          f"/dev/vda {100 * GIB} {20 * GIB} {25 * GIB} 45% /\n")
    [entry] = disk_usage({"/": info}, 80, 90, df=df)
    assert entry["used_pct"] == 44.4
    assert entry["verdict"] == "ok"


@pytest.mark.parametrize(("text", "expected"), [
    ("Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 100 60 40 60% /mnt/my disk\n",
     {"/mnt/my disk": (60, 40)}),
    ("Filesystem 1-blocks Used Available Capacity Mounted on\nfoo - - - - /x\n", {}),
    ("", {}),
])
def test_parse_df(text: str, expected: dict) -> None:
    assert parse_df(text) == expected


def test_disk_usage_without_df_falls_back_to_sizes() -> None:
    [entry] = disk_usage([{"mount": "/", "fstype": "ext4", "size_total": 1000, "size_available": 50}], 80, 90)
    assert entry["used_pct"] == 95.0 and entry["verdict"] == "critical"
