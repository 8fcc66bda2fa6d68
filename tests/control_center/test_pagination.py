"""Cursor paging of the control center's lists over real HTTP: ``/users`` (oldest first),
``/audit/logs`` (newest first, with the seed's filters) and a webhook's deliveries;
rows written between pages are neither skipped nor repeated; bad cursors are 422s."""

from __future__ import annotations

import pytest

from shared.webhooks.outbox import delivery_row
from shared.webhooks.repository import WebhookRepository
from tests.helpers.counters import counter_mismatches
from tests.helpers.pages import refused_cursor, walk
from tests.helpers.services import USER_PASSWORD, Services, bearer

pytestmark = pytest.mark.parametrize("settings_overrides", [{"webhooks_allow_private": True}])


async def make_user(services: Services, admin: str, name: str) -> str:
    resp = await services.cc.post(
        "/users",
        headers=bearer(admin),
        json={"username": name, "password": USER_PASSWORD, "roles": ["viewer"], "enabled": True},
    )
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["data"]["id"])


async def test_users_by_cursor_with_users_created_between_pages(services: Services) -> None:
    admin = await services.admin()
    made = [await make_user(services, admin, f"user{i}") for i in range(5)]

    async def more(page: int) -> None:
        made.append(await make_user(services, admin, f"late{page}"))

    seen = await walk(services.cc, "/users", limit=2, headers=bearer(admin), between=more)
    ids = [u["id"] for u in seen]
    assert len(ids) == len(set(ids))  # nothing twice
    # oldest first: users created while paging come last, and are listed too (all but the
    # one made after the last page)
    assert ids[1:] == made[:-1]
    resp = await services.cc.get("/users", headers=bearer(admin), params={"limit": "1"})
    assert resp.headers["X-Total-Count"] == str(len(made) + 1)
    viewers = await walk(services.cc, "/users", limit=2, headers=bearer(admin), role="viewer")
    assert {u["id"] for u in viewers} == set(made)
    resp = await services.cc.get("/users", headers=bearer(admin), params={"role": "viewer"})
    assert "X-Total-Count" not in resp.headers  # no counter follows a filter
    await refused_cursor(services.cc, "/users", bearer(admin))
    assert await counter_mismatches(services.store) == []


async def test_audit_logs_by_cursor_newest_first_while_records_are_written(services: Services) -> None:
    admin = await services.admin()
    for i in range(4):
        await make_user(services, admin, f"audited{i}")
    resp = await services.cc.get("/audit/logs", headers=bearer(admin), params={"limit": "1000"})
    everything = [r["id"] for r in (await resp.json())["data"]]
    assert resp.headers["X-Total-Count"] == str(len(everything))

    async def more(page: int) -> None:
        await make_user(services, admin, f"more{page}")  # audited: newer than the cursor

    seen = await walk(services.cc, "/audit/logs", limit=3, headers=bearer(admin), between=more)
    # every record that existed is seen once, newest first; the first page may hold some
    # written just before it (the listing above was audited too)
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)) and set(everything) <= set(ids)
    created = await walk(services.cc, "/audit/logs", limit=2, headers=bearer(admin), action="users.create")
    assert len(created) >= 4 and all(r["action"] == "users.create" for r in created)
    resp = await services.cc.get("/audit/logs", headers=bearer(admin), params={"action": "users.create"})
    assert "X-Total-Count" not in resp.headers
    await refused_cursor(services.cc, "/audit/logs", bearer(admin))


async def test_a_webhook_s_deliveries_by_cursor(services: Services) -> None:
    admin = await services.admin()
    resp = await services.cc.post(
        "/webhooks",
        headers=bearer(admin),
        json={"url": "http://127.0.0.1:9/hook", "events": ["task.*"], "enabled": False},
    )
    assert resp.status == 201, await resp.text()
    hook = (await resp.json())["data"]["id"]
    rows = [delivery_row(hook, "task.completed", "{}", status="delivered") for _ in range(7)]
    await services.store.write(*(WebhookRepository.insert_delivery(r) for r in rows))

    late: list[str] = []

    async def more(page: int) -> None:
        row = delivery_row(hook, "task.completed", "{}", status="delivered")
        await services.store.write(WebhookRepository.insert_delivery(row))
        late.append(row["id"])

    seen = await walk(
        services.cc, f"/webhooks/{hook}/deliveries", limit=3, headers=bearer(admin), between=more
    )
    assert [d["id"] for d in seen] == [r["id"] for r in reversed(rows)]
    resp = await services.cc.get(f"/webhooks/{hook}/deliveries", headers=bearer(admin), params={"limit": "1"})
    assert resp.headers["X-Total-Count"] == str(7 + len(late))
    await refused_cursor(services.cc, f"/webhooks/{hook}/deliveries", bearer(admin))
    assert await counter_mismatches(services.store) == []
