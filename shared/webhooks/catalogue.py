"""Webhook event names, how bus events map to them, and subscription patterns.

Bus events carry a type and data; webhook consumers subscribe to dotted
lower-case names (``<family>.<what>``, often ``<family>.<status>``), to a
family (``<family>.*``) or to everything (``*``).

The names are not listed here: each service declares the names of the events
it emits in its vocabulary (shared/events/registry.py), and a
:class:`Catalogue` is what the vocabularies registered with a bus declare, plus
the webhooks' own :data:`TEST_EVENT`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.errors import ValidationFailed
from shared.events.registry import EventRegistry

TEST_EVENT = "webhook.test"


class Catalogue:
    """The webhook names of one bus's registered vocabularies, read when asked (a
    vocabulary registered later is in it at once)."""

    def __init__(self, registry: EventRegistry) -> None:
        self.registry = registry

    @property
    def names(self) -> tuple[str, ...]:
        """Every name a subscription may use, in the order ``GET /webhooks/events`` lists them."""
        return (*self.registry.webhook_names, TEST_EVENT)

    @property
    def patterns(self) -> tuple[str, ...]:
        """Every accepted pattern: ``*``, each ``family.*``, each name."""
        names = self.names
        return ("*", *sorted({f"{n.split('.', 1)[0]}.*" for n in names}), *names)

    def name_of(self, event_type: str, data: dict[str, Any]) -> str | None:
        """The webhook name of a bus event, or ``None`` for events webhooks do not carry.

        Only catalogued names come out: what no vocabulary declares is never sent.
        """
        return self.registry.webhook_name(event_type, data)

    def validate(self, events: Iterable[str]) -> list[str]:
        """Known names, ``family.*`` or ``*``; 422 naming the unknown ones."""
        return validate_patterns(events, self.names)


def matches(patterns: Iterable[str], name: str) -> bool:
    """Whether a subscription's patterns take an event name."""
    family = name.split(".", 1)[0]
    for pattern in patterns:
        if pattern in ("*", name) or pattern == f"{family}.*":
            return True
    return False


def validate_patterns(events: Iterable[str], names: tuple[str, ...]) -> list[str]:
    """Names among ``names``, ``family.*`` of one of them, or ``*``; 422 naming the unknown ones."""
    families = {name.split(".", 1)[0] for name in names}  # ``names`` is never empty (webhook.test)
    out: list[str] = []
    unknown: list[str] = []
    for raw in events:
        pattern = raw.strip().lower()
        known = pattern == "*" or pattern in names or (pattern.endswith(".*") and pattern[:-2] in families)
        if not known:
            unknown.append(raw)
        elif pattern not in out:
            out.append(pattern)
    if unknown:
        raise ValidationFailed(
            f"unknown webhook events: {', '.join(unknown)}; use names such as {', '.join(names[:3])}, "
            f"a family such as {names[0].split('.', 1)[0]}.*, or * (GET /webhooks/events lists them)",
            details={
                "fields": [{"field": "events", "message": "unknown event", "unknown": unknown}],
                "known": list(names),
            },
        )
    if not out:
        raise ValidationFailed(
            "a webhook needs at least one event",
            details={"fields": [{"field": "events", "message": "empty"}]},
        )
    return out
