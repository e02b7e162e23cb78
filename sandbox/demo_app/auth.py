# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bearer-token check for the admin endpoint."""
from __future__ import annotations

import hmac


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def is_authorized(header: str | None, expected: str) -> bool:
    # An unset token must never match, not even an empty Bearer value.
    if not expected:
        return False
    given = bearer_token(header)
    if given is None:
        return False
    # Compare bytes in constant time; compare_digest rejects non-ASCII str.
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
