# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The options every queue module (runbook.ops.queue_depth, queue_jobs) takes: the Redis login, the library, its prefix.

Each module documents library and prefix itself (their wording differs: one reads, one changes);
the prefix in use is queue_layouts.prefix_for(library, prefix).
"""
from __future__ import annotations

from typing import Any

from ansible_collections.runbook.ops.plugins.module_utils.queue_layouts import LIBRARIES
from ansible_collections.runbook.ops.plugins.module_utils.redis_login import redis_argument_spec


def queue_argument_spec(**options: dict[str, Any]) -> dict[str, Any]:
    """The login options, library and prefix, followed by the module's own options."""
    return redis_argument_spec(library={"type": "str", "required": True, "choices": list(LIBRARIES)},
                               prefix={"type": "str"}, **options)
