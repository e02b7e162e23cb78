# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The login options of every runbook.ops Redis and queue module, documented once."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host of the Redis server, as seen from the host the module runs on.
      - Set it for every Redis module at once with O(ignore:module_defaults) and the action group
        C(group/runbook.ops.redis), from the inventory variable C(runbook_redis_host).
    type: str
    default: 127.0.0.1
    aliases: [host]
  login_port:
    description: Port of the Redis server.
    type: int
    default: 6379
    aliases: [port]
  login_user:
    description: The ACL user to log in as (Redis 6 and later). Empty means the C(default) user.
    type: str
    default: ''
    aliases: [user]
  login_password:
    description:
      - The password (C(requirepass) or the ACL user's). Never logged, never in a message or a command line.
      - Empty means no password.
    type: str
    default: ''
    aliases: [password]
  login_db:
    description: The database number to select.
    type: int
    default: 0
    aliases: [db]
  login_unix_socket:
    description: A Unix socket path to connect through instead of O(login_host).
    type: str
    default: ''
  tls:
    description: Connect with TLS.
    type: bool
    default: false
  ca_cert:
    description: A CA certificate file to verify the server with, when O(tls=true).
    type: path
    aliases: [tls_ca_cert]
  validate_certs:
    description: Verify the server's certificate when O(tls=true).
    type: bool
    default: true
  connect_timeout:
    description: Seconds to wait for the connection and for each reply before reporting the server unreachable.
    type: float
    default: 5.0
requirements:
  - redis-py >= 4 on the host the module runs on (Debian C(python3-redis); C(preflight_fix=true) installs it)
notes:
  - Every connection is named C(runbook.ops) (C(CLIENT SETNAME)), so an operator sees it in C(CLIENT LIST).
"""
