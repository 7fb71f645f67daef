"""The HTTP API's access rules (pilotage.web.security): loopback, token, same-origin writes, Host names."""

from __future__ import annotations

import pytest

from pilotage.errors import ConfigError
from pilotage.web.security import Guard, check_binding, is_loopback

HOST = {"host": "127.0.0.1:8700"}
TOKEN = "tok-0a1b2c3d4e5f"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("[::1]", True), ("::1", True),
     ("0.0.0.0", False), ("192.168.1.20", False), ("evil.example", False), ("", False)],
)  # fmt: skip
def test_loopback_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_another_interface_needs_a_token() -> None:
    with pytest.raises(ConfigError) as refused:
        check_binding("0.0.0.0", "")
    assert refused.value.one_line() == (
        "refusing to serve the HTTP API on 0.0.0.0 without an access token "
        "(fix: set PILOTAGE_API_TOKEN, or keep api_host = 127.0.0.1)"
    )
    check_binding("0.0.0.0", TOKEN)
    check_binding("localhost", None)


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, None),  # curl, the CLI: no browser header
     ({"origin": "http://127.0.0.1:8700", "sec-fetch-site": "same-origin"}, None),
     ({"sec-fetch-site": "none"}, None),  # typed by the user
     ({"origin": "http://evil.example"}, 403),
     ({"origin": "http://127.0.0.1:9999"}, 403),  # another local port is another origin
     ({"origin": "null"}, 403),
     ({"sec-fetch-site": "cross-site"}, 403),
     ({"sec-fetch-site": "same-site"}, 403),
     ({"origin": "http://127.0.0.1:8700", "sec-fetch-site": "cross-site"}, 403)],
)  # fmt: skip
def test_writes_on_loopback_without_a_token_must_be_same_origin(headers: dict[str, str], status: int | None) -> None:
    refusal = Guard("127.0.0.1").check("POST", "http", HOST | headers)
    assert (refusal.status if refusal else None) == status
    assert Guard("127.0.0.1").check("GET", "http", HOST | headers) is None  # reads are never refused for origin


def test_a_host_that_is_not_loopback_is_refused_on_a_loopback_binding() -> None:
    refusal = Guard("127.0.0.1").check("GET", "http", {"host": "rebound.evil.example:8700"})
    assert refusal is not None and refusal.status == 403 and "Host" in refusal.detail
    assert Guard("127.0.0.1").check("GET", "http", {"host": "localhost:8700"}) is None


def test_with_a_token_writes_need_it_and_on_another_interface_reads_too() -> None:
    local, exposed = Guard("127.0.0.1", TOKEN), Guard("0.0.0.0", TOKEN)
    bearer = {"authorization": f"Bearer {TOKEN}"}
    assert local.check("POST", "http", HOST).status == 401  # type: ignore[union-attr]
    assert local.check("POST", "http", HOST | {"authorization": "Bearer tok-wrong"}).status == 401  # type: ignore[union-attr]
    assert local.check("POST", "http", HOST | bearer) is None
    assert local.check("POST", "http", HOST | {"authorization": f"bearer {TOKEN}"}) is None  # scheme is case-blind
    assert local.check("GET", "http", HOST) is None
    remote = {"host": "10.0.0.5:8700"}
    assert exposed.check("GET", "http", remote).status == 401  # type: ignore[union-attr]
    assert exposed.check("GET", "http", remote | bearer) is None
    assert exposed.check("POST", "http", remote | bearer | {"origin": "http://elsewhere"}) is None  # token suffices
