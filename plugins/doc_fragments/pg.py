# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The login options of every runbook.ops pg_* module, documented once."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host of the PostgreSQL server, as seen from the host the module runs on.
      - Set it for every pg_* module at once with O(ignore:module_defaults) and the action group
        C(group/runbook.ops.pg), from the inventory variable C(runbook_pg_host).
    type: str
    default: 127.0.0.1
    aliases: [host]
  login_port:
    description: Port of the PostgreSQL server.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - The role to log in as. The runbooks need an administrative login (superuser, or the rights each module
        names in its notes).
    type: str
    default: postgres
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user). Never logged, never in a message or a command line; libpq receives it
        directly.
      - Empty means no password (peer, trust or a C(.pgpass) file).
    type: str
    default: ''
    aliases: [password]
  login_db:
    description: The database to connect to.
    type: str
    default: postgres
    aliases: [db, database]
  login_unix_socket:
    description: A Unix socket directory to connect through instead of O(login_host).
    type: str
    default: ''
  ssl_mode:
    description: libpq's C(sslmode).
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description: A CA certificate file to verify the server with (libpq's C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description: Seconds to wait for a connection before reporting the server unreachable.
    type: int
    default: 5
requirements:
  - psycopg >= 3.1 on the host the module runs on (Debian C(python3-psycopg); C(preflight_fix=true) installs it)
notes:
  - Every connection carries C(application_name=runbook.ops), so a DBA sees it in C(pg_stat_activity) and
    M(runbook.ops.pg_sessions) never ends it.
"""
