# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The context a queue test on the sandbox Redis works in: a key prefix of its own, the sandbox, a client.

tests/queues/harness.py holds the clients and the real libraries' fixtures; this wraps one test around them and
deletes exactly that test's keys afterwards, whatever happened.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tests.queues.harness import client, delete_keys

if TYPE_CHECKING:
    from tests.conftest import Target


@contextmanager
def queue_context(sandbox: Target, prefix: str, keys: str, **extra: Any) -> Iterator[dict[str, Any]]:
    """{prefix, env, inventory, redis (a client on the queue tests' db), **extra}; then the keys matching `keys`
    (a pattern under prefix) are deleted."""
    conn = client(sandbox.env)
    try:
        yield {"prefix": prefix, "env": sandbox.env, "inventory": sandbox.inventory, "redis": conn, **extra}
    finally:
        delete_keys(conn, [keys])
        conn.close()
