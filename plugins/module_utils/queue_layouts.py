# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where five job-queue libraries keep their jobs in Redis, and how each library counts them.

Pure functions: key names, the read commands that count one queue the way the library's own API
does, and the parsing of their replies. The modules pipeline the commands (all queues of a host in
one round trip); nothing here talks to Redis.

Read from the libraries' sources (the versions the tests run):
- BullMQ 6.7 ``Queue.getJobCounts()`` -> ``getCounts-1.lua``: LLEN for wait/paused/active (minus a
  legacy ``0:`` marker at the tail of wait/paused), ZCARD for the sorted sets. Its default types have
  no ``paused``: since BullMQ 5 a paused queue keeps its jobs in ``wait`` and sets ``meta.paused``.
- Bull 4 ``Queue.getJobCounts()``: LLEN wait/paused/active, ZCARD completed/failed/delayed.
- RQ 3.0 ``len(Queue)`` is LLEN ``rq:queue:<name>``; a registry's ``count`` first runs ``cleanup()``,
  which for started/finished/failed is ZREMRANGEBYSCORE 0 <now>: we count what survives that
  (scores below 0 or above now) without deleting anything.
- kombu 5.7 ``Channel._size()``: the sum of LLEN over the priority lists ``<q>``, ``<q>\\x06\\x163``,
  ``<q>\\x06\\x166``, ``<q>\\x06\\x169``.
- Sidekiq's API: ``Queue#size`` LLEN ``queue:<name>``, ``Queue#latency`` from the tail job's
  ``enqueued_at``; ``Stats`` ZCARD schedule/retry/dead and the sum of ``busy`` over ``processes``.
"""
from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

LIBRARIES: tuple[str, ...] = ("bullmq", "bull", "rq", "celery", "sidekiq")
DEFAULT_PREFIX: dict[str, str] = {"bullmq": "bull", "bull": "bull", "rq": "rq", "celery": "", "sidekiq": ""}

# The states of each library, in the library's words (the ready-to-run list is `waiting` everywhere).
STATES: dict[str, tuple[str, ...]] = {
    "bullmq": ("waiting", "paused", "active", "delayed", "prioritized", "waiting-children", "completed", "failed"),
    "bull": ("waiting", "paused", "active", "delayed", "completed", "failed"),
    "rq": ("waiting", "started", "finished", "failed", "deferred", "scheduled", "canceled"),
    "celery": ("waiting",),
    "sidekiq": ("waiting",),
}
# Library-wide sets that belong to no single queue (Sidekiq's Stats, kombu's unacked hash).
GLOBAL_STATES: dict[str, tuple[str, ...]] = {
    "sidekiq": ("scheduled", "retry", "dead", "busy"),
    "celery": ("unacked",),
}

# Celery's default queue: kombu keeps no list of queues, so this is the name read when none is given.
DEFAULT_QUEUE: dict[str, str] = {"celery": "celery"}

KOMBU_PRIORITY_STEPS: tuple[int, ...] = (0, 3, 6, 9)
KOMBU_SEP = "\x06\x16"
KOMBU_BINDING_PREFIX = "_kombu.binding."  # one set per exchange
KOMBU_UNACKED = "unacked"  # and unacked_index, unacked_mutex
# Sidekiq's library-wide sorted sets: (state in Stats' words, key)
SIDEKIQ_SETS: tuple[tuple[str, str], ...] = (("scheduled", "schedule"), ("retry", "retry"), ("dead", "dead"))
BULL_MARKER_PREFIX = "0:"


@dataclass(frozen=True)
class Probe:
    """The read commands for one figure and how to fold their replies into it."""

    state: str
    commands: tuple[tuple[Any, ...], ...]
    fold: str = "first"  # first | sum | bull_list | flag


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def key(prefix: str, *parts: str) -> str:
    """Join with ':', leaving out an empty prefix (Sidekiq without a namespace, Celery without a keyprefix)."""
    return ":".join([prefix, *parts]) if prefix else ":".join(parts)


def bull_key(prefix: str, queue: str, suffix: str) -> str:
    return f"{prefix}:{queue}:{suffix}"


def rq_registry_key(prefix: str, registry: str, queue: str) -> str:
    return f"{prefix}:{'wip' if registry == 'started' else registry}:{queue}"


def celery_queue_keys(prefix: str, queue: str) -> list[str]:
    """kombu's _q_for_pri over the priority steps: priority 0 is the bare name."""
    return [f"{prefix}{queue}" + (f"{KOMBU_SEP}{pri}" if pri else "") for pri in KOMBU_PRIORITY_STEPS]


def sidekiq_key(prefix: str, name: str) -> str:
    """redis-namespace puts `<ns>:` in front of every key."""
    return f"{prefix}:{name}" if prefix else name


