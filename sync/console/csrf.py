"""Cross-site request forgery: every state-changing request proves it came from our own page.

Two checks, both required on every POST:
- the form's `csrf_token` field (or the `X-CSRF-Token` header) equals the token of the session
  the cookie names. A page of another site can make the browser send the cookie, but it cannot
  read our page, so it cannot know the token;
- the browser's own account of where the request started agrees: `Sec-Fetch-Site` is not
  `cross-site`, and an `Origin` header, when sent, is this console's.

The sign-in form has no session yet: its token is a random value set in a short-lived cookie of
its own and repeated in the form (the double-submit pattern), so another site cannot sign a
browser in under the attacker's account either.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

FIELD = "csrf_token"
HEADER = "x-csrf-token"


def new_token() -> str:
    """A fresh random token."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; a missing value never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(headers: Mapping[str, str], origin: str) -> bool:
    """Whether the browser says the request started on `origin` (scheme://host[:port]).

    Browsers send `Sec-Fetch-Site` and `Origin` on POSTs; when a client sends neither (an old
    browser, a script), the token alone decides.
    """
    site = (headers.get("sec-fetch-site") or "").lower()
    if site == "cross-site":
        return False
    sent = headers.get("origin")
    if sent is None or sent == "null":
        # "null" comes from privacy-preserving contexts; a forged form in a sandboxed frame
        # sends it too, so it is not ours.
        return sent is None
    return _normal(sent) == _normal(origin)


def _normal(origin: str) -> str:
    parts = urlsplit(origin)
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    shown = f":{port}" if port and port != default else ""
    return f"{parts.scheme}://{host}{shown}"
