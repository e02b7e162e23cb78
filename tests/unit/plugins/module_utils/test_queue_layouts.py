# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Key building, count commands and reply parsing of the five queue layouts."""
from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L

NOW = 1_800_000_000.5
ISO_EPOCH = 1800000000.0  # 2027-01-15T08:00:00Z


def commands(library: str, prefix: str, queue: str) -> dict[str, tuple]:
    return {p.state: p.commands for p in L.queue_probes(library, prefix, queue, NOW)}


@pytest.mark.parametrize(("library", "state", "expected"), [
    ("bullmq", "waiting", (("LLEN", "bull:emails:wait"), ("LINDEX", "bull:emails:wait", -1))),
    ("bullmq", "paused", (("LLEN", "bull:emails:paused"), ("LINDEX", "bull:emails:paused", -1))),
    ("bullmq", "active", (("LLEN", "bull:emails:active"),)),
    ("bullmq", "delayed", (("ZCARD", "bull:emails:delayed"),)),
    ("bullmq", "prioritized", (("ZCARD", "bull:emails:prioritized"),)),
    ("bullmq", "waiting-children", (("ZCARD", "bull:emails:waiting-children"),)),
    ("bullmq", "completed", (("ZCARD", "bull:emails:completed"),)),
    ("bullmq", "failed", (("ZCARD", "bull:emails:failed"),)),
    ("bullmq", "is_paused", (("HGET", "bull:emails:meta", "paused"),)),
    ("bull", "waiting", (("LLEN", "bull:emails:wait"), ("LINDEX", "bull:emails:wait", -1))),
    ("bull", "is_paused", (("EXISTS", "bull:emails:meta-paused"),)),
    ("rq", "waiting", (("LLEN", "rq:queue:emails"),)),
    ("rq", "started", (("ZCOUNT", "rq:wip:emails", "-inf", "(0"), ("ZCOUNT", "rq:wip:emails", "(1800000000", "+inf"))),
    ("rq", "failed", (("ZCOUNT", "rq:failed:emails", "-inf", "(0"), ("ZCOUNT", "rq:failed:emails", "(1800000000", "+inf"))),
    ("rq", "finished", (("ZCOUNT", "rq:finished:emails", "-inf", "(0"), ("ZCOUNT", "rq:finished:emails", "(1800000000", "+inf"))),
    ("rq", "deferred", (("ZCARD", "rq:deferred:emails"),)),
    ("rq", "scheduled", (("ZCARD", "rq:scheduled:emails"),)),
    ("rq", "canceled", (("ZCARD", "rq:canceled:emails"),)),
    ("celery", "waiting", (("LLEN", "emails"), ("LLEN", "emails\x06\x163"), ("LLEN", "emails\x06\x166"),
                           ("LLEN", "emails\x06\x169"))),
    ("sidekiq", "waiting", (("LLEN", "queue:emails"),)),
])
def test_count_commands(library: str, state: str, expected: tuple) -> None:
    assert commands(library, L.DEFAULT_PREFIX[library], "emails")[state] == expected


def test_every_state_has_a_probe() -> None:
    for library, states in L.STATES.items():
        assert set(commands(library, "p", "q")) - {"is_paused"} == set(states)


@pytest.mark.parametrize(("library", "prefix", "name", "key"), [
    ("celery", "app:", "emails", ["app:emails", "app:emails\x06\x163", "app:emails\x06\x166", "app:emails\x06\x169"]),
    ("sidekiq", "ns", "emails", "ns:queue:emails"),
    ("rq", "myrq", "emails", "myrq:queue:emails"),
    ("bullmq", "{bull}", "emails", "{bull}:emails:wait"),
])
def test_prefixes(library: str, prefix: str, name: str, key) -> None:
    first = commands(library, prefix, name)["waiting"]
    assert [c[1] for c in first if c[0] == "LLEN"] == (key if isinstance(key, list) else [key])


@pytest.mark.parametrize(("fold", "replies", "value"), [
    ("first", [5], 5), ("first", [None], 0),
    ("sum", [1, 2, 3, 0], 6), ("sum", [None, 2], 2),
    ("bull_list", [4, "17"], 4),
    ("bull_list", [4, "0:1700000000"], 3),  # a legacy marker at the tail is not a job
    ("bull_list", [1, "0:0"], 0),
    ("bull_list", [0, None], 0),
    ("flag", ["1"], True), ("flag", [None], False), ("flag", [0], False), ("flag", [1], True),
])
def test_fold(fold: str, replies: list, value) -> None:
    assert L.fold(L.Probe("x", (), fold), replies) == value


def test_fold_raises_an_error_reply() -> None:
    with pytest.raises(ValueError):
        L.fold(L.Probe("x", ()), [ValueError("WRONGTYPE")])


