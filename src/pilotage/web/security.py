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
  form (:mod:`pilotage.web.session`) instead of the bearer header. A write carried by the cookie must name the
  page's own origin (``Origin``, else ``Referer``, equal to ``scheme://Host``): a cookie is sent by the browser
  whoever made the page that posts. The login form and the static files (``/login``, ``/static/``) are open.
* **Host.** Bound to loopback, the ``Host`` header must name a loopback address (``127.0.0.1``, ``localhost``,
  ``[::1]``): a DNS-rebinding page (``evil.example`` resolving to 127.0.0.1) is refused before it reads anything.

Refusals are problem documents (401 without a valid token, 403 otherwise), never the reason in more detail than
the rule that applies.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pilotage.errors import ConfigError
from pilotage.web.session import read_cookie, session_name

__all__ = ["READ_METHODS", "Guard", "Refusal", "check_binding", "is_loopback"]

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

    def _token_rule(self, write: bool, scheme: str, headers: Mapping[str, str], path: str) -> Refusal | None:
        """The rule when the token is needed: the bearer header, or the session cookie (or an open page)."""
        if self._bearer_ok(headers):
            return None
        session = session_name(self.token, read_cookie(headers)) is not None
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
