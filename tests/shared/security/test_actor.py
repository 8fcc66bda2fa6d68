"""The actor a handler hands to a service: who, from where, and the request's audit mark."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from shared.security.actor import actor_of, audited
from shared.security.audit import entry_of
from shared.security.auth import PRINCIPAL, Principal
from shared.settings import load_settings
from shared.web.keys import SERVICE_KEY, SETTINGS
from shared.web.middlewares import REQUEST_ID


def request() -> web.Request:
    app = web.Application()
    app[SETTINGS] = load_settings(db_url="mem://")  # no trusted proxy
    app[SERVICE_KEY] = "control_center"
    req = make_mocked_request(
        "POST", "/policies", headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "curl/8"}, app=app
    )
    req[REQUEST_ID] = "req-7"
    return req


def test_an_actor_carries_who_and_from_where_and_believes_only_trusted_proxies() -> None:
    req = request()
    actor = actor_of(req)
    assert actor.principal is None and actor.user_id is None  # nobody authenticated yet
    assert (actor.request_id, actor.service, actor.method, actor.path) == (
        "req-7",
        "control_center",
        "POST",
        "/policies",
    )
    assert actor.ip != "203.0.113.9" and actor.user_agent == "curl/8"  # the header is not believed
    req[PRINCIPAL] = Principal(user_id="u1", username="ann", roles=("admin",))
    assert actor_of(req).username == "ann"


def test_the_audit_mark_is_shared_by_every_actor_of_one_request() -> None:
    req = request()
    first, second = actor_of(req), actor_of(req)
    assert not audited(req)
    second.mark.recorded = True
    assert audited(req) and first.mark.recorded


def test_an_entry_names_the_actor_unless_told_whom_it_is_about() -> None:
    req = request()
    req[PRINCIPAL] = Principal(user_id="u1", username="ann", roles=("admin",))
    actor = actor_of(req)
    entry = entry_of(actor, "auth.logout", "sessions/s1", "success")
    assert (entry.user_id, entry.username, entry.request_id, entry.service) == (
        "u1",
        "ann",
        "req-7",
        "control_center",
    )
    other = entry_of(actor, "auth.login", "users/u2", "failure", user_id="u2", username="bob")
    assert (other.user_id, other.username) == ("u2", "bob")
