"""Event vocabularies: which event types exist, their stream kinds and webhook names.

The library names no event of its own services. Each service (and, later, each
extension) declares what it emits in its own module — the orchestrator in
``orchestrator/events.py``, the control center in ``control_center/events.py`` —
as one :class:`Vocabulary` value, and its app factory registers it with the
:class:`EventRegistry` of the bus it publishes on::

    from shared.events.registry import EventSpec, Kind, Vocabulary, status_webhooks

    PLUGIN = Kind("plugin", resource="plugins", action="read")
    VOCABULARY = Vocabulary(
        "my-extension",
        kinds=(PLUGIN,),
        events=(
            EventSpec("PluginLoaded", PLUGIN.name, webhooks=("plugin.loaded",)),
            EventSpec("PluginStatusChanged", PLUGIN.name, *status_webhooks("plugin", ("Ready", "Broken"))),
        ),
    )

    app[BUS].registry.register(VOCABULARY)  # at app creation, before the app starts

What consults the registry:

* the bus (:meth:`~shared.events.bus.EventBus.publish`) stamps each event with
  its kind (:meth:`EventRegistry.kind_of`); a type nobody declared is of kind
  :data:`DEFAULT_KIND` (``system``);
* the streams (``shared/events/streams.py``): a service's ``/ws`` and
  ``/events`` offer the kinds its own vocabulary declares (so each service
  alone still knows what it streams), each behind the permission its
  :class:`Kind` names, and accept those kinds only in ``?events=``; an event
  whose :attr:`EventSpec.revokes` says so ends the streams of the session or
  user it names (the control center's logouts and role changes);
* the webhooks (``shared/webhooks/catalogue.py``): the names a subscription
  may use, ``GET /webhooks/events`` and the OpenAPI enums are every registered
  vocabulary's :attr:`EventSpec.webhooks` in registration order, plus the
  webhooks' own ``webhook.test``; the outbox and the dispatcher map a
  published event to its name with :meth:`EventRegistry.webhook_name`.

Registering is all or nothing and refuses what would be ambiguous: an event
type, a webhook name or a vocabulary name that another vocabulary already
declares, a kind declared twice with different permissions, or an event of a
kind nobody declared (register after the vocabularies whose kinds you use).
Registering the same vocabulary again does nothing, so the composition root
may register every vocabulary of the product and each app factory its own:
``provisioning.server`` does exactly that, which is how the control center
knows the orchestrator's webhook names when it runs alone.

May import: nothing of the project (a leaf, so that services' declaration
modules stay importable by anyone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The kind of an event type no registered vocabulary declares (as ``system`` always was).
DEFAULT_KIND = "system"

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class VocabularyError(ValueError):
    """A vocabulary that cannot be registered (a duplicate, an undeclared kind, …)."""


@dataclass(frozen=True)
class Revocation:
    """Whose streams an event ends (4401): a session's, a user's, or both."""

    reason: str
    session_id: str | None = None
    user_id: str | None = None


WebhookNamer = Callable[[Mapping[str, Any]], str | None]
Revoker = Callable[[Mapping[str, Any]], Revocation | None]


@dataclass(frozen=True)
class Kind:
    """A stream kind (``?events=<name>``) and the permission a subscriber needs to read it."""

    name: str
    resource: str
    action: str = "read"

    @property
    def permission(self) -> tuple[str, str]:
        return self.resource, self.action


@dataclass(frozen=True)
class EventSpec:
    """One event type: its stream kind, and the webhook names it is sent as.

    ``webhooks`` lists every name the event can be sent as (what subscriptions
    may use); ``webhook_name`` picks one from the event's data when there are
    several (a status, a success flag), and may be left out when there is one.
    Only listed names ever go out. ``revokes`` says whose streams the event
    ends, if any.
    """

    type: str
    kind: str
    webhooks: tuple[str, ...] = ()
    webhook_name: WebhookNamer | None = None
    revokes: Revoker | None = None

    def __post_init__(self) -> None:
        if len(self.webhooks) > 1 and self.webhook_name is None:
            raise VocabularyError(f"{self.type} has several webhook names: say which one with webhook_name")
        if len(set(self.webhooks)) != len(self.webhooks):
            raise VocabularyError(f"{self.type} lists a webhook name twice")

    def name_for(self, data: Mapping[str, Any]) -> str | None:
        """The webhook name of one occurrence, or ``None`` when webhooks do not carry it."""
        if not self.webhooks:
            return None
        name = self.webhooks[0] if self.webhook_name is None else self.webhook_name(data)
        return name if name in self.webhooks else None


def status_name(status: Any) -> str:
    """``RollingBack`` -> ``rolling_back``: a status as it appears in a webhook name."""
    return _CAMEL.sub("_", str(status)).lower()


@dataclass(frozen=True)
class ByStatus:
    """``webhook_name`` of a status-change event: ``<family>.<status of its data>``
    (a value, so that equal declarations compare equal)."""

    family: str

    def __call__(self, data: Mapping[str, Any]) -> str:
        return f"{self.family}.{status_name(data.get('status', ''))}"


def status_webhooks(family: str, statuses: Iterable[Any]) -> tuple[tuple[str, ...], WebhookNamer]:
    """``webhooks`` and ``webhook_name`` for a status-change event: ``<family>.<status>``
    for each listed status, chosen by the ``status`` field of the event's data."""
    return tuple(f"{family}.{status_name(s)}" for s in statuses), ByStatus(family)


