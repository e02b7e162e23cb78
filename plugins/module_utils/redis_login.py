# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection code shared by the runbook.ops Redis and queue modules (redis-py).

One argument spec (documented once, in the runbook.ops.redis doc fragment) and
one connect() that returns (client, err) instead of raising, so that a module
can report an unreachable Redis as a finding rather than a traceback; modules
that change things use connect_or_fail(), and error_message() when a command fails.
"""
from __future__ import annotations

import re
import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import redis
except ImportError:
    redis = None
    REDIS_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    REDIS_IMPORT_ERROR = None


class _RedisMissing(Exception):
    """Stands in for redis.RedisError without redis-py: nothing raises it, so except clauses stay valid."""


# What every redis-py error derives from; modules catch this one name.
RedisError: type[Exception] = redis.RedisError if redis is not None else _RedisMissing

# Our own connections carry this name (CLIENT SETNAME): an operator sees who we are in CLIENT LIST.
CLIENT_NAME = "runbook.ops"

# What a server that wants a password answers a client that gave none.
_NEEDS_AUTH = re.compile(r"NOAUTH|[Aa]uthentication required|HELLO must be called with the client already authenticated")


def redis_argument_spec(**options: dict[str, Any]) -> dict[str, Any]:
    """The login options every Redis module takes, followed by the module's own options."""
    spec: dict[str, Any] = {
        "login_host": {"type": "str", "default": "127.0.0.1", "aliases": ["host"]},
        "login_port": {"type": "int", "default": 6379, "aliases": ["port"]},
        "login_user": {"type": "str", "default": "", "aliases": ["user"]},
        "login_password": {"type": "str", "default": "", "no_log": True, "aliases": ["password"]},
        "login_db": {"type": "int", "default": 0, "aliases": ["db"]},
        "login_unix_socket": {"type": "str", "default": ""},
        "tls": {"type": "bool", "default": False},
        "ca_cert": {"type": "path", "aliases": ["tls_ca_cert"]},
        "validate_certs": {"type": "bool", "default": True},
        "connect_timeout": {"type": "float", "default": 5.0},
    }
    spec.update(options)
    return spec


def ensure_redis(module: AnsibleModule) -> None:
    if redis is None:
        module.fail_json(msg=missing_required_lib("redis (redis-py)"), exception=REDIS_IMPORT_ERROR)


def client_params(params: dict[str, Any], db: int | None = None) -> dict[str, Any]:
    """redis.Redis keywords from module params; the password stays out of any string we build."""
    kw: dict[str, Any] = {
        "db": params["login_db"] if db is None else db,
        "socket_connect_timeout": params["connect_timeout"],
        "socket_timeout": params["connect_timeout"],
        "client_name": CLIENT_NAME,
        "decode_responses": True,
    }
    if params["login_unix_socket"]:
        kw["unix_socket_path"] = params["login_unix_socket"]
    else:
        kw["host"], kw["port"] = params["login_host"], params["login_port"]
        if params["tls"]:
            kw["ssl"] = True
            kw["ssl_cert_reqs"] = "required" if params["validate_certs"] else "none"
            if params.get("ca_cert"):
                kw["ssl_ca_certs"] = params["ca_cert"]
    if params["login_user"]:
        kw["username"] = params["login_user"]
    if params["login_password"]:
        kw["password"] = params["login_password"]
    return kw


def redact(text: str, params: dict[str, Any]) -> str:
    """Remove the password from a message, whatever the server or redis-py put in it."""
    secret = params.get("login_password")
    return text.replace(secret, "********") if secret else text


def where(params: dict[str, Any], db: int | None = None) -> str:
    """Where we connect (to db, if given, instead of login_db), for messages: host:port/db (never the password)."""
    place = params["login_unix_socket"] or f"{params['login_host']}:{params['login_port']}"
    return f"{place}/{params['login_db'] if db is None else db}"


def first_line(err: Exception) -> str:
    """The first line of an error's message (redis-py's can run to several), or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def error_message(err: Exception, params: dict[str, Any], db: int | None = None) -> str:
    """What a module fails with when a command fails: where, and the error's first line, without the password."""
    return redact(f"Redis at {where(params, db)}: {first_line(err)}", params)


def connect(module: AnsibleModule, *, db: int | None = None) -> tuple[Any, str | None]:
    """Return (client, None) after a successful PING, or (None, error message without secrets)."""
    ensure_redis(module)
    client = redis.Redis(**client_params(module.params, db))
    try:
        client.ping()
    except RedisError as err:
        client.close()
        first = first_line(err)
        if not module.params["login_password"] and _NEEDS_AUTH.search(first):
            # redis-py's first command (HELLO or CLIENT SETNAME) is refused with a message about that command
            first = "the server requires a password and none was given (login_password, runbook_redis_password)"
        return None, redact(f"cannot connect to Redis at {where(module.params, db)}: {first}", module.params)
    return client, None


def connect_or_fail(module: AnsibleModule, *, db: int | None = None, **result: Any) -> Any:
    """connect(), failing the task (with result) when Redis cannot be reached: for modules that change things."""
    client, err = connect(module, db=db)
    if client is None:
        module.fail_json(msg=err, **result)
    return client
