"""The console's session: with ``X-Refresh-Cookie: 1`` the refresh token lives in an
HttpOnly, SameSite=Strict cookie scoped to ``/auth``; refreshing by cookie needs the
console's own Origin (CSRF); rotation, reuse detection and logout work as with the
body form; API clients without the header see no change."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.helpers.services import ADMIN_PASSWORD, Services, bearer

COOKIE = "provisioning_refresh"
ASK = {"X-Refresh-Cookie": "1"}
TTL_S = 7 * 24 * 3600


def own_origin(services: Services) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{services.cc.server.port}"}


def set_cookie(resp: ClientResponse) -> dict[str, str]:
    """The one ``Set-Cookie`` of an answer, as attributes (``""`` for a flag)."""
    [header] = resp.headers.getall("Set-Cookie")
    first, *attributes = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    assert name == COOKIE
    out = {"value": value}
    for attribute in attributes:
        key, _, val = attribute.partition("=")
        out[key] = val
    return out


async def post(
    services: Services, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[ClientResponse, dict[str, Any]]:
    """A POST that sends exactly the headers given (no cookie jar in between)."""
    services.cc.session.cookie_jar.clear()
    if isinstance(body, bytes):
        resp = await services.cc.post(path, data=body, headers=headers or {})
    else:
        resp = await services.cc.post(path, json=body, headers=headers or {})
    doc: dict[str, Any] = await resp.json()
    services.cc.session.cookie_jar.clear()
    data = doc.get("data")
    if isinstance(data, dict):
        services.secrets.add(data.get("token"), data.get("refresh_token"))
    if "Set-Cookie" in resp.headers:
        services.secrets.add(set_cookie(resp)["value"])
    return resp, doc


async def cookie_login(services: Services) -> tuple[dict[str, Any], str]:
    """The admin's login as the console does it: (the body's data, the cookie's value)."""
    await services.admin()  # enrols MFA once
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp, doc = await post(services, "/auth/login", body, ASK)
    assert resp.status == 200, doc
    return doc["data"], set_cookie(resp)["value"]


async def refresh_by_cookie(
    services: Services, cookie: str, origin: dict[str, str] | None = None, body: Any = None
) -> tuple[ClientResponse, dict[str, Any]]:
    headers = {"Cookie": f"{COOKIE}={cookie}", **(own_origin(services) if origin is None else origin)}
    return await post(services, "/auth/refresh", {} if body is None else body, headers)


async def test_login_puts_the_refresh_token_in_an_httponly_strict_cookie(services: Services) -> None:
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp, doc = await post(services, "/auth/login", body, ASK)
    assert resp.status == 200
    assert set(doc["data"]) == {"token", "expires_at", "refresh_expires_at", "user"}
    cookie = set_cookie(resp)
    assert len(cookie["value"]) >= 40
    assert "HttpOnly" in cookie and cookie["SameSite"] == "Strict" and cookie["Path"] == "/auth"
    assert TTL_S - 60 <= int(cookie["Max-Age"]) <= TTL_S
    assert "Secure" not in cookie and "Domain" not in cookie
    assert cookie["value"] not in await resp.text()


async def test_without_the_header_nothing_changes(services: Services) -> None:
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp, doc = await post(services, "/auth/login", body)
    assert resp.status == 200
    assert set(doc["data"]) == {"token", "expires_at", "refresh_token", "refresh_expires_at", "user"}
    assert "Set-Cookie" not in resp.headers
    resp, refreshed = await post(services, "/auth/refresh", {"refresh_token": doc["data"]["refresh_token"]})
    assert resp.status == 200 and "refresh_token" in refreshed["data"]
    assert "Set-Cookie" not in resp.headers
    resp, _ = await post(services, "/auth/logout", None, bearer(refreshed["data"]["token"]))
    assert resp.status == 200 and "Set-Cookie" not in resp.headers


async def test_a_login_pending_mfa_enrolment_sets_no_cookie(services: Services) -> None:
    resp, doc = await post(services, "/auth/login", {"username": "admin", "password": ADMIN_PASSWORD}, ASK)
    assert resp.status == 200
    assert doc["data"]["mfa_setup_required"] is True
    services.secrets.add(doc["data"]["setup_token"])
    assert "Set-Cookie" not in resp.headers


async def test_refresh_by_cookie_rotates_it_and_returns_only_the_access_token(services: Services) -> None:
    _, first = await cookie_login(services)
    resp, doc = await refresh_by_cookie(services, first)
    assert resp.status == 200, doc
    assert set(doc["data"]) == {"token", "expires_at"}
    second = set_cookie(resp)
    assert second["value"] != first and second["SameSite"] == "Strict" and "HttpOnly" in second
    me = await services.cc.get("/users/me", headers=bearer(doc["data"]["token"]))
    assert me.status == 200
    resp, doc = await refresh_by_cookie(services, second["value"], body=b"")
    assert resp.status == 200, doc  # no body at all is the same as {}


