# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The embedded sandbox: every service runbook.ops acts on, on 127.0.0.1, under .sandbox/."""
