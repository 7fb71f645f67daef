"""The blue-green preview's smoke check: a dropped connection is retried, an HTTP answer (even a 5xx) is final."""

from __future__ import annotations

import asyncio

from pilotage.agents.reliability import smoke_check


async def _serve(hits: list[str], drop_first: int) -> tuple[asyncio.AbstractServer, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        path = line.split()[1]
        hits.append(path)
        if path == "/flaky" and hits.count(path) <= drop_first:
            writer.close()  # no answer: the connection is dropped
            return
        status = b"503 Service Unavailable" if path == "/broken" else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_a_dropped_connection_is_retried_and_a_5xx_is_final() -> None:
    async def go() -> tuple[list[dict[str, object]], list[str]]:
        hits: list[str] = []
        server, url = await _serve(hits, drop_first=2)
        async with server:
            found = await smoke_check(url, ["/flaky", "/broken"], timeout_s=2.0, attempts=3)
        return found, hits

    found, hits = asyncio.run(go())
    assert found == [{"path": "/flaky", "status": 200}, {"path": "/broken", "status": 503}]
    assert hits == ["/flaky", "/flaky", "/flaky", "/broken"]  # two drops retried; the 503 asked once


def test_no_answer_after_every_attempt_is_status_0() -> None:
    async def go() -> list[dict[str, object]]:
        hits: list[str] = []
        server, url = await _serve(hits, drop_first=5)
        async with server:
            return await smoke_check(url, ["/flaky"], timeout_s=2.0, attempts=2)

    assert asyncio.run(go()) == [{"path": "/flaky", "status": 0}]
