# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What pg_restore says about an archive: its TOC (pg_restore --list), and whether every data block reads back.

pg_restore --list reads only the header and the TOC, so a custom archive cut short after its TOC still lists
fine; read_back() reads the data too (pg_restore --file=/dev/null), which is what finds such an archive.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ansible_collections.runbook.ops.plugins.module_utils.pg import redact
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup import BackupError
from ansible_collections.runbook.ops.plugins.module_utils.pg_backup_tools import run_tool, tool_problems

if TYPE_CHECKING:
    from ansible.module_utils.basic import AnsibleModule

# "3351; 0 16561 TABLE DATA public t owner": dump id; catalog oid, object oid, then description, schema, name,
# owner (names unquoted, so only the leading numbers and the description are reliable to parse).
_ENTRY_RE = re.compile(r"^(\d+);\s+(\d+)\s+(\d+)\s+(.*)$")
_HEADER_RE = re.compile(r"^;\s+([A-Za-z][A-Za-z_ ]*?):\s+(.*)$")
_DATA_PREFIXES = ("TABLE DATA ", "MATERIALIZED VIEW DATA ")


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    catalog_oid: int
    oid: int
    rest: str  # "TABLE DATA public t owner"


@dataclass
class Toc:
    entries: list[TocEntry] = field(default_factory=list)
    header: dict[str, str] = field(default_factory=dict)  # "Format": "CUSTOM", "TOC Entries": "14", ...

    @property
    def count(self) -> int:
        return len(self.entries)

    @property
    def data_oids(self) -> set[int]:
        """Oids of the relations the archive has data for (TABLE DATA entries name the table's oid)."""
        return {e.oid for e in self.entries if e.rest.startswith(_DATA_PREFIXES)}


def parse_toc(text: str) -> Toc:
    """The entries and header of pg_restore --list output. Lines starting with ';' are comments or the header."""
    toc = Toc()
    in_header = True
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            if "Selected TOC Entries" in line:
                in_header = False
            match = _HEADER_RE.match(line) if in_header else None
            if match:
                toc.header[match.group(1).strip()] = match.group(2).strip()
            continue
        match = _ENTRY_RE.match(line)
        if match:
            toc.entries.append(TocEntry(int(match.group(1)), int(match.group(2)), int(match.group(3)),
                                        match.group(4)))
    return toc


def _failure(what: str, rc: int, err: str, params: dict[str, Any]) -> BackupError:
    detail = "; ".join(line.strip() for line in err.splitlines() if line.strip())[:2000]
    return BackupError(redact(f"{what} failed (exit code {rc}): {detail or 'no message'}", params))


def read_toc(module: AnsibleModule, pg_restore: str, archive: str, *, expect_format: str | None = None) -> Toc:
    """pg_restore --list of archive; BackupError when it fails, warns, or lists no entry, or the format differs."""
    rc, out, err = run_tool(module, [pg_restore, "--list", archive])
    problems = tool_problems(err)
    name = os.path.basename(archive)
    if rc != 0 or problems:
        raise _failure(f"pg_restore --list {name}", rc, err, module.params)
    toc = parse_toc(out)
    if toc.count == 0:
        raise BackupError(f"pg_restore --list {name}: the archive has no TOC entries (an empty dump)")
    if expect_format and toc.header.get("Format") != expect_format:
        raise BackupError(f"pg_restore --list {name}: the archive's format is {toc.header.get('Format')!r}, "
                          f"expected {expect_format!r}")
    return toc


def read_back(module: AnsibleModule, pg_restore: str, archive: str) -> None:
    """Read every block of archive as a restore would, into /dev/null; BackupError on a short or corrupt one."""
    rc, _out, err = run_tool(module, [pg_restore, f"--file={os.devnull}", archive])
    if rc != 0 or tool_problems(err):
        raise _failure(f"reading back {os.path.basename(archive)} (pg_restore --file={os.devnull})", rc, err,
                       module.params)
