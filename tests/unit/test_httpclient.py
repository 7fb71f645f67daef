"""The shared TLS context of :mod:`pilotage.httpclient`: built once, verification kept, clients cheap and working."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from pilotage.httpclient import async_client, shared_ssl_context
from pilotage.runtime.proxy import EmbeddedServer, bind_local


def _pool_context(client: object) -> ssl.SSLContext:
    return client._transport._pool._ssl_context  # type: ignore[attr-defined] # httpcore's pool keeps the context


def test_every_client_shares_one_context_that_still_verifies_certificates() -> None:
    first, second = async_client(timeout=1.0), async_client(base_url="http://127.0.0.1:9")
    context = shared_ssl_context()
    assert _pool_context(first) is context
    assert _pool_context(second) is context
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded (once)


def test_a_client_costs_far_less_than_loading_the_ca_bundle() -> None:
    shared_ssl_context()  # the one load
    began = time.perf_counter()
    for _ in range(20):
        async_client(timeout=1.0)
    per_client_s = (time.perf_counter() - began) / 20
    assert per_client_s < 0.02  # measured 0.001 s under load; a CA bundle load took 0.112 s there


def test_verify_is_refused() -> None:
    with pytest.raises(TypeError, match="verify"):
        async_client(verify=False)


async def _hello(scope: dict[str, object], receive: object, send: object) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hello"})  # type: ignore[operator]


def test_a_client_talks_plain_http() -> None:
    async def main() -> tuple[int, str]:
        sock = bind_local(0)
        server = EmbeddedServer(_hello, "hello")
        await server.launch(sock, 10.0)
        try:
            async with async_client(timeout=5.0) as client:
                response = await client.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
                return response.status_code, response.text
        finally:
            await server.halt()

    assert asyncio.run(main()) == (200, "hello")
