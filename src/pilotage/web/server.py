"""The HTTP API served by ``pilotage serve``: an embedded uvicorn on the control plane's own event loop.

:func:`bind_api` checks the security rule of the binding (:func:`pilotage.web.security.check_binding`) and binds
the listening socket before anything starts, so a taken port or a missing token is a one-line error and not a
half-started control plane; :class:`ApiServer` then serves :func:`pilotage.web.app.create_app` on it until
:meth:`ApiServer.stop`.
"""

from __future__ import annotations

import socket
from typing import Any

from pilotage.errors import ConfigError
from pilotage.settings import Settings
from pilotage.web.security import check_binding

__all__ = ["ApiServer", "bind_api"]


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family)


def bind_api(settings: Settings, port: int | None = None) -> socket.socket:
    """Return a listening socket on ``settings.api_host`` and ``port`` (default ``settings.api_port``).

    When neither ``port`` nor the ``api_port`` setting was given and the default port (8700) is taken — another
    control plane of another folder serves there — a free port is used instead (the ready line names it).

    Raises:
        ConfigError: a non-loopback host without ``PILOTAGE_API_TOKEN``, or the address cannot be bound (names it).
    """
    chosen = port is not None or "api_port" in settings.model_fields_set
    host, port = settings.api_host, settings.api_port if port is None else port
    check_binding(host, settings.api_token)
    try:
        try:
            return _listen(host, port)
        except OSError:
            if chosen:
                raise
            return _listen(host, 0)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve the HTTP API on {host}:{port}: {exc.strerror or exc}",
            hint="pass --api-port with a free port (0 = any), or --no-api",
            key="api_port",
        ) from exc


class ApiServer:
    """The API application served on a bound socket.

    Args:
        settings: the control plane's settings.
        bus: the open event log; graph: the open graph (both the control plane's own).
        sock: from :func:`bind_api`.
    """

    def __init__(self, settings: Settings, bus: Any, graph: Any, sock: socket.socket) -> None:
        from pilotage.runtime.proxy import EmbeddedServer
        from pilotage.web.app import create_app

        self.sock = sock
        self.server = EmbeddedServer(create_app(settings, bus, graph, host=settings.api_host), "HTTP API")

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` the API answers on (``/api/v1/...``)."""
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> str:
        """Serve; return :attr:`url` once uvicorn has started (BackendError if it did not)."""
        await self.server.launch(self.sock)
        return self.url

    async def stop(self) -> None:
        """Stop serving (idempotent) and close the socket."""
        await self.server.halt()
        self.sock.close()
