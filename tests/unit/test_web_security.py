"""The HTTP API's access rules (pilotage.web.security): loopback, token, same-origin writes, Host names."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotage.errors import ConfigError
from pilotage.web.security import COOKIE, SESSION_S, Guard, check_binding, is_loopback, issue, session_name

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


def test_a_session_cookie_names_its_holder_and_cannot_be_forged_or_kept() -> None:
    value = issue(TOKEN, "Ada Ø", now=1000.0)
    assert TOKEN not in value and session_name(TOKEN, value, now=1000.0 + SESSION_S) == "Ada Ø"
    assert session_name(TOKEN, value, now=1001.0 + SESSION_S) is None  # expired
    assert session_name("tok-another-one", value, now=1000.0) is None  # the token changed
    encoded, issued, mac = value.split(".")
    forged = issue(TOKEN, "Mallory", now=1000.0).split(".")[0]
    assert session_name(TOKEN, f"{forged}.{issued}.{mac}", now=1000.0) is None
    assert session_name(TOKEN, "garbage", now=1000.0) is None and session_name(None, value) is None


@pytest.mark.parametrize(
    ("method", "extra", "status"),
    [("GET", {}, None),
     ("POST", {"origin": "http://127.0.0.1:8700", "sec-fetch-site": "same-origin"}, None),
     ("POST", {"referer": "http://127.0.0.1:8700/approvals"}, None),
     ("POST", {}, 403),  # a cookie without the page's origin: refused
     ("POST", {"origin": "http://evil.example"}, 403),
     ("POST", {"referer": "http://127.0.0.1:8700.evil.example/"}, 403),
     ("POST", {"origin": "http://127.0.0.1:8700", "sec-fetch-site": "same-site"}, 403)],
)  # fmt: skip
def test_a_session_cookie_stands_for_the_token_on_writes_from_the_page(
    method: str, extra: dict[str, str], status: int | None
) -> None:
    cookie = {"cookie": f"other=1; {COOKIE}={issue(TOKEN, 'ada')}"}
    for guard, host in ((Guard("127.0.0.1", TOKEN), HOST), (Guard("0.0.0.0", TOKEN), HOST)):
        refusal = guard.check(method, "http", host | cookie | extra, "/api/v1/approvals/apr-1/approve")
        assert (refusal.status if refusal else None) == status
    stale = {"cookie": f"{COOKIE}={issue('tok-old-token', 'ada')}"}
    refused = Guard("127.0.0.1", TOKEN).check("POST", "http", HOST | stale | extra, "/api/v1/approvals/x/approve")
    assert refused is not None and refused.status == 401


def test_the_login_form_and_static_files_are_open_everything_else_needs_the_token() -> None:
    exposed, remote = Guard("0.0.0.0", TOKEN), {"host": "10.0.0.5:8700"}
    assert exposed.check("GET", "http", remote, "/login") is None
    assert exposed.check("GET", "http", remote, "/static/dashboard.js") is None
    assert exposed.check("POST", "http", remote | {"origin": "http://10.0.0.5:8700"}, "/login") is None
    assert exposed.check("POST", "http", remote | {"origin": "http://evil.example"}, "/login").status == 403  # type: ignore[union-attr]
    assert exposed.check("GET", "http", remote, "/approvals").status == 401  # type: ignore[union-attr]
    assert exposed.check("GET", "http", remote, "/loginx").status == 401  # type: ignore[union-attr]


def test_a_page_without_a_session_goes_to_the_login_form_an_api_read_gets_a_401(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from pilotage.settings import Settings
    from pilotage.web.app import create_app

    app = create_app(Settings(home=tmp_path, api_token=TOKEN), None, None, host="0.0.0.0")  # type: ignore[arg-type]

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8700") as client:
            paths = ("/rollouts/dep-1", "/api/v1/services", "/login?next=//evil.example/x")
            return [await client.get(path) for path in paths]

    page, api, form = asyncio.run(go())
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/rollouts/dep-1"
    assert api.status_code == 401
    # no open redirect after the login; the form does not echo the token
    assert form.status_code == 200 and 'name="next" value="/"' in form.text and TOKEN not in form.text
