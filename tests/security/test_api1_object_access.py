"""API1 broken object-level authorization: one user's objects through another's token.

Roles decide which kinds of object a user may touch; these tests check that
the object named in the path is the one acted on, and that an id belonging
to another parent or another user does not leak through a route that is
allowed.
"""

from __future__ import annotations

from typing import Any

from tests.helpers.services import USER_PASSWORD, Services, bearer


async def _json(resp: Any) -> tuple[int, Any]:
    return resp.status, await resp.json()


async def test_a_user_reads_and_changes_only_their_own_profile(services: Services) -> None:
    admin = await services.admin()
    alice_id, alice = await services.user("alice", "operator", admin_token=admin)
    bob_id, bob = await services.user("bobby", "viewer", admin_token=admin)
    # /users/me is the caller, whoever the token names
    status, doc = await _json(await services.cc.get("/users/me", headers=bearer(bob)))
    assert status == 200 and doc["data"]["id"] == bob_id
    # another user's record by id: users:read is an admin's
    for token in (alice, bob):
        status, doc = await _json(await services.cc.get(f"/users/{alice_id}", headers=bearer(token)))
        assert status == 403, doc
        status, doc = await _json(
            await services.cc.put(f"/users/{alice_id}", json={"enabled": False}, headers=bearer(token))
        )
        assert status == 403, doc
        status, doc = await _json(
            await services.cc.post(f"/users/{alice_id}/mfa/reset", headers=bearer(token))
        )
        assert status == 403, doc
    # bob's password change needs bob's current password and changes only bob
    status, doc = await _json(
        await services.cc.post(
            "/users/me/password",
            json={"current_password": "not-bobs-password", "new_password": "a-new-long-passphrase-9"},
            headers=bearer(bob),
        )
    )
    assert status == 401, doc
    # alice still logs in with her password: nothing of hers moved
    data = await services.token("alice", USER_PASSWORD)
    assert data["user"]["id"] == alice_id


async def test_logout_ends_only_the_callers_session(services: Services) -> None:
    admin = await services.admin()
    _, alice = await services.user("alice", "operator", admin_token=admin)
    _, bob = await services.user("bobby", "viewer", admin_token=admin)
    resp = await services.cc.post("/auth/logout", headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    assert (await services.cc.get("/users/me", headers=bearer(bob))).status == 401
    assert (await services.cc.get("/users/me", headers=bearer(alice))).status == 200


async def test_a_delivery_is_reachable_only_under_its_own_webhook(services: Services) -> None:
    admin = await services.admin()
    hooks = []
    for name in ("one", "two"):
        resp = await services.cc.post(
            "/webhooks",
            json={"url": f"https://hooks.example.com/{name}", "events": ["*"], "description": name},
            headers=bearer(admin),
        )
        doc = await resp.json()
        assert resp.status == 201, doc
        hooks.append(doc["data"]["id"])
    resp = await services.cc.post(f"/webhooks/{hooks[0]}/test", headers=bearer(admin))
    doc = await resp.json()
    assert resp.status == 202, doc
    delivery = doc["data"]["id"]
    own = await services.cc.get(f"/webhooks/{hooks[0]}/deliveries/{delivery}", headers=bearer(admin))
    assert own.status == 200, await own.text()
    # the same delivery id under the other webhook is not found, for reads and redelivery
    other = await services.cc.get(f"/webhooks/{hooks[1]}/deliveries/{delivery}", headers=bearer(admin))
    assert other.status == 404, await other.text()
    again = await services.cc.post(
        f"/webhooks/{hooks[1]}/deliveries/{delivery}/redeliver", headers=bearer(admin)
    )
    assert again.status == 404, await again.text()
    listed = await services.cc.get(f"/webhooks/{hooks[1]}/deliveries", headers=bearer(admin))
    assert all(d["id"] != delivery for d in (await listed.json())["data"])


async def test_a_viewer_cannot_act_on_a_batch_it_can_read(services: Services) -> None:
    admin = await services.admin()
    _, viewer = await services.user("viewer1", "viewer", admin_token=admin)
    resp = await services.orch.post(
        "/batch/execute",
        json={
            "name": "someone-elses",
            "operations": [
                {"id": "a", "type": "server_batch", "provider": "local", "simulate": {"latency_s": 5}}
            ],
        },
        headers=bearer(admin),
    )
    doc = await resp.json()
    assert resp.status == 201, doc
    batch_id = doc["data"]["batch_id"]
    assert (await services.orch.get(f"/batch/operations/{batch_id}", headers=bearer(viewer))).status == 200
    resp = await services.orch.post(f"/batch/operations/{batch_id}/cancel", headers=bearer(viewer))
    assert resp.status == 403, await resp.text()
    resp = await services.orch.post(
        "/rollback/execute", json={"operation_ids": ["a"]}, headers=bearer(viewer)
    )
    assert resp.status == 403, await resp.text()
    # still running: the refused cancel changed nothing
    status = await (await services.orch.get(f"/batch/operations/{batch_id}", headers=bearer(admin))).json()
    assert status["data"]["status"] == "Running"
    resp = await services.orch.post(f"/batch/operations/{batch_id}/cancel", headers=bearer(admin))
    assert resp.status == 200, await resp.text()