def queue_probes(library: str, prefix: str, queue: str, now: float) -> list[Probe]:
    """The commands that count every state of one queue as the library itself does."""
    if library in ("bullmq", "bull"):
        probes = []
        for state in STATES[library]:
            suffix = "wait" if state == "waiting" else state
            k = bull_key(prefix, queue, suffix)
            if state in ("waiting", "paused"):
                probes.append(Probe(state, (("LLEN", k), ("LINDEX", k, -1)), "bull_list"))
            elif state == "active":
                probes.append(Probe(state, (("LLEN", k),)))
            else:
                probes.append(Probe(state, (("ZCARD", k),)))
        if library == "bullmq":
            probes.append(Probe("is_paused", (("HGET", bull_key(prefix, queue, "meta"), "paused"),), "flag"))
        else:
            probes.append(Probe("is_paused", (("EXISTS", bull_key(prefix, queue, "meta-paused")),), "flag"))
        return probes
    if library == "rq":
        probes = [Probe("waiting", (("LLEN", f"{prefix}:queue:{queue}"),))]
        cutoff = int(now)  # rq's current_timestamp(): whole seconds
        for state in STATES["rq"][1:]:
            k = rq_registry_key(prefix, state, queue)
            if state in ("started", "finished", "failed"):
                # what ZREMRANGEBYSCORE 0 <now> leaves: negative (never-expiring) scores and future ones
                probes.append(Probe(state, (("ZCOUNT", k, "-inf", "(0"), ("ZCOUNT", k, f"({cutoff}", "+inf")), "sum"))
            else:
                probes.append(Probe(state, (("ZCARD", k),)))
        return probes
    if library == "celery":
        return [Probe("waiting", tuple(("LLEN", k) for k in celery_queue_keys(prefix, queue)), "sum")]
    if library == "sidekiq":
        return [Probe("waiting", (("LLEN", sidekiq_key(prefix, f"queue:{queue}")),))]
    raise ValueError(f"unknown library {library!r}")


def global_probes(library: str, prefix: str, processes: Sequence[str] = ()) -> list[Probe]:
    if library == "sidekiq":
        probes = [Probe(state, (("ZCARD", sidekiq_key(prefix, name)),)) for state, name in SIDEKIQ_SETS]
        probes.append(Probe("busy", tuple(("HGET", sidekiq_key(prefix, p), "busy") for p in processes), "sum"))
        return probes
    if library == "celery":
        return [Probe("unacked", (("HLEN", f"{prefix}{KOMBU_UNACKED}"),))]
    return []


def fold(probe: Probe, replies: Sequence[Any]) -> Any:
    """One figure from the replies to a probe's commands; an error reply raises it."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    if probe.fold == "flag":
        return bool(replies[0]) and str(replies[0]) not in ("0", "")
    if probe.fold == "sum":
        return sum(int(r or 0) for r in replies)
    if probe.fold == "bull_list":
        length, tail = int(replies[0] or 0), replies[1]
        if tail is not None and str(tail).startswith(BULL_MARKER_PREFIX):
            # getCounts-1.lua: a legacy marker at the tail is not a job
            return length - 1 if length > 1 else 0
        return length
    return int(replies[0] or 0)


def prefix_for(library: str, given: Optional[str]) -> str:
    """The prefix option, or the library's default when it is not given (an empty string is a prefix)."""
    return DEFAULT_PREFIX[library] if given is None else given


# --- every key of a library (the flush guard's patterns) --------------------------------------------

def key_patterns(library: str, prefix: str) -> tuple[str, ...]:
    """SCAN MATCH patterns and exact names that find a library's keys: a database holding one holds its jobs.

    BullMQ, Bull and RQ write every key under ``<prefix>:``; kombu and Sidekiq write fixed names (after an
    optional prefix), of which these exist whenever a queue does. The flush guard's defaults come from here.
    """
    p = glob_escape(prefix)
    if library in ("bullmq", "bull", "rq"):
        return (f"{p}:*",)
    if library == "celery":
        return (p + DEFAULT_QUEUE["celery"], f"{p}{KOMBU_BINDING_PREFIX}*", f"{p}{KOMBU_UNACKED}*")
    if library == "sidekiq":
        names = ("queue:*", "queues", *(set_key for _state, set_key in SIDEKIQ_SETS))
        return tuple(sidekiq_key(p, name) for name in names)
    raise ValueError(f"unknown library {library!r}")


# --- discovery ---------------------------------------------------------------------------------------

