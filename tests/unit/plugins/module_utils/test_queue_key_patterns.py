# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The flush guard's queue-key patterns come from the queue layouts: every key the queue modules read is guarded."""
from __future__ import annotations

import fnmatch

import pytest
import yaml

from ansible_collections.runbook.ops.plugins.module_utils import queue_layouts as L
from ansible_collections.runbook.ops.plugins.module_utils.redis_flush_guard import DEFAULT_QUEUE_KEY_PATTERNS, matching_pattern
from ansible_collections.runbook.ops.plugins.modules import redis_flush

# The guard's list before it was derived from the layouts (0.3.0): it must keep refusing all of these.
PATTERNS_0_3_0 = ("bull:*", "rq:*", "celery", "_kombu.binding.*", "unacked*", "queue:*", "queues", "schedule", "retry",
                  "dead")
NOW = 1_800_000_000.0


def layout_keys(library: str, prefix: str, queue: str) -> set[str]:
    """Every key the queue modules read for one queue, and the library-wide ones, as queue_layouts builds them."""
    commands = [c for p in L.queue_probes(library, prefix, queue, NOW) for c in p.commands]
    commands += [c for p in L.global_probes(library, prefix) for c in p.commands]  # no Sidekiq processes: heartbeats, not jobs
    commands += L.oldest_probe(library, prefix, queue)
    discovery = L.discovery_command(library, prefix)
    if discovery and discovery[0] == "SMEMBERS":
        commands.append(discovery)
    return {c[1] for c in commands}


def test_the_defaults_are_the_0_3_0_list_in_its_order() -> None:
    assert DEFAULT_QUEUE_KEY_PATTERNS == PATTERNS_0_3_0


@pytest.mark.parametrize("old", PATTERNS_0_3_0)
def test_every_earlier_pattern_is_still_matched(old: str) -> None:
    # the key the pattern stood for (its glob replaced by a name) is still a queue key
    assert matching_pattern(old.replace("*", "emails"), DEFAULT_QUEUE_KEY_PATTERNS) is not None


@pytest.mark.parametrize("library", ["bullmq", "bull", "rq", "sidekiq"])
@pytest.mark.parametrize("prefix", ["default", "myapp"])
def test_every_key_the_queue_modules_read_is_guarded(library: str, prefix: str) -> None:
    prefix = L.DEFAULT_PREFIX[library] if prefix == "default" else prefix
    patterns = L.key_patterns(library, prefix)
    for key in layout_keys(library, prefix, "emails"):
        assert matching_pattern(key, patterns), f"{library} key {key!r} is not matched by {patterns}"


@pytest.mark.parametrize("prefix", ["", "app:"])
def test_celery_default_queue_and_kombu_keys_are_guarded(prefix: str) -> None:
    patterns = L.key_patterns("celery", prefix)
    kombu = ["_kombu.binding.celery", "_kombu.binding.celery.pidbox", "unacked", "unacked_index", "unacked_mutex"]
    for key in [prefix + k for k in kombu]:
        assert matching_pattern(key, patterns), key
    # what queue_depth reads: the default queue's list (priority 0) and the unacked hash
    read = [L.celery_queue_keys(prefix, L.DEFAULT_QUEUE["celery"])[0]]
    read += [c[1] for p in L.global_probes("celery", prefix) for c in p.commands]
    for key in read:
        assert matching_pattern(key, patterns), key


@pytest.mark.parametrize(("library", "prefix", "patterns"), [
    ("bullmq", "bull", ("bull:*",)),
    ("bull", "{bull}", ("{bull}:*",)),
    ("rq", "myrq", ("myrq:*",)),
    ("celery", "", ("celery", "_kombu.binding.*", "unacked*")),
    ("celery", "app:", ("app:celery", "app:_kombu.binding.*", "app:unacked*")),
    ("sidekiq", "", ("queue:*", "queues", "schedule", "retry", "dead")),
    ("sidekiq", "ns", ("ns:queue:*", "ns:queues", "ns:schedule", "ns:retry", "ns:dead")),
    # a glob character in a prefix is a literal for SCAN MATCH
    ("bullmq", "a*b", ("a\\*b:*",)),
])
def test_key_patterns(library: str, prefix: str, patterns: tuple) -> None:
    assert L.key_patterns(library, prefix) == patterns


def test_every_library_has_key_patterns() -> None:
    for library in L.LIBRARIES:
        assert L.key_patterns(library, L.DEFAULT_PREFIX[library])
    with pytest.raises(ValueError):
        L.key_patterns("resque", "resque")


@pytest.mark.parametrize("key", ["cache:user:1", "session:abc", "bullseye", "celery-results", "queuex", "deadline"])
def test_cache_keys_stay_flushable(key: str) -> None:
    assert not any(fnmatch.fnmatchcase(key, p) for p in DEFAULT_QUEUE_KEY_PATTERNS)


def test_redis_flush_documents_the_derived_default() -> None:
    # DOCUMENTATION holds the list as text (ansible-doc reads no Python): adding a library must update it too
    documented = yaml.safe_load(redis_flush.DOCUMENTATION)["options"]["queue_key_patterns"]["default"]
    assert documented == list(DEFAULT_QUEUE_KEY_PATTERNS)
    assert redis_flush.argument_spec()["queue_key_patterns"]["default"] == list(DEFAULT_QUEUE_KEY_PATTERNS)


@pytest.mark.parametrize(("library", "given", "prefix"), [
    ("bullmq", None, "bull"), ("rq", None, "rq"), ("celery", None, ""), ("sidekiq", None, ""),
    ("bullmq", "", ""),  # an empty prefix is a prefix, not "use the default"
    ("rq", "myrq", "myrq"),
])
def test_prefix_for(library: str, given, prefix: str) -> None:
    assert L.prefix_for(library, given) == prefix