@pytest.mark.parametrize(("library", "prefix", "item", "name"), [
    ("bullmq", "bull", "bull:emails:meta", "emails"),
    ("bullmq", "bull", "bull:emails:17:meta", None),  # not a queue's meta
    ("bullmq", "bull", "other:emails:meta", None),
    ("bull", "bull", "bull:emails:id", "emails"),
    ("bull", "b:x", "b:x:emails:id", "emails"),
    ("rq", "rq", "rq:queue:default", "default"),
    ("rq", "rq", "rq:queue:", None),
    ("sidekiq", "", "mailers", "mailers"),
])
def test_queue_name_from(library: str, prefix: str, item: str, name) -> None:
    assert L.queue_name_from(library, prefix, item) == name


@pytest.mark.parametrize(("library", "prefix", "command"), [
    ("bullmq", "bull", ("SCAN", "bull:*:meta")),
    ("bull", "b*x", ("SCAN", "b\\*x:*:id")),
    ("rq", "rq", ("SMEMBERS", "rq:queues")),
    ("sidekiq", "ns", ("SMEMBERS", "ns:queues")),
    ("celery", "", None),
])
def test_discovery_command(library: str, prefix: str, command) -> None:
    assert L.discovery_command(library, prefix) == command


@pytest.mark.parametrize(("requested", "discovered", "chosen"), [
    (["*"], ["a", "b"], ["a", "b"]),
    (["emails"], [], ["emails"]),  # exact names are reported even when absent
    (["em*", "emails", "x?"], ["emails", "empty", "xy", "z"], ["emails", "empty", "xy"]),  # no duplicates
    (["[ab]*"], ["alpha", "beta", "gamma"], ["alpha", "beta"]),
])
def test_select_queues(requested: list, discovered: list, chosen: list) -> None:
    assert L.select_queues(requested, discovered) == chosen


@pytest.mark.parametrize(("value", "epoch"), [
    ("1800000000000", 1_800_000_000.0),  # BullMQ timestamp (ms)
    (1_800_000_000_000, 1_800_000_000.0),  # Sidekiq 8 (ms)
    (1_800_000_000.25, 1_800_000_000.25),  # Sidekiq 7 (s)
    ("2027-01-15T08:00:00.000000Z", ISO_EPOCH),  # RQ's utcformat
    ("2027-01-15T08:00:00+00:00", ISO_EPOCH),
    ("", None), (None, None), ("soon", None),
])
def test_parse_epoch(value, epoch) -> None:
    assert L.parse_epoch(value) == epoch


@pytest.mark.parametrize(("library", "first", "second", "job", "age"), [
    ("bullmq", ["5", None], ["1799999990000"], "5", 10.5),
    ("bullmq", ["0:0", "9"], ["1799999000000"], "9", 1000.5),  # the marker skipped
    ("bull", ["3", "8"], ["1799999990000", "1799999900000"], "8", 100.5),  # the older of wait and paused
    ("rq", ["abc"], ["2027-01-15T08:00:00.000000Z"], "abc", NOW - ISO_EPOCH),
    ("sidekiq", ['{"jid": "j1", "enqueued_at": 1799999999.5}'], [], "j1", 1.0),
    ("sidekiq", ['{"jid": "j2", "enqueued_at": 1799999999500}'], [], "j2", 1.0),
    ("sidekiq", [None], [], None, None),
    ("bullmq", [None, None], [], None, None),
])
def test_oldest_age(library: str, first: list, second: list, job, age) -> None:
    found = L.oldest_age(library, first, second, NOW)
    assert found[0] == job
    assert found[1] == (pytest.approx(age) if age is not None else None)


@pytest.mark.parametrize(("library", "replies", "followup"), [
    ("bullmq", ["5", "0:0"], ("HMGET_MANY", [("bull:q:5", "timestamp")])),
    ("rq", ["abc"], ("HMGET_MANY", [("rq:job:abc", "enqueued_at")])),
    ("sidekiq", ['{"jid": "x"}'], None),  # the payload has the time: no second read
    ("rq", [None], None),
])
def test_oldest_followup(library: str, replies: list, followup) -> None:
    assert L.oldest_followup(library, L.DEFAULT_PREFIX[library], "q", replies) == followup


def test_global_probes() -> None:
    probes = {p.state: p.commands for p in L.global_probes("sidekiq", "ns", ["h:1:a", "h:2:b"])}
    assert probes == {"scheduled": (("ZCARD", "ns:schedule"),), "retry": (("ZCARD", "ns:retry"),),
                      "dead": (("ZCARD", "ns:dead"),), "busy": (("HGET", "ns:h:1:a", "busy"), ("HGET", "ns:h:2:b", "busy"))}
    assert [p.commands for p in L.global_probes("celery", "app:")] == [(("HLEN", "app:unacked"),)]
    assert not L.global_probes("rq", "rq")
