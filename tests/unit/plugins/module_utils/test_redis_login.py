# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The connection helpers every Redis and queue module shares: option specs and messages.

connect() and connect_or_fail() against an unreachable or refusing server: tests/integration (test_flush_cache,
test_queue_bullmq, test_redis_health).
"""
from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.queue_layouts import LIBRARIES
from ansible_collections.runbook.ops.plugins.module_utils.queue_options import queue_argument_spec
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import (
    error_message,
    first_line,
    redis_argument_spec,
    where,
)

SECRET = "s3cr3t-pw"
LOGIN = ("login_host", "login_port", "login_user", "login_password", "login_db", "login_unix_socket", "tls", "ca_cert",
         "validate_certs", "connect_timeout")


def params(**given: Any) -> dict[str, Any]:
    values = {name: option.get("default") for name, option in redis_argument_spec().items()}
    values.update(given)
    return values


def test_redis_argument_spec_adds_the_module_options_after_the_login() -> None:
    spec = redis_argument_spec(force={"type": "bool", "default": False})
    assert tuple(spec) == (*LOGIN, "force")
    assert spec["login_password"]["no_log"] is True
    assert redis_argument_spec() == {name: spec[name] for name in LOGIN}


def test_queue_argument_spec() -> None:
    spec = queue_argument_spec(queues={"type": "list", "elements": "str", "default": ["*"]})
    assert tuple(spec) == (*LOGIN, "library", "prefix", "queues")
    assert spec["library"] == {"type": "str", "required": True, "choices": list(LIBRARIES)}
    assert spec["prefix"] == {"type": "str"}  # no default: None means the library's own


@pytest.mark.parametrize(("error", "line"), [
    (ValueError("WRONGTYPE Operation against a key\nholding the wrong kind of value"), "WRONGTYPE Operation against a key"),
    (ValueError("  Connection refused  "), "Connection refused"),
    (TimeoutError(""), "TimeoutError"),
])
def test_first_line(error: Exception, line: str) -> None:
    assert first_line(error) == line


def test_where() -> None:
    assert where(params(login_db=2)) == "127.0.0.1:6379/2"
    assert where(params(login_db=2), 5) == "127.0.0.1:6379/5"
    assert where(params(login_unix_socket="/run/redis.sock"), 0) == "/run/redis.sock/0"


def test_error_message_names_the_place_and_hides_the_password() -> None:
    message = error_message(ValueError(f"invalid password {SECRET}\nmore"), params(login_password=SECRET), 3)
    assert message == "Redis at 127.0.0.1:6379/3: invalid password ********"
    assert SECRET not in message
