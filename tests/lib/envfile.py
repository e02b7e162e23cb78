# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read the environment files the sandbox and fleet write (.sandbox/env, .fleet/env)."""
from __future__ import annotations

import shlex
from pathlib import Path


def read_env(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of an env file, as a dict (values unquoted as the shell would)."""
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _sep, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env