@dataclass(frozen=True)
class Vocabulary:
    """What one service or extension emits: the kinds its streams offer, and its event types."""

    name: str
    kinds: tuple[Kind, ...] = ()
    events: tuple[EventSpec, ...] = ()

    @property
    def kind_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.kinds)

    @property
    def webhook_names(self) -> tuple[str, ...]:
        return tuple(name for spec in self.events for name in spec.webhooks)

    def kind(self, name: str) -> Kind:
        for kind in self.kinds:
            if kind.name == name:
                return kind
        raise KeyError(name)


class EventRegistry:
    """The vocabularies registered with one bus (both services' in ``provisioning up``)."""

    def __init__(self) -> None:
        self._vocabularies: dict[str, Vocabulary] = {}
        self._events: dict[str, EventSpec] = {}
        self._owner: dict[str, str] = {}  # event type -> vocabulary name
        self._kinds: dict[str, Kind] = {}
        self._webhooks: dict[str, str] = {}  # webhook name -> event type

    def register(self, vocabulary: Vocabulary) -> None:
        """Add a vocabulary (again: nothing happens); ``VocabularyError`` if it clashes."""
        known = self._vocabularies.get(vocabulary.name)
        if known == vocabulary:
            return
        if known is not None:
            raise VocabularyError(f"another vocabulary named {vocabulary.name!r} is already registered")
        kinds = dict(self._kinds)
        for kind in vocabulary.kinds:
            other = kinds.get(kind.name)
            if other is not None and other != kind:
                raise VocabularyError(
                    f"{vocabulary.name}: kind {kind.name!r} is already declared with the permission "
                    f"{':'.join(other.permission)}, not {':'.join(kind.permission)}"
                )
            kinds[kind.name] = kind
        types: set[str] = set()
        names: dict[str, str] = {}
        for spec in vocabulary.events:
            owner = self._owner.get(spec.type)
            if owner is not None or spec.type in types:
                where = f"by {owner}" if owner is not None else "twice"
                raise VocabularyError(
                    f"{vocabulary.name}: event type {spec.type!r} is already declared {where}"
                )
            if spec.kind not in kinds:
                raise VocabularyError(
                    f"{vocabulary.name}: {spec.type} has the kind {spec.kind!r}, which no registered "
                    "vocabulary declares"
                )
            for name in spec.webhooks:
                claimed = self._webhooks.get(name) or names.get(name)
                if claimed is not None:
                    raise VocabularyError(
                        f"{vocabulary.name}: webhook name {name!r} of {spec.type} is already {claimed}'s"
                    )
                names[name] = spec.type
            types.add(spec.type)
        # Checked: now change everything at once.
        self._vocabularies[vocabulary.name] = vocabulary
        self._kinds = kinds
        for spec in vocabulary.events:
            self._events[spec.type] = spec
            self._owner[spec.type] = vocabulary.name
        self._webhooks.update(names)

    def registered(self, vocabulary: Vocabulary) -> bool:
        return self._vocabularies.get(vocabulary.name) == vocabulary

    @property
    def vocabularies(self) -> tuple[Vocabulary, ...]:
        """In registration order."""
        return tuple(self._vocabularies.values())

    def spec(self, event_type: str) -> EventSpec | None:
        return self._events.get(event_type)

    def kind_of(self, event_type: str) -> str:
        """The stream kind of an event type; :data:`DEFAULT_KIND` for one nobody declared."""
        spec = self._events.get(event_type)
        return spec.kind if spec is not None else DEFAULT_KIND

    def webhook_name(self, event_type: str, data: Mapping[str, Any]) -> str | None:
        """The webhook name of a published event, or ``None`` for events webhooks do not carry."""
        spec = self._events.get(event_type)
        return spec.name_for(data) if spec is not None else None

    @property
    def webhook_names(self) -> tuple[str, ...]:
        """Every declared webhook name: by vocabulary in registration order, then as declared."""
        return tuple(name for v in self._vocabularies.values() for name in v.webhook_names)

    def revocation(self, event_type: str, data: Mapping[str, Any]) -> Revocation | None:
        """Whose streams this event ends, if any."""
        spec = self._events.get(event_type)
        if spec is None or spec.revokes is None:
            return None
        return spec.revokes(data)
