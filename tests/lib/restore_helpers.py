# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the backup, restore and restore drill tests share, on the sandbox and on the podman fleet.

- the digest of every user table (row count and md5 of its rows), to tell that a database holds a backup,
- the fleet's hosts over plain ssh (psql as postgres over the unix socket: no password anywhere),
- the bucket, read with boto3 from the inventory's runbook_s3_* login,
- backup.yml's results, the drill's evidence files and the row counts a passing drill records,
- a cleanup that tries every step and raises the first error.
"""
from __future__ import annotations

import shlex
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
import yaml

from tests.conftest import Target
from tests.lib.runner import PlaybookResult

# One row per user table: "<schema>.<table> <count>:<md5 of its rows in a fixed order>"; query_to_xml runs the
# count of each table inside this one statement, so that psql over ssh and psycopg read it alike.
DIGEST_SQL = """
SELECT format('%I.%I', schemaname, tablename) || ' ' || (xpath('/row/d/text()', query_to_xml(format(
         'SELECT count(*) || '':'' || md5(coalesce(string_agg(t::text, ''|'' ORDER BY t::text), '''')) AS d '
         'FROM %I.%I t', schemaname, tablename), false, true, '')))[1]::text
  FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1
"""
PSQL = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
BACKUPS_TASK = "Report | export the backups"


# ----------------------------------------------------------------------------------------------- databases


def parse_digests(lines: Iterable[str]) -> dict[str, str]:
    """DIGEST_SQL's rows as {"<schema>.<table>": "<count>:<md5>"} (a quoted table name may hold a blank)."""
    return dict(line.rsplit(" ", 1) for line in lines if line)


def table_digests(conn: psycopg.Connection) -> dict[str, str]:
    """DIGEST_SQL on conn's database."""
    return parse_digests(row[0] for row in conn.execute(DIGEST_SQL).fetchall())


@dataclass(kw_only=True)
class BackedUp:
    """A database of a test's own, backed up: the backup's id and the digests then and after the changes since."""

    backup_id: str = ""
    at_backup: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)


def http_status(url: str, timeout: float = 10) -> int | None:
    """The HTTP status code of url, None when nothing answers (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------- fleet


def ssh(target: Target, host: str, *argv: str, stdin: str | None = None) -> str:
    """argv on a fleet host over plain ssh, as root: for the reads (an ad-hoc run costs ~3.5 s, this ~0.2 s)."""
    key, port = target.env["FLEET_SSH_KEY"], target.env[f"FLEET_SSH_PORT_{host.upper()}"]
    proc = subprocess.run(["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                           "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-i", key, "-p", port, "root@127.0.0.1",
                           "cd / && " + shlex.join(argv)],  # ssh hands the remote shell one string
                          text=True, capture_output=True, check=False, timeout=120, input=stdin)
    assert proc.returncode == 0, f"{host}: {argv}: {proc.stderr}"
    return proc.stdout


def psql(target: Target, host: str, sql: str, database: str) -> list[str]:
    """SQL (on stdin) as postgres on a fleet host over its unix socket: a peer login, no password anywhere."""
    out = ssh(target, host, "runuser", "-u", "postgres", "--", *PSQL, "-d", database, stdin=sql)
    return [line for line in out.splitlines() if line]


def group_vars(target: Target, group: str) -> dict[str, Any]:
    return yaml.safe_load((target.inventory / "group_vars" / f"{group}.yml").read_text())


def fleet_backup_dir(target: Target, tag: str) -> str:
    """A directory of a test's own inside db1's runbook_backup_dir, which provisioning made (mode 0700)."""
    return f"{group_vars(target, 'postgres')['runbook_backup_dir']}/{tag}"


# -------------------------------------------------------------------------------------------------- bucket


@dataclass(frozen=True)
class Bucket:
    client: Any
    name: str

    def keys(self, prefix: str) -> list[str]:
        """Every key under prefix, all pages, sorted."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def delete(self, prefix: str) -> None:
        for key in self.keys(prefix):
            self.client.delete_object(Bucket=self.name, Key=key)


def s3_bucket(login: dict[str, Any]) -> Bucket:
    """The bucket of an inventory's runbook_s3_* variables, with its credentials."""
    client = boto3.client("s3", endpoint_url=login["runbook_s3_endpoint_url"], region_name=login["runbook_s3_region"],
                          aws_access_key_id=login["runbook_s3_access_key"],
                          aws_secret_access_key=login["runbook_s3_secret_key"])
    return Bucket(client, login["runbook_s3_bucket"])


# ------------------------------------------------------------------------------------ backups and the drill


def backup_results(result: PlaybookResult, host: str) -> list[dict[str, Any]]:
    """backup.yml's backup_results on host: one entry per database backed up (or reused)."""
    return [b for r in result.host_results(host, BACKUPS_TASK)
            for b in r.get("ansible_facts", {}).get("backup_results", [])]


def evidence_files(directory: Path) -> list[Path]:
    """The drill's evidence files in directory (none when it was never made)."""
    return sorted(directory.glob("*.json")) if directory.exists() else []


def expected_counts(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The evidence's row_counts of a drill that compared the exact count of every table of manifest."""
    return {f"{t['schema']}.{t['name']}": {"backup": t["rows"], "restored": t["rows"], "status": "passed",
                                           "passed": True, "reason": None}
            for t in manifest["tables"]}


def run_every(*steps: Callable[[], Any]) -> None:
    """Run every step, also after one failed; then raise the first error (a cleanup leaves as little as it can)."""
    errors = []
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - every step is tried, the first error raised
            errors.append(exc)
    if errors:
        raise errors[0]
