"""Webhooks end to end: registered on the control center, produced by the orchestrator's
outbox, delivered by its dispatcher to a real HTTP consumer, verified as a consumer would."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from shared.webhooks import verify_webhook
from shared.webhooks.signing import WebhookVerificationError, signature_256
from tests.helpers.events import (
    Consumer,
    Received,
    Services,
    ServicesFactory,
    ops,
    register,
    submit,
    wait_final,
)


def events_of(received: list[Received]) -> list[str]:
    return [json.loads(r.body)["event"] for r in received]


def has(name: str, count: int = 1) -> Any:
    return lambda got: events_of(got).count(name) >= count


async def deliveries(services: Services, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    resp = await services.cc.get(f"/webhooks/{webhook_id}/deliveries", params=params)
    assert resp.status == 200, await resp.text()
    items: list[dict[str, Any]] = (await resp.json())["data"]
    return items


async def test_batch_events_arrive_signed_in_the_seed_format(services: Services, consumer: Consumer) -> None:
    hook = await register(
        services.cc,
        consumer.url,
        ["task.completed", "task.failed", "batch.completed", "batch.failed"],
        description="ci",
    )
    assert hook["secret"].startswith("whsec_")
    batch_id = await submit(services.orch, ops(3))
    await wait_final(services.orch, batch_id)
    got = await consumer.wait_for(has("batch.completed"))

    assert sorted(events_of(got)) == ["batch.completed"] + ["task.completed"] * 3
    standard = StandardWebhook(hook["secret"])
    for request in got:
        # As a consumer would: our verifier, and the standardwebhooks library itself.
        doc = verify_webhook(hook["secret"], request.headers, request.body)
        assert standard.verify(request.body, request.headers) == doc
        assert set(doc) == {"event", "timestamp", "data"}
        assert doc["timestamp"].endswith("Z")
        assert request.headers["webhook-id"].startswith("msg_")
        assert request.headers["X-Signature-256"] == signature_256(hook["secret"], request.body)
        assert request.headers["Content-Type"] == "application/json"
    task_events = [json.loads(r.body) for r in got if json.loads(r.body)["event"] == "task.completed"]
    for doc in task_events:
        assert doc["data"]["status"] == "Completed"
        assert doc["data"]["workflow_id"] == batch_id
        assert doc["data"]["task_id"]
    # The last event of the batch comes last: deliveries are ordered per webhook.
    assert events_of(got)[-1] == "batch.completed"

    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook["secret"], got[0].headers, got[0].body + b" ")
    with pytest.raises(WebhookVerificationError):
        verify_webhook("whsec_" + "A" * 44, got[0].headers, got[0].body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook["secret"], got[0].headers, got[0].body, tolerance_s=-1)


async def test_only_subscribed_events_are_queued(services: Services, consumer: Consumer) -> None:
    failed_only = await register(services.cc, consumer.url, ["task.failed"])
    bad = {**ops(1, "bad", fail_always=True)[0], "retry": {"max_attempts": 1}}
    batch_id = await submit(services.orch, [*ops(2), bad])
    await wait_final(services.orch, batch_id)
    got = await consumer.wait_for(has("task.failed"))
    assert events_of(got) == ["task.failed"]
    rows = await deliveries(services, failed_only["id"])
    assert [r["event"] for r in rows] == ["task.failed"]


async def test_a_failing_consumer_gets_the_delivery_on_the_fourth_attempt(
    services: Services, consumer: Consumer
) -> None:
    hook = await register(services.cc, consumer.url, ["batch.completed"])
    consumer.script.extend([500, 500, 500])
    batch_id = await submit(services.orch, ops(1))
    await wait_final(services.orch, batch_id)
    got = await consumer.wait_for(lambda r: len(r) >= 4)

    assert len({r.headers["webhook-id"] for r in got}) == 1, "retries keep the webhook-id"
    for request in got:
        verify_webhook(hook["secret"], request.headers, request.body)
    async with asyncio.timeout(10):  # the outcome is written just after the answer
        while True:
            done = await deliveries(services, hook["id"], status="delivered")
            if done:
                break
            await asyncio.sleep(0.02)
    [row] = done
    assert row["attempt"] == 4 and row["status_code"] == 200 and row["error"] is None
    assert row["latency_ms"] >= 0
    resp = await services.cc.get(f"/webhooks/{hook['id']}/deliveries/{row['id']}")
    detail = (await resp.json())["data"]
    assert [a["status_code"] for a in detail["attempts"]] == [500, 500, 500, 200]
    assert detail["attempts"][0]["error"].startswith("HTTP 500")
    assert detail["payload"]["event"] == "batch.completed"


async def test_secret_rotation_signs_with_both_during_the_grace_period(
    services: Services, consumer: Consumer
) -> None:
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    resp = await services.cc.post(f"/webhooks/{hook['id']}/rotate-secret")
    assert resp.status == 200
    rotated = (await resp.json())["data"]
    new_secret = rotated["secret"]
    assert new_secret != hook["secret"] and rotated["previous_secret_expires_at"]

    resp = await services.cc.post(f"/webhooks/{hook['id']}/test")
    assert resp.status == 202
    [request] = await consumer.wait_for(lambda r: len(r) >= 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify_webhook(new_secret, request.headers, request.body)["event"] == "webhook.test"
    verify_webhook(hook["secret"], request.headers, request.body)  # old consumers still verify
    assert request.headers["X-Signature-256"] == (
        f"{signature_256(new_secret, request.body)}, {signature_256(hook['secret'], request.body)}"
    )

    resp = await services.cc.get(f"/webhooks/{hook['id']}")
    assert "secret" not in (await resp.json())["data"]


async def test_grace_period_ends(make_services: ServicesFactory, consumer: Consumer) -> None:
    services = await make_services(webhook_rotation_grace_s=0)
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    resp = await services.cc.post(f"/webhooks/{hook['id']}/rotate-secret")
    new_secret = (await resp.json())["data"]["secret"]
    await services.cc.post(f"/webhooks/{hook['id']}/test")
    [request] = await consumer.wait_for(lambda r: len(r) >= 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    verify_webhook(new_secret, request.headers, request.body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook["secret"], request.headers, request.body)


async def test_redeliver_sends_the_same_message_again(services: Services, consumer: Consumer) -> None:
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    resp = await services.cc.post(f"/webhooks/{hook['id']}/test")
    delivery_id = (await resp.json())["data"]["id"]
    await consumer.wait_for(lambda r: len(r) >= 1)
    resp = await services.cc.post(f"/webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver")
    # Still being recorded as delivered, or already: either way it goes out again.
    if resp.status == 409:
        await consumer.wait_for(lambda r: len(r) >= 1)
        resp = await services.cc.post(f"/webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver")
    assert resp.status == 202, await resp.text()
    got = await consumer.wait_for(lambda r: len(r) >= 2)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == delivery_id
    assert got[0].body == got[1].body


async def test_exhausted_deliveries_fail_and_the_webhook_is_paused_without_losing_any(
    make_services: ServicesFactory, consumer: Consumer
) -> None:
    services = await make_services(webhook_retry_schedule_s="0,0.02", webhook_failure_threshold=2)
    hook = await register(services.cc, consumer.url, ["webhook.test", "batch.completed"])
    consumer.default = 503
    for _ in range(3):
        await services.cc.post(f"/webhooks/{hook['id']}/test")
    await consumer.wait_for(lambda r: len(r) >= 4)  # two deliveries, two attempts each
    async with asyncio.timeout(10):
        while True:
            resp = await services.cc.get(f"/webhooks/{hook['id']}")
            view = (await resp.json())["data"]
            if view["paused"]:
                break
            await asyncio.sleep(0.02)
    assert view["enabled"] and view["consecutive_failures"] == 2
    assert "paused after 2 failed deliveries" in view["paused_reason"]
    # Paused, events still queue for it; nothing more is sent.
    batch_id = await submit(services.orch, ops(1))
    await wait_final(services.orch, batch_id)
    async with asyncio.timeout(10):
        while True:
            rows = await deliveries(services, hook["id"])
            if len(rows) == 4:
                break
            await asyncio.sleep(0.02)
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "pending", "pending"]
    assert len(consumer.received) == 4

    # Fixed and enabled again: what waited goes out; the failed ones can be redelivered.
    consumer.default = 200
    resp = await services.cc.put(f"/webhooks/{hook['id']}", json={"enabled": True})
    resumed = (await resp.json())["data"]
    assert resp.status == 200 and not resumed["paused"] and resumed["paused_reason"] is None
    got = await consumer.wait_for(has("batch.completed"))
    assert events_of(got)[-2:] == ["webhook.test", "batch.completed"]  # in order
    for row in rows:
        if row["status"] == "failed":
            resp = await services.cc.post(f"/webhooks/{hook['id']}/deliveries/{row['id']}/redeliver")
            assert resp.status == 202
    got = await consumer.wait_for(lambda r: len(r) >= 8)
    assert {r.headers["webhook-id"] for r in got} == {r["id"] for r in rows}


async def test_disabled_webhooks_queue_nothing(services: Services, consumer: Consumer) -> None:
    hook = await register(services.cc, consumer.url, ["batch.completed"], enabled=False)
    batch_id = await submit(services.orch, ops(1))
    await wait_final(services.orch, batch_id)
    assert await deliveries(services, hook["id"]) == []


async def test_replicas_take_turns_through_a_lease(services: Services, consumer: Consumer) -> None:
    from shared.webhooks.dispatcher import DISPATCHER
    from shared.webhooks.repository import WebhookRepository

    dispatcher = services.orch.app[DISPATCHER]
    dispatcher.use_leases = True  # as against a SurrealDB server with several orchestrators
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    held_until = time.time() + 0.5
    [claimed] = await services.store.write(
        WebhookRepository.claim_lease(hook["id"], "another-replica", held_until, time.time())
    )
    assert claimed
    [refused] = await services.store.write(
        WebhookRepository.claim_lease(hook["id"], dispatcher.owner, held_until, time.time())
    )
    assert not refused
    await services.cc.post(f"/webhooks/{hook['id']}/test")
    await asyncio.sleep(0.3)
    assert consumer.received == []  # the other replica holds the webhook
    got = await consumer.wait_for(lambda r: len(r) >= 1)  # its lease ran out: taken over
    assert time.time() >= held_until
    assert json.loads(got[0].body)["event"] == "webhook.test"


async def test_webhook_management_api(services: Services, consumer: Consumer) -> None:
    cc = services.cc
    hook = await register(cc, consumer.url, ["task.*"], description="first")
    resp = await cc.get("/webhooks")
    assert resp.status == 200 and resp.headers["X-Total-Count"] == "1"
    listed = (await resp.json())["data"]
    assert [w["id"] for w in listed] == [hook["id"]]
    assert "secret" not in listed[0]

    resp = await cc.put(
        f"/webhooks/{hook['id']}", json={"events": ["batch.completed", "rollback.*"], "description": "x"}
    )
    assert resp.status == 200
    assert (await resp.json())["data"]["events"] == ["batch.completed", "rollback.*"]

    resp = await cc.put(f"/webhooks/{hook['id']}", json={"events": ["task.exploded"]})
    assert resp.status == 422
    assert "task.exploded" in (await resp.json())["error"]
    resp = await cc.post("/webhooks", json={"url": consumer.url, "events": []})
    assert resp.status == 422
    resp = await cc.post("/webhooks", json={"url": consumer.url, "events": ["*"], "x": 1})
    assert resp.status == 422
    resp = await cc.get("/webhooks/events")
    assert "task.completed" in (await resp.json())["data"]["events"]

    resp = await cc.delete(f"/webhooks/{hook['id']}")
    assert resp.status == 200
    for path in (f"/webhooks/{hook['id']}", f"/webhooks/{hook['id']}/deliveries"):
        resp = await cc.get(path)
        assert resp.status == 404
    resp = await cc.post("/webhooks/nope/test")
    assert resp.status == 404


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost/hook",
        "https://100.64.0.1/hook",
        "not a url",
        # IPv4 inside IPv6: 6to4, NAT64, IPv4-compatible
        "http://[2002:7f00:1::]/hook",
        "http://[64:ff9b::a00:1]/hook",
        "http://[::7f00:1]/hook",
        # credentials in the URL would be shown wherever the URL is
        "https://user:secret@example.com/hook",
    ],
)
async def test_private_and_non_http_targets_are_refused(make_services: ServicesFactory, url: str) -> None:
    services = await make_services(webhooks_allow_private=False)
    resp = await services.cc.post("/webhooks", json={"url": url, "events": ["*"]})
    doc = await resp.json()
    assert resp.status == 422, doc
    assert doc["details"]["fields"][0]["field"] == "url"


async def test_private_targets_are_allowed_when_configured(services: Services) -> None:
    await register(services.cc, "http://127.0.0.1:9/hook")


async def test_a_target_that_turned_private_is_not_sent_to(
    make_services: ServicesFactory, consumer: Consumer
) -> None:
    services = await make_services(webhooks_allow_private=False, webhook_retry_schedule_s="0")
    # Registered while private targets were allowed (say, by another configuration).
    from shared.webhooks.repository import WebhookRepository
    from shared.webhooks.signing import new_secret

    await services.store.write(
        WebhookRepository.insert_webhook(
            {
                "id": "wh_private",
                "url": consumer.url,
                "events": ["*"],
                "enabled": True,
                "secret": new_secret(),
                "source": "api",
                "consecutive_failures": 0,
            }
        )
    )
    await services.cc.post("/webhooks/wh_private/test")
    async with asyncio.timeout(10):
        while True:
            rows = await deliveries(services, "wh_private")
            if rows and rows[0]["status"] == "failed":
                break
            await asyncio.sleep(0.02)
    assert "loopback, private or reserved" in rows[0]["error"]
    assert consumer.received == []


async def test_large_answers_are_read_only_up_to_the_cap(
    make_services: ServicesFactory, consumer: Consumer
) -> None:
    services = await make_services(webhook_max_response_bytes=1000)
    consumer.reply = b"x" * 2_000_000
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    resp = await services.cc.post(f"/webhooks/{hook['id']}/test")
    delivery_id = (await resp.json())["data"]["id"]
    await consumer.wait_for(lambda r: len(r) >= 1)
    async with asyncio.timeout(10):
        while True:
            resp = await services.cc.get(f"/webhooks/{hook['id']}/deliveries/{delivery_id}")
            detail = (await resp.json())["data"]
            if detail["status"] == "delivered":
                break
            await asyncio.sleep(0.02)
    assert len(detail["attempts"][0]["response"]) <= 1000


async def test_static_configuration_endpoints(make_services: ServicesFactory, consumer: Consumer) -> None:
    services = await make_services(
        webhook_endpoints=({"url": consumer.url, "events": ["batch.completed"], "secret": "webhook-secret"},)
    )
    resp = await services.cc.get("/webhooks")
    [hook] = (await resp.json())["data"]
    assert hook["source"] == "config" and hook["events"] == ["batch.completed"]
    resp = await services.cc.put(f"/webhooks/{hook['id']}", json={"url": consumer.url})
    assert resp.status == 409
    batch_id = await submit(services.orch, ops(2))
    await wait_final(services.orch, batch_id)
    [request] = await consumer.wait_for(has("batch.completed"))
    # A plain secret from the configuration keys the HMACs with its own bytes.
    assert verify_webhook("webhook-secret", request.headers, request.body)["event"] == "batch.completed"
    assert request.headers["X-Signature-256"] == signature_256("webhook-secret", request.body)


async def test_rollback_events_are_delivered(services: Services, consumer: Consumer) -> None:
    await register(services.cc, consumer.url, ["rollback.*", "batch.failed"])
    failing = {**ops(1, "bad", fail_always=True)[0], "dependencies": ["op0"], "retry": {"max_attempts": 1}}
    batch_id = await submit(services.orch, [*ops(1), failing], rollback_enabled=True)
    await wait_final(services.orch, batch_id)
    got = await consumer.wait_for(has("rollback.completed"))
    names = events_of(got)
    assert "rollback.started" in names and "rollback.completed" in names


async def test_metrics_are_exported(services: Services, consumer: Consumer) -> None:
    hook = await register(services.cc, consumer.url, ["webhook.test"])
    await services.cc.post(f"/webhooks/{hook['id']}/test")
    await consumer.wait_for(lambda r: len(r) >= 1)
    resp = await services.orch.get("/metrics")
    text = await resp.text()
    for name in (
        "events_published_total",
        "websocket_connections",
        "webhook_deliveries_total",
        "webhook_delivery_seconds_bucket",
        "webhook_outbox_pending",
    ):
        assert name in text, name
    assert 'webhook_deliveries_total{result="delivered"}' in text


async def test_automatic_checkpoints_and_restores_are_delivered(
    services: Services, consumer: Consumer
) -> None:
    await register(services.cc, consumer.url, ["checkpoint.created", "state.restored"])
    batch_id = await submit(services.orch, ops(1))
    done = await wait_final(services.orch, batch_id)
    resp = await services.orch.post(f"/rollback/restore/{done['checkpoint_id']}")
    assert resp.status == 200, await resp.text()
    got = await consumer.wait_for(has("state.restored"))
    assert events_of(got) == ["checkpoint.created", "state.restored"]
