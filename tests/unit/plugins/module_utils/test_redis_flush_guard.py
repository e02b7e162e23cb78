# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The queue-key patterns of runbook.ops.redis_flush against the key layouts the libraries document."""
from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.redis_flush_guard import (
    DEFAULT_QUEUE_KEY_PATTERNS,
    is_glob,
    matching_pattern,
    split_patterns,
)


@pytest.mark.parametrize("key, pattern", [
    # BullMQ (and Bull) with the default prefix "bull"
    ("bull:campaign-emails:wait", "bull:*"), ("bull:campaign-emails:active", "bull:*"),
    ("bull:campaign-emails:meta", "bull:*"), ("bull:campaign-emails:id", "bull:*"), ("bull:ai-insights:17", "bull:*"),
    # RQ
    ("rq:queues", "rq:*"), ("rq:queue:default", "rq:*"), ("rq:job:0b7f", "rq:*"), ("rq:wip:default", "rq:*"),
    # Celery, kombu's Redis transport
    ("celery", "celery"), ("_kombu.binding.celery", "_kombu.binding.*"), ("_kombu.binding.celery.pidbox", "_kombu.binding.*"),
    ("unacked", "unacked*"), ("unacked_index", "unacked*"), ("unacked_mutex", "unacked*"),
    # Sidekiq
    ("queue:default", "queue:*"), ("queues", "queues"), ("schedule", "schedule"), ("retry", "retry"), ("dead", "dead"),
])
def test_library_keys_are_queue_keys(key, pattern):
    assert matching_pattern(key, DEFAULT_QUEUE_KEY_PATTERNS) == pattern


@pytest.mark.parametrize("key", [
    "cache:user:1", "rate_limit:1.2.3.4", "session:abc", "bullseye", "bull", "rq", "celery-results", "celery:x",
    "my_queue:1", "queuex", "retry:later", "deadline", "Bull:x:wait",  # Redis MATCH is case-sensitive
])
def test_cache_keys_are_not_queue_keys(key):
    assert matching_pattern(key, DEFAULT_QUEUE_KEY_PATTERNS) is None


@pytest.mark.parametrize("pattern, glob", [("celery", False), ("bull:*", True), ("job?", True), ("q[12]", True),
                                           ("a\\*b", True), ("queues", False)])
def test_is_glob(pattern, glob):
    assert is_glob(pattern) is glob


def test_split_patterns_keeps_order_and_drops_duplicates_and_empties():
    assert split_patterns(["rq:*", "celery", "", "queues", "rq:*", "bull:*", "celery"]) == (
        ["celery", "queues"], ["rq:*", "bull:*"])
    assert split_patterns([]) == ([], [])
