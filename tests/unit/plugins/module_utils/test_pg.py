# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.runbook.ops.plugins.module_utils.pg import APPLICATION_NAME, conn_params, pg_argument_spec, redact


def _params(**over: object) -> dict:
    params = {name: spec.get("default") for name, spec in pg_argument_spec().items()}
    params.update(over)
    return params


def test_password_is_no_log_in_the_spec() -> None:
    assert pg_argument_spec()["login_password"]["no_log"] is True


@pytest.mark.parametrize(("over", "expected"), [
    ({}, {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres", "sslmode": "prefer"}),
    ({"login_unix_socket": "/run/postgresql"}, {"host": "/run/postgresql"}),
    ({"login_password": "s3cret"}, {"password": "s3cret"}),
    ({"ca_cert": "/etc/ca.crt"}, {"sslrootcert": "/etc/ca.crt"}),
])
def test_conn_params(over: dict, expected: dict) -> None:
    kw = conn_params(_params(**over))
    assert expected.items() <= kw.items()
    assert kw["application_name"] == APPLICATION_NAME
    if "login_password" not in over:
        assert "password" not in kw


def test_conn_params_database_override() -> None:
    assert conn_params(_params(), dbname="app")["dbname"] == "app"


def test_redact_removes_the_password_everywhere() -> None:
    assert redact("auth failed for s3cret (s3cret)", _params(login_password="s3cret")) == "auth failed for ******** (********)"
    assert redact("no secret here", _params()) == "no secret here"
