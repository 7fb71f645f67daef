"""Who may call the HTTP API: the loopback default, the access token, and the same-origin rule for writes.

Rules (README "HTTP API"):

* **Binding.** The API listens on 127.0.0.1 by default (``api_host``). Any other interface needs an access token
  (``PILOTAGE_API_TOKEN``, the ``api_token`` setting): :func:`check_binding` refuses to start without one.
* **Token.** When a token is set, every write (any method but GET/HEAD/OPTIONS) needs ``Authorization: Bearer
  <token>``; bound to another interface than loopback, every read needs it too. Compared in constant time.
* **Same origin.** Bound to loopback without a token, a write must come from the API's own origin: a request whose
  ``Sec-Fetch-Site`` is neither ``same-origin`` nor ``none`` (the user typed it), or whose ``Origin`` is not the
  ``Host`` it was sent to, is refused — a web page on another site cannot make the operator's browser approve a
  deploy. Tools that send neither header (curl, the CLI) are not browsers and pass.
* **Dashboard session.** When a token is set, a browser may carry the session cookie of the dashboard's login
  form instead of the bearer header: :data:`COOKIE`, HttpOnly and ``SameSite=Strict``, holding the name typed
  in the form, the time it was issued and an HMAC-SHA256 of both keyed by the token (:func:`issue`). It never
  contains the token, expires after :data:`SESSION_S`, and is worthless once the token changes; the name is who
  the approvals made from that browser name. A write carried by the cookie must name the page's own origin
  (``Origin``, else ``Referer``, equal to ``scheme://Host``): a cookie is sent by the browser whoever made the
  page that posts. The login form and the static files (``/login``, ``/static/``) are open.
* **Host.** Bound to loopback, the ``Host`` header must name a loopback address (``127.0.0.1``, ``localhost``,
  ``[::1]``): a DNS-rebinding page (``evil.example`` resolving to 127.0.0.1) is refused before it reads anything.

Refusals are problem documents (401 without a valid token, 403 otherwise), never the reason in more detail than
the rule that applies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from pilotage.errors import ConfigError

__all__ = [
    "COOKIE",
    "READ_METHODS",
    "SESSION_S",
    "Guard",
    "Refusal",
    "check_binding",
    "is_loopback",
    "issue",
    "read_cookie",
    "session_name",
]

#: Methods that change nothing.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback(host: str) -> bool:
    """Return True when ``host`` (an address or ``localhost``, brackets allowed) is a loopback address."""
    name = host.strip().strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to serve the API on a non-loopback ``host`` without an access token.

    Raises:
        ConfigError: ``host`` is not a loopback address and ``token`` is empty.
    """
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"refusing to serve the HTTP API on {host} without an access token",
            hint="set PILOTAGE_API_TOKEN, or keep api_host = 127.0.0.1",
            key="api_host",
        )


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


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: HTTP ``status`` (401 or 403), a ``title`` and a one-line ``detail``."""

    status: int
    title: str
    detail: str
    hint: str


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


@dataclass(frozen=True)
class Guard:
    """The rules for one API server.

    Args:
        host: the interface the API is bound to.
        token: the access token (None or "" = no token).
    """

    host: str
    token: str | None = None

    def _bearer_ok(self, headers: Mapping[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return (
            bool(self.token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(value.strip().encode(), str(self.token).encode())
        )

    def session_of(self, headers: Mapping[str, str]) -> str | None:
        """The name of the dashboard session carrying a request (lower-case ``headers``), or None.

        None as well when the request carries the valid bearer header: then it is a client's, not a browser's.
        """
        if not self.token or self._bearer_ok(headers):
            return None
        return session_name(self.token, read_cookie(headers))

    def _token_rule(self, write: bool, scheme: str, headers: Mapping[str, str], path: str) -> Refusal | None:
        """The rule when the token is needed: the bearer header, or the session cookie (or an open page)."""
        if self._bearer_ok(headers):
            return None
        session = self.session_of(headers) is not None
        if not session and path != "/login" and not path.startswith("/static/"):
            return Refusal(401, "Unauthorized", "this request needs the API access token",
                           "send Authorization: Bearer $PILOTAGE_API_TOKEN")  # fmt: skip
        if write and not self._page_origin(scheme, headers):
            return Refusal(403, "Forbidden", "a write from the dashboard must come from its own page",
                           "post from the dashboard's page, or use Authorization: Bearer")  # fmt: skip
        return None

    def check(self, method: str, scheme: str, headers: Mapping[str, str], path: str = "") -> Refusal | None:
        """Return why a request (``method``, URL ``scheme``, lower-case ``headers``, URL ``path``) is refused."""
        loopback = is_loopback(self.host)
        if loopback and not is_loopback(_host_name(headers.get("host", ""))):
            return Refusal(403, "Forbidden", "the Host header does not name a loopback address",
                           "open the API at http://127.0.0.1:<port>")  # fmt: skip
        write = method.upper() not in READ_METHODS
        if self.token and (write or not loopback):
            return self._token_rule(write, scheme, headers, path)
        if write and not self._same_origin(scheme, headers):
            return Refusal(403, "Forbidden", "a cross-site write is refused",
                           "send writes from the API's own origin, or set PILOTAGE_API_TOKEN and use it")  # fmt: skip
        return None

    @staticmethod
    def _page_origin(scheme: str, headers: Mapping[str, str]) -> bool:
        """Strict: ``Origin`` (else ``Referer``) is present and names ``scheme://Host``; no cross-site fetch."""
        own = f"{scheme}://{headers.get('host', '')}"
        if headers.get("sec-fetch-site") not in (None, "same-origin"):
            return False
        origin = headers.get("origin")
        if origin is not None:
            return origin == own
        referer = headers.get("referer", "")
        return referer == own or referer.startswith(own + "/")

    @staticmethod
    def _same_origin(scheme: str, headers: Mapping[str, str]) -> bool:
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = headers.get("origin")
        if origin is None:
            return True
        return origin == f"{scheme}://{headers.get('host', '')}"
