# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Redis and queue modules build their options from shared specs: each spec is still what the module documents."""
from __future__ import annotations

import importlib

import pytest
import yaml

from ansible_collections.runbook.ops.plugins.doc_fragments.redis import ModuleDocFragment

MODULES = ("queue_depth", "queue_jobs", "redis_bgsave", "redis_flush", "redis_health")


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_the_argument_spec(name: str) -> None:
    module = importlib.import_module(f"ansible_collections.runbook.ops.plugins.modules.{name}")
    documented = {**yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"],
                  **yaml.safe_load(module.DOCUMENTATION)["options"]}
    spec = module.argument_spec()
    assert set(documented) == set(spec)
    for option, entry in spec.items():
        doc = documented[option]
        for key in ("type", "default", "choices", "elements", "aliases"):
            assert doc.get(key) == entry.get(key), f"{name} {option}.{key}: documented {doc.get(key)!r}, spec {entry.get(key)!r}"
        assert bool(doc.get("required")) == bool(entry.get("required")), f"{name} {option}"
