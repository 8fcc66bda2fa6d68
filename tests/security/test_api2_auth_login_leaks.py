"""API2 broken authentication: a password typed into the username field was kept.

Issue 8, finding 9 (the LoginFailed part): a failed login with an unknown
username stored the text in the audit details and broadcast it in
``LoginFailed``; people do type their password there. Now only the first two
characters and a SHA-256 prefix are kept; known usernames stay as they are.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from control_center.login import masked_username
from tests.helpers.services import USER_PASSWORD, Services, bearer

TYPED = "Tr0ub4dor&3-horse-battery"  # a password, typed where the username goes


async def next_event(ws: Any, event_type: str) -> dict[str, Any]:
    while True:
        doc: dict[str, Any] = await ws.receive_json(timeout=5)
        if doc.get("event_type") == event_type:
            return doc


async def test_an_unknown_username_is_never_kept_in_full(services: Services) -> None:
    services.secrets.add(TYPED)  # and no log line may hold it either
    admin = await services.admin()
    ws = await services.cc.ws_connect("/ws", headers=bearer(admin))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    status, _ = await services.login(TYPED, USER_PASSWORD)
    assert status == 401
    failed = await next_event(ws, "LoginFailed")
    assert TYPED not in json.dumps(failed)
    masked = failed["data"]["username"]
    assert masked == masked_username(TYPED)
    assert masked.startswith("Tr") and hashlib.sha256(TYPED.encode()).hexdigest()[:12] in masked
    # nowhere in the audit trail: not through the API, not in the stored rows
    resp = await services.cc.get("/audit/logs", params={"action": "auth.login"}, headers=bearer(admin))
    records = (await resp.json())["data"]
    assert any(r["details"].get("username") == masked for r in records)
    assert TYPED not in json.dumps(records)
    assert TYPED not in repr(await services.store.query("SELECT * FROM audit"))
    await ws.close()


async def test_a_known_username_is_kept_as_it_is(services: Services) -> None:
    admin = await services.admin()
    await services.user("viewer1", "viewer", admin_token=admin)
    ws = await services.cc.ws_connect("/ws", headers=bearer(admin))
    assert (await ws.receive_json(timeout=5))["type"] == "welcome"
    status, _ = await services.login("VIEWER1", "wrong-password-123")
    assert status == 401
    failed = await next_event(ws, "LoginFailed")
    assert failed["data"]["username"] == "viewer1" and failed["data"]["user_id"]
    await ws.close()
