# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What runbook.ops.pg_query_stats says when pg_stat_statements is missing (no database)."""
from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.modules.pg_query_stats import enable_steps, missing_message


def ext(**kw):
    base = {"preloaded": True, "version": "1.10", "schema": "public", "available": True,
            "shared_preload_libraries": "pg_stat_statements", "database": "app"}
    return {**base, **kw}


@pytest.mark.parametrize("kw, steps", [
    ({}, []),
    ({"version": None}, ["CREATE EXTENSION IF NOT EXISTS pg_stat_statements; (in database app, as a superuser)"]),
    ({"preloaded": False, "shared_preload_libraries": ""}, [
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements' "
        "(or add pg_stat_statements to shared_preload_libraries in postgresql.conf)",
        "restart PostgreSQL (shared_preload_libraries is read at start only)"]),
])
def test_enable_steps(kw, steps):
    assert enable_steps(ext(**kw)) == steps


def test_enable_steps_keep_the_libraries_already_preloaded():
    steps = enable_steps(ext(preloaded=False, shared_preload_libraries="auto_explain, pg_cron", version=None))
    assert steps[0].startswith("ALTER SYSTEM SET shared_preload_libraries = 'auto_explain, pg_cron, pg_stat_statements'")
    assert len(steps) == 3 and steps[2].startswith("CREATE EXTENSION")


def test_enable_steps_without_contrib():
    assert enable_steps(ext(available=False, version=None))[0].startswith("install the PostgreSQL contrib modules")


@pytest.mark.parametrize("kw, text", [
    ({"preloaded": False}, "pg_stat_statements is not enabled: pg_stat_statements is not in shared_preload_libraries"),
    ({"version": None}, "pg_stat_statements is not enabled: the extension pg_stat_statements is not created in "
                        "database app"),
    ({"preloaded": False, "version": None}, "pg_stat_statements is not enabled: pg_stat_statements is not in "
     "shared_preload_libraries and the extension pg_stat_statements is not created in database app"),
])
def test_missing_message(kw, text):
    assert missing_message(ext(**kw)) == text
