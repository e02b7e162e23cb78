# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`'s runbooks (scripts/demo.sh) against the sandbox: every playbook runs green, no secret in the logs.

The README promises that `make demo` runs every runbook against the sandbox; a runbook that starts refusing the
demo's answers (a new required variable, say) would otherwise go unnoticed until someone types it. This runs the
script itself, as `make demo` does once the sandbox is up.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "reports" / "demo"
SECRETS = ("PGPASSWORD", "RUNBOOK_PG_ADMIN_PASSWORD", "REDISCLI_AUTH", "ADMIN_TOKEN", "AWS_SECRET_ACCESS_KEY")

pytestmark = pytest.mark.sandbox


def test_every_runbook_of_the_demo_runs_green_without_a_secret_in_its_log(sandbox) -> None:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, text=True, capture_output=True,
                          check=False, timeout=1200)
    summary = dict(line.split(None, 1) for line in (REPORTS / "summary.txt").read_text().splitlines())
    playbooks = sorted(p.stem for p in (ROOT / "playbooks").glob("*.yml"))
    assert sorted(summary) == playbooks, done.stdout
    failed = {name: (REPORTS / f"{name}.log").read_text()[-2000:] for name, result in summary.items() if result != "ok"}
    assert not failed, failed
    assert done.returncode == 0, done.stdout + done.stderr
    logs = {p.name: p.read_text() for p in REPORTS.glob("*.log")}
    secrets = {name: sandbox.env[name] for name in SECRETS if sandbox.env.get(name)}
    assert len(secrets) == len(SECRETS)
    leaked = [f"{name} in {log}" for log, text in logs.items() for name, value in secrets.items() if value in text]
    assert not leaked, leaked
