"""The dashboard's session cookie: a browser that typed the access token once, and who it says it is.

When ``PILOTAGE_API_TOKEN`` is set, the dashboard's login form (``/login``) takes the token and a name; on a
match it sets :data:`COOKIE`, an HttpOnly, ``SameSite=Strict`` cookie holding the name, the time it was issued
and an HMAC-SHA256 of both keyed by the token. The cookie never contains the token, expires after
:data:`SESSION_S`, and is worthless once the token changes. :class:`~pilotage.web.security.Guard` accepts it in
place of the bearer header; a write carried by the cookie must also come from the page's own origin (``Origin``
or, failing that, ``Referer`` naming the ``Host``), so another site cannot make the browser post with it.

The name is who the approvals made from that browser name (``by`` of the signed answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie

__all__ = ["COOKIE", "SESSION_S", "issue", "read_cookie", "session_name"]

#: The cookie's name.
COOKIE = "pilotage_session"
#: Seconds a session lasts (12 h).
SESSION_S = 12 * 3600
_CONTEXT = b"pilotage dashboard session v1\0"


def _mac(token: str, payload: str) -> str:
    return hmac.new(token.encode(), _CONTEXT + payload.encode(), hashlib.sha256).hexdigest()


def issue(token: str, name: str, now: float | None = None) -> str:
    """Return the cookie value naming ``name`` (any text; kept base64url-encoded) for a browser that sent ``token``."""
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    payload = f"{encoded}.{int(time.time() if now is None else now)}"
    return f"{payload}.{_mac(token, payload)}"


def session_name(token: str | None, value: str | None, now: float | None = None) -> str | None:
    """Return the name a valid, unexpired cookie ``value`` carries under ``token``; None for anything else."""
    if not token or not value or value.count(".") != 2:
        return None
    encoded, issued, mac = value.split(".")
    if not hmac.compare_digest(mac, _mac(token, f"{encoded}.{issued}")) or not issued.isdigit():
        return None
    if (time.time() if now is None else now) - int(issued) > SESSION_S:
        return None
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def read_cookie(headers: Mapping[str, str]) -> str | None:
    """Return the value of :data:`COOKIE` in the lower-case ``headers``' ``cookie`` header, or None."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None
