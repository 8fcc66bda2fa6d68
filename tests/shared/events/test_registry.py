"""The event registry: vocabularies registered once and consistently, kinds and webhook
names looked up as the bus, the streams and the webhooks need them; and the two
services' vocabularies saying exactly what the library used to hard-code."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_center import events as cc_events
from orchestrator import events as orch_events
from provisioning.server import VOCABULARIES, product_registry
from shared.errors import ValidationFailed
from shared.events.bus import EventBus
from shared.events.registry import (
    DEFAULT_KIND,
    EventRegistry,
    EventSpec,
    Kind,
    Revocation,
    Vocabulary,
    VocabularyError,
    status_webhooks,
)
from shared.events.streams import StreamConfig, requested_kinds
from shared.webhooks.catalogue import TEST_EVENT, Catalogue

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = Kind("plugin", "plugins", "read")


def plugin_vocabulary(name: str = "ext", *events: EventSpec) -> Vocabulary:
    default = (
        EventSpec("PluginLoaded", "plugin", webhooks=("plugin.loaded",)),
        EventSpec("PluginStatusChanged", "plugin", *status_webhooks("plugin", ("Ready", "SlowStart"))),
    )
    return Vocabulary(name, kinds=(PLUGIN,), events=events or default)


# -- registering -------------------------------------------------------------------------------


def test_a_registered_vocabulary_gives_kinds_and_webhook_names() -> None:
    registry = EventRegistry()
    vocabulary = plugin_vocabulary()
    registry.register(vocabulary)
    assert registry.registered(vocabulary) and registry.vocabularies == (vocabulary,)
    assert registry.kind_of("PluginLoaded") == "plugin"
    assert registry.webhook_name("PluginLoaded", {}) == "plugin.loaded"
    assert registry.webhook_name("PluginStatusChanged", {"status": "SlowStart"}) == "plugin.slow_start"
    # Only declared names go out: a status nobody listed is not sent.
    assert registry.webhook_name("PluginStatusChanged", {"status": "Gone"}) is None
    assert registry.webhook_name("Unknown", {}) is None
    assert registry.webhook_names == ("plugin.loaded", "plugin.ready", "plugin.slow_start")
    assert Catalogue(registry).names == (*registry.webhook_names, TEST_EVENT)
    assert Catalogue(registry).patterns[:3] == ("*", "plugin.*", "webhook.*")


def test_registering_the_same_vocabulary_again_changes_nothing() -> None:
    registry = EventRegistry()
    registry.register(plugin_vocabulary())
    registry.register(plugin_vocabulary())  # equal values: the composition root and the app factory
    assert len(registry.vocabularies) == 1
    assert registry.webhook_names == ("plugin.loaded", "plugin.ready", "plugin.slow_start")


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (
            plugin_vocabulary("other", EventSpec("PluginLoaded", "plugin")),
            "'PluginLoaded' is already declared by ext",
        ),
        (
            plugin_vocabulary("other", EventSpec("Other", "plugin", webhooks=("plugin.loaded",))),
            "'plugin.loaded' of Other is already PluginLoaded's",
        ),
        (plugin_vocabulary("ext", EventSpec("Different", "plugin")), "named 'ext' is already registered"),
        (
            Vocabulary("other", kinds=(Kind("plugin", "admin", "write"),)),
            "'plugin' is already declared with the permission plugins:read, not admin:write",
        ),
        (
            Vocabulary("other", events=(EventSpec("Mistyped", "plugins"),)),
            "kind 'plugins', which no registered",
        ),
        (
            Vocabulary(
                "other", kinds=(PLUGIN,), events=(EventSpec("Twice", "plugin"), EventSpec("Twice", "plugin"))
            ),
            "'Twice' is already declared twice",
        ),
        (
            Vocabulary(
                "other",
                kinds=(PLUGIN,),
                events=(
                    EventSpec("A", "plugin", webhooks=("plugin.same",)),
                    EventSpec("B", "plugin", webhooks=("plugin.same",)),
                ),
            ),
            "'plugin.same' of B is already A's",
        ),
    ],
)
def test_what_would_be_ambiguous_is_refused_and_nothing_is_half_registered(
    second: Vocabulary, message: str
) -> None:
    registry = EventRegistry()
    registry.register(plugin_vocabulary())
    before = (registry.vocabularies, registry.webhook_names, registry.kind_of("Twice"), registry.kind_of("A"))
    with pytest.raises(VocabularyError, match=message):
        registry.register(second)
    after = (registry.vocabularies, registry.webhook_names, registry.kind_of("Twice"), registry.kind_of("A"))
    assert after == before == ((plugin_vocabulary(),), before[1], DEFAULT_KIND, DEFAULT_KIND)


def test_a_kind_may_be_declared_again_alike_and_used_by_a_later_vocabulary() -> None:
    registry = EventRegistry()
    registry.register(plugin_vocabulary())
    registry.register(Vocabulary("again", kinds=(PLUGIN,), events=(EventSpec("Again", "plugin"),)))
    registry.register(Vocabulary("user", events=(EventSpec("Uses", "plugin"),)))  # declares no kind itself
    assert registry.kind_of("Again") == registry.kind_of("Uses") == "plugin"


def test_an_event_spec_with_several_names_must_say_which() -> None:
    with pytest.raises(VocabularyError, match="several webhook names"):
        EventSpec("X", "plugin", webhooks=("x.a", "x.b"))
    with pytest.raises(VocabularyError, match="twice"):
        EventSpec("X", "plugin", webhooks=("x.a", "x.a"), webhook_name=lambda data: "x.a")


# -- the fallback, the bus -----------------------------------------------------------------------


def test_a_type_nobody_declared_is_a_system_event_as_before() -> None:
    assert DEFAULT_KIND == "system"
    assert EventRegistry().kind_of("SomethingNew") == "system"
    bus = EventBus()
    assert bus.publish("SomethingNew", {}).kind == "system"
    bus.registry.register(plugin_vocabulary())
    event = bus.publish("PluginLoaded", {})
    assert event.kind == "plugin" and "kind" not in event.to_json()  # not on the wire


# -- per service -------------------------------------------------------------------------------


def test_each_service_streams_the_kinds_it_declares_behind_the_same_permissions() -> None:
    orch = StreamConfig(orch_events.VOCABULARY, resource="workflows")
    cc = StreamConfig(cc_events.VOCABULARY, resource="audit")
    assert orch.kinds == ("task", "batch", "rollback", "system")
    assert cc.kinds == ("security",)
    permissions = {k: c.permission(k) for c in (orch, cc) for k in c.kinds}
    assert permissions == {
        "task": ("tasks", "read"),
        "batch": ("batch", "read"),
        "rollback": ("rollback", "read"),
        "system": ("state", "read"),
        "security": ("audit", "read"),
    }
    assert requested_kinds("batch,task", orch.kinds) == ("batch", "task")
    with pytest.raises(ValidationFailed, match="this service streams security"):
        requested_kinds("task", cc.kinds)


# What shared/events/bus.py's EVENT_KINDS said before the services declared their own.
OLD_EVENT_KINDS = {
    "TaskStatusChanged": "task",
    "OperationProgress": "task",
    "BatchStatusChanged": "batch",
    "WorkflowSubmitted": "batch",
    "CheckpointCreated": "rollback",
    "RollbackStarted": "rollback",
    "RollbackCompleted": "rollback",
    "StateRestored": "rollback",
    **{
        t: "security"
        for t in (
            "UserLogin UserLogout LoginFailed AccountLocked MfaEnrolled MfaChanged TokenRefreshed "
            "TokenReuseDetected SessionRevoked UserCreated UserChanged UserDeleted PolicyChanged "
            "AuditLogged WebhookChanged"
        ).split()
    },
}
# And shared/webhooks/catalogue.py's EVENT_NAMES, in its order.
OLD_EVENT_NAMES = (
    *(f"task.{s}" for s in ("pending", "running", "completed", "failed", "cancelled", "rolling_back")),
    *("task.rolled_back", "task.progress"),
    *(f"batch.{s}" for s in ("running", "completed", "failed", "cancelled")),
    *("checkpoint.created", "rollback.started", "rollback.completed", "rollback.failed", "state.restored"),
    "webhook.test",
)


def test_the_services_declare_what_the_library_used_to_hard_code() -> None:
    registry = product_registry()
    declared = {spec.type: spec.kind for v in registry.vocabularies for spec in v.events}
    assert declared == OLD_EVENT_KINDS
    assert Catalogue(registry).names == OLD_EVENT_NAMES
    assert {str(t) for t in orch_events.EventType} | {str(t) for t in cc_events.EventType} == set(declared)
    # Registered in the other order (the test fixtures create the control center first), alike.
    reverse = EventRegistry()
    for vocabulary in reversed(VOCABULARIES):
        reverse.register(vocabulary)
    assert Catalogue(reverse).names == OLD_EVENT_NAMES


def test_the_control_center_declares_which_events_end_streams() -> None:
    registry = product_registry()
    revoked = {"session_id": "s1", "user_id": "u1", "reason": "logout"}
    assert registry.revocation("SessionRevoked", revoked) == Revocation("logout", session_id="s1")
    changed = {"user_id": "u1", "change": "roles", "revoked": True}
    assert registry.revocation("UserChanged", changed) == Revocation("roles", user_id="u1")
    assert registry.revocation("UserChanged", {"user_id": "u1", "change": "password_changed"}) is None
    assert registry.revocation("TaskStatusChanged", revoked) is None


def test_nothing_in_shared_names_a_services_event() -> None:
    # WebhookChanged is the webhooks' own event (shared/webhooks publishes it).
    types = {str(t) for t in orch_events.EventType} | {str(t) for t in cc_events.EventType}
    names = set(Catalogue(product_registry()).names) - {TEST_EVENT}
    owned = {"WebhookChanged"}
    found = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        text = path.read_text()
        found += [f"{path.name}: {word}" for word in sorted((types - owned) | names) if word in text]
    assert not found