@pytest.mark.parametrize(
    "origin",
    [{}, {"Origin": "https://evil.example"}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:1"}],
    ids=["missing", "foreign", "null", "other-port"],
)
async def test_refresh_by_cookie_from_another_origin_is_refused(
    services: Services, origin: dict[str, str]
) -> None:
    _, cookie = await cookie_login(services)
    resp, doc = await refresh_by_cookie(services, cookie, origin)
    assert resp.status == 403, doc
    assert "origin" in doc["error"].lower()
    assert "Set-Cookie" not in resp.headers
    resp, _ = await refresh_by_cookie(services, cookie)  # not spent by the refused attempt
    assert resp.status == 200


@pytest.mark.parametrize("settings_overrides", [{"cors_origins": "https://console.example.com"}])
async def test_an_origin_of_cors_origins_may_refresh(services: Services) -> None:
    _, cookie = await cookie_login(services)
    resp, doc = await refresh_by_cookie(services, cookie, {"Origin": "https://console.example.com"})
    assert resp.status == 200, doc


async def test_an_empty_body_without_the_cookie_is_still_a_422(services: Services) -> None:
    for body in ({}, b""):
        resp, doc = await post(services, "/auth/refresh", body, own_origin(services))
        assert resp.status == 422
        assert doc["details"]["fields"][0]["field"] == "refresh_token"


async def test_a_reused_cookie_revokes_the_session_and_clears_the_cookie(services: Services) -> None:
    data, first = await cookie_login(services)
    resp, _ = await refresh_by_cookie(services, first)
    second = set_cookie(resp)["value"]
    resp, doc = await refresh_by_cookie(services, first)  # a stolen copy comes back
    assert resp.status == 401 and doc["code"] == "refresh_token_reused"
    assert set_cookie(resp)["Max-Age"] == "0" and set_cookie(resp)["value"] == ""
    resp, doc = await refresh_by_cookie(services, second)  # the whole session is gone
    assert resp.status == 401
    assert set_cookie(resp)["Max-Age"] == "0"
    me = await services.cc.get("/users/me", headers=bearer(data["token"]))
    assert me.status == 401


async def test_a_malformed_or_unknown_cookie_is_a_401_that_clears_it(services: Services) -> None:
    for value in ("not a token;", "x" * 2000, "made-up-refresh-token"):
        resp, _ = await refresh_by_cookie(services, value)
        assert resp.status in (400, 401), value
        if resp.status == 401:
            assert set_cookie(resp)["Max-Age"] == "0"


async def test_the_body_wins_over_the_cookie(services: Services) -> None:
    """An API client's refresh token in the body is used even if a cookie is around."""
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    _, login = await post(services, "/auth/login", body)
    resp, doc = await refresh_by_cookie(
        services, "made-up-refresh-token", body={"refresh_token": login["data"]["refresh_token"]}
    )
    assert resp.status == 200 and "refresh_token" in doc["data"]
    assert "Set-Cookie" not in resp.headers


async def test_logout_clears_the_cookie_and_ends_its_session(services: Services) -> None:
    data, cookie = await cookie_login(services)
    headers = {**bearer(data["token"]), "Cookie": f"{COOKIE}={cookie}", **own_origin(services)}
    resp, doc = await post(services, "/auth/logout", None, headers)
    assert resp.status == 200, doc
    cleared = set_cookie(resp)
    assert cleared["value"] == "" and cleared["Max-Age"] == "0" and cleared["Path"] == "/auth"
    resp, _ = await refresh_by_cookie(services, cookie)
    assert resp.status == 401


async def test_logout_ends_the_cookies_session_when_the_token_is_from_another(services: Services) -> None:
    """The console's cookie names the session to end even when the access token came
    from another login of the same user."""
    _, cookie = await cookie_login(services)
    other = await services.admin()
    resp, _ = await post(services, "/auth/logout", None, {**bearer(other), "Cookie": f"{COOKIE}={cookie}"})
    assert resp.status == 200
    resp, _ = await refresh_by_cookie(services, cookie)
    assert resp.status == 401


async def test_logout_leaves_another_users_cookie_alone(services: Services) -> None:
    _, cookie = await cookie_login(services)
    _, viewer = await services.user("vera", "viewer")
    resp, _ = await post(services, "/auth/logout", None, {**bearer(viewer), "Cookie": f"{COOKIE}={cookie}"})
    assert resp.status == 200
    resp, _ = await refresh_by_cookie(services, cookie)
    assert resp.status == 200


@pytest.mark.parametrize("settings_overrides", [{"trusted_proxies": "127.0.0.1"}])
async def test_the_cookie_is_secure_behind_a_tls_proxy(services: Services) -> None:
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp, _ = await post(services, "/auth/login", body, {**ASK, "X-Forwarded-Proto": "https"})
    assert "Secure" in set_cookie(resp)


async def test_a_forwarded_proto_from_anyone_else_is_not_believed(services: Services) -> None:
    await services.admin()
    body = {"username": "admin", "password": ADMIN_PASSWORD, "mfa_code": services.code("admin")}
    resp, _ = await post(services, "/auth/login", body, {**ASK, "X-Forwarded-Proto": "https"})
    assert "Secure" not in set_cookie(resp)
