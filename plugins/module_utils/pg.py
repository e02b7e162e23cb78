# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection code shared by the runbook.ops pg_* modules (psycopg 3).

One argument spec (documented once, in the runbook.ops.pg doc fragment) and
one connect() that returns (conn, err) instead of raising, so that a module
can report an unreachable server as a finding rather than a traceback.
"""
from __future__ import annotations

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import psycopg
    # re-exported: the modules take sql from here
    from psycopg import sql  # pylint: disable=unused-import
    from psycopg.rows import dict_row
except ImportError:
    psycopg = None
    sql = None  # modules import it from here; connect() reports the missing library first
    dict_row = None
    PSYCOPG_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    PSYCOPG_IMPORT_ERROR = None


class _PsycopgMissing(Exception):
    """Stands in for psycopg.Error without psycopg: nothing raises it, so except clauses stay valid."""


# What every psycopg error derives from; modules catch this one name.
PsycopgError: type[Exception] = psycopg.Error if psycopg is not None else _PsycopgMissing

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# Our own sessions carry this name: pg_sessions never ends them, and a DBA sees who we are.
APPLICATION_NAME = "runbook.ops"


def pg_argument_spec() -> dict[str, Any]:
    """The login options every pg_* module takes."""
    return {
        "login_host": {"type": "str", "default": "127.0.0.1", "aliases": ["host"]},
        "login_port": {"type": "int", "default": 5432, "aliases": ["port"]},
        "login_user": {"type": "str", "default": "postgres", "aliases": ["user"]},
        "login_password": {"type": "str", "default": "", "no_log": True, "aliases": ["password"]},
        "login_db": {"type": "str", "default": "postgres", "aliases": ["db", "database"]},
        "login_unix_socket": {"type": "str", "default": ""},
        "ssl_mode": {"type": "str", "default": "prefer", "choices": SSL_MODES},
        "ca_cert": {"type": "path", "aliases": ["ssl_rootcert"]},
        "connect_timeout": {"type": "int", "default": 5},
    }


def ensure_psycopg(module: AnsibleModule) -> None:
    if psycopg is None:
        module.fail_json(msg=missing_required_lib("psycopg (version 3)"), exception=PSYCOPG_IMPORT_ERROR)


def conn_params(params: dict[str, Any], dbname: str | None = None) -> dict[str, Any]:
    """libpq keywords from module params; the password stays out of any string we build."""
    kw: dict[str, Any] = {
        "host": params["login_unix_socket"] or params["login_host"],
        "port": params["login_port"],
        "user": params["login_user"],
        "dbname": dbname or params["login_db"],
        "sslmode": params["ssl_mode"],
        "connect_timeout": params["connect_timeout"],
        "application_name": APPLICATION_NAME,
    }
    if params["login_password"]:
        kw["password"] = params["login_password"]
    if params.get("ca_cert"):
        kw["sslrootcert"] = params["ca_cert"]
    return kw


def redact(text: str, params: dict[str, Any]) -> str:
    """Remove the password from a message, whatever the server or libpq put in it."""
    secret = params.get("login_password")
    return text.replace(secret, "********") if secret else text


def connect(module: AnsibleModule, *, dbname: str | None = None, autocommit: bool = True) -> tuple[Any, str | None]:
    """Return (connection, None) or (None, error message without secrets)."""
    ensure_psycopg(module)
    try:
        conn = psycopg.connect(**conn_params(module.params, dbname), autocommit=autocommit, row_factory=dict_row)
    except psycopg.Error as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return None, redact(f"cannot connect to PostgreSQL at {_where(module.params)}: {first}", module.params)
    return conn, None


def _where(params: dict[str, Any]) -> str:
    host = params["login_unix_socket"] or params["login_host"]
    return f"{host}:{params['login_port']} as {params['login_user']}"
