# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Does a Redis database hold job-queue keys? The guard of runbook.ops.redis_flush.

The key layouts are those the libraries document and write (queue_layouts, which the
queue modules read too): a database that holds any of them is a queue database, and
FLUSHDB there deletes jobs. Exact names are checked with EXISTS in one pipelined round
trip, glob patterns with SCAN + MATCH (a large COUNT, so that a big database takes few
round trips), stopping at the first key found.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Iterable, Optional

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L

# Every library's keys under its default prefix, in LIBRARIES order: bull:*, rq:*, celery,
# _kombu.binding.*, unacked*, queue:*, queues, schedule, retry, dead.
DEFAULT_QUEUE_KEY_PATTERNS: tuple[str, ...] = tuple(dict.fromkeys(
    pattern for library in L.LIBRARIES for pattern in L.key_patterns(library, L.DEFAULT_PREFIX[library])))

_GLOB_CHARS = frozenset("*?[\\")


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def split_patterns(patterns: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exact names, glob patterns), order kept, duplicates and empty strings dropped."""
    exact: list[str] = []
    globs: list[str] = []
    for pattern in dict.fromkeys(p for p in patterns if p):
        (globs if is_glob(pattern) else exact).append(pattern)
    return exact, globs


def matching_pattern(key: str, patterns: Iterable[str]) -> Optional[str]:
    """The first pattern that matches key (fnmatch's * ? [] are Redis MATCH's), or None."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(key, pattern):
            return pattern
    return None


def find_queue_key(client: Any, patterns: Iterable[str], count: int = 10000) -> tuple[Optional[str], Optional[str], int]:
    """(first queue key found, its pattern, SCAN calls made); (None, None, calls) when there is none."""
    exact, globs = split_patterns(patterns)
    calls = 0
    if exact:
        pipe = client.pipeline(transaction=False)
        for name in exact:
            pipe.exists(name)
        calls += 1
        for name, found in zip(exact, pipe.execute()):
            if found:
                return name, name, calls
    for pattern in globs:
        cursor = 0
        while True:
            cursor, keys = client.scan(cursor=cursor, match=pattern, count=count)
            calls += 1
            if keys:
                return keys[0], pattern, calls
            if int(cursor) == 0:
                break
    return None, None, calls