def discovery_command(library: str, prefix: str) -> Optional[tuple[Any, ...]]:
    """What lists a library's queues: a SCAN match (BullMQ, Bull) or a set (RQ, Sidekiq); Celery has none."""
    if library == "bullmq":
        return ("SCAN", f"{glob_escape(prefix)}:*:meta")
    if library == "bull":
        return ("SCAN", f"{glob_escape(prefix)}:*:id")
    if library == "rq":
        return ("SMEMBERS", f"{prefix}:queues")
    if library == "sidekiq":
        return ("SMEMBERS", sidekiq_key(prefix, "queues"))
    return None


def glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def queue_name_from(library: str, prefix: str, item: str) -> Optional[str]:
    """The queue name in one discovered key or set member, or None when it is not one."""
    if library in ("bullmq", "bull"):
        suffix = ":meta" if library == "bullmq" else ":id"
        head = f"{prefix}:"
        if item.startswith(head) and item.endswith(suffix):
            name = item[len(head):-len(suffix)]
            # a job id key looks like <prefix>:<queue>:<id>; queue names have no ':'
            return name if name and ":" not in name else None
        return None
    if library == "rq":
        head = f"{prefix}:queue:"
        return item[len(head):] if item.startswith(head) and len(item) > len(head) else None
    return item or None


def select_queues(requested: Sequence[str], discovered: Sequence[str]) -> list[str]:
    """Exact names as given (even when absent: their counts are 0), patterns matched against what exists."""
    chosen: list[str] = []
    for name in requested:
        matches = sorted(d for d in discovered if fnmatch.fnmatchcase(d, name)) if is_pattern(name) else [name]
        for match in matches:
            if match not in chosen:
                chosen.append(match)
    return chosen


# --- the oldest waiting job -------------------------------------------------------------------------

def oldest_probe(library: str, prefix: str, queue: str) -> list[tuple[Any, ...]]:
    """Commands (in the counting round trip) that find the oldest waiting job of a queue."""
    if library in ("bullmq", "bull"):
        # LPUSH in, RPOPLPUSH out: the oldest is at the tail (index -1)
        return [("LINDEX", bull_key(prefix, queue, "wait"), -1), ("LINDEX", bull_key(prefix, queue, "paused"), -1)]
    if library == "rq":
        return [("LINDEX", f"{prefix}:queue:{queue}", 0)]  # RPUSH in, LPOP out
    if library == "sidekiq":
        return [("LINDEX", sidekiq_key(prefix, f"queue:{queue}"), -1)]  # LPUSH in, BRPOP out
    return []  # kombu's messages carry no enqueue time


def oldest_followup(library: str, prefix: str, queue: str, replies: Sequence[Any]) -> Optional[tuple[Any, ...]]:
    """The second read (job hash) for libraries that keep the time in the job, or None."""
    ids = [r for r in replies if isinstance(r, str) and not r.startswith(BULL_MARKER_PREFIX)]
    if not ids:
        return None
    if library in ("bullmq", "bull"):
        return ("HMGET_MANY", [(bull_key(prefix, queue, job), "timestamp") for job in ids])
    if library == "rq":
        return ("HMGET_MANY", [(f"{prefix}:job:{ids[0]}", "enqueued_at")])
    return None


def parse_epoch(value: Any) -> Optional[float]:
    """Seconds since the epoch from the forms the libraries store: ms (BullMQ, Sidekiq 8), s (Sidekiq 7), ISO (RQ)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.strptime(text.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f")
            except ValueError:
                try:
                    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                except ValueError:
                    return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    return number / 1000.0 if number > 1e11 else number


def sidekiq_payload_time(payload: Any, field: str = "enqueued_at") -> Optional[float]:
    try:
        job = json.loads(payload) if isinstance(payload, str) else payload
    except ValueError:
        return None
    return parse_epoch(job.get(field)) if isinstance(job, dict) else None


def oldest_age(library: str, first: Sequence[Any], second: Sequence[Any], now: Optional[float] = None) -> tuple[Optional[str], Optional[float]]:
    """(job id, age in seconds) of the oldest waiting job, from the replies of both reads."""
    now = time.time() if now is None else now
    if library == "sidekiq":
        payload = first[0] if first else None
        when = sidekiq_payload_time(payload) if payload else None
        if when is None:
            return None, None
        try:
            jid = json.loads(payload).get("jid")
        except (ValueError, AttributeError):
            jid = None
        return jid, max(0.0, now - when)
    ids = [r for r in first if isinstance(r, str) and not r.startswith(BULL_MARKER_PREFIX)]
    best: tuple[Optional[str], Optional[float]] = (None, None)
    for job, value in zip(ids, second):
        when = parse_epoch(value)
        if when is not None and (best[1] is None or when < best[1]):
            best = (job, when)
    if best[1] is None:
        return (ids[0] if ids else None), None
    return best[0], max(0.0, now - best[1])
