"""The event bus, webhook names and patterns, signing helpers and the URL guard, as units."""

from __future__ import annotations

import json
import time

import pytest

from provisioning.server import product_registry
from shared.errors import ValidationFailed
from shared.events.bus import EventBus, websocket_text_frame
from shared.events.registry import EventSpec, Vocabulary
from shared.webhooks import Catalogue, sign_headers, verify_webhook
from shared.webhooks.catalogue import matches
from shared.webhooks.outbox import next_seq
from shared.webhooks.signing import WebhookVerificationError, new_secret, secret_key
from shared.webhooks.urlguard import is_public, parse_target


def test_ids_grow_across_buses_as_across_restarts() -> None:
    old = EventBus()
    last = old.publish("TaskStatusChanged", {"status": "Running"}).id
    new = EventBus()
    assert new.publish("TaskStatusChanged", {"status": "Running"}).id > last


def test_replay_since_and_retention() -> None:
    bus = EventBus(retention_count=3)
    ids = [bus.publish("BatchStatusChanged", {"n": n}).id for n in range(5)]
    events, gap = bus.replay(ids[2])
    assert [e.id for e in events] == ids[3:] and not gap
    events, gap = bus.replay(ids[0])
    assert [e.id for e in events] == ids[2:] and gap, "ids[1] is gone"
    assert bus.replay(ids[-1]) == ([], False)
    assert bus.replay(None) == ([], False)


def test_retention_by_age() -> None:
    bus = EventBus(retention_s=0.0)
    bus.publish("BatchStatusChanged", {})
    time.sleep(0.001)
    assert bus.since(0) == []


def test_event_kinds_and_forms() -> None:
    bus = EventBus(registry=product_registry())
    assert bus.publish("RollbackStarted", {}).kind == "rollback"
    assert bus.publish("UserLogin", {}).kind == "security"
    assert bus.publish("SomethingNew", {}).kind == "system"
    bus.registry.register(Vocabulary("extension", events=(EventSpec("SomethingSecret", "security"),)))
    event = bus.publish("SomethingSecret", {"workflow_id": "w"})
    assert event.kind == "security" and event.workflow_id == "w"
    assert json.loads(event.json_text) == event.to_json()
    assert event.sse_frame.startswith(f"id: {event.id}\r\ndata: {{".encode())
    assert event.ws_frame == websocket_text_frame(event.json_text.encode())
    for size in (5, 200, 70_000):
        frame = websocket_text_frame(b"x" * size)
        assert frame[0] == 0x81 and frame.endswith(b"x" * size)


@pytest.mark.parametrize(
    ("event_type", "data", "name"),
    [
        ("TaskStatusChanged", {"status": "Completed"}, "task.completed"),
        ("TaskStatusChanged", {"status": "RollingBack"}, "task.rolling_back"),
        ("BatchStatusChanged", {"status": "Failed"}, "batch.failed"),
        ("OperationProgress", {"progress": 50}, "task.progress"),
        ("RollbackCompleted", {"success": True}, "rollback.completed"),
        ("RollbackCompleted", {"success": False}, "rollback.failed"),
        ("CheckpointCreated", {}, "checkpoint.created"),
        ("UserLogin", {}, None),
    ],
)
def test_webhook_names(event_type: str, data: dict[str, object], name: str | None) -> None:
    assert Catalogue(product_registry()).name_of(event_type, data) == name


def test_patterns() -> None:
    assert matches(["task.*"], "task.failed")
    assert matches(["*"], "rollback.completed")
    assert not matches(["task.completed"], "task.failed")
    catalogue = Catalogue(product_registry())
    got = catalogue.validate(["Task.Completed", "task.completed", "batch.*"])
    assert got == ["task.completed", "batch.*"]
    with pytest.raises(ValidationFailed):
        catalogue.validate(["task.exploded"])
    with pytest.raises(ValidationFailed):
        catalogue.validate([])


def test_delivery_positions_are_strictly_increasing() -> None:
    seqs = [next_seq() for _ in range(1000)]
    assert seqs == sorted(set(seqs))


def test_signing_round_trip_and_keys() -> None:
    secret = new_secret()
    assert len(secret_key(secret)) == 32
    assert secret_key("plain") == b"plain"
    with pytest.raises(ValueError):
        secret_key("whsec_***")
    body = json.dumps({"event": "task.completed"})
    headers = sign_headers("msg_1", body, [secret])
    assert verify_webhook(secret, headers, body) == {"event": "task.completed"}
    stale = sign_headers("msg_1", body, [secret], timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, stale, body)
    assert verify_webhook(secret, stale, body, tolerance_s=600)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, {"webhook-id": "msg_1"}, body)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("::ffff:10.0.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
    ],
)
def test_address_guard(address: str, public: bool) -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address(address)) is public


def test_url_syntax_guard() -> None:
    assert str(parse_target("https://hooks.example.com/x", allow_private=False))
    assert str(parse_target("http://127.0.0.1:8080/x", allow_private=True))
    for bad in ("gopher://example.com", "http:///nohost", "https://10.0.0.1/", "https://db.internal/hook"):
        with pytest.raises(ValidationFailed):
            parse_target(bad, allow_private=False)
