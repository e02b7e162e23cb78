# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One stderr log format for every entry point (journald/podman pick it up)."""
from __future__ import annotations

import logging
import sys


def setup(component: str) -> logging.Logger:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s demo_app.{component}[%(process)d] %(levelname)s %(message)s",
    )
    return logging.getLogger(f"demo_app.{component}")
