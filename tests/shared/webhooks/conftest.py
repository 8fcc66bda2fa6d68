"""Both services on one store and one bus, and a scriptable webhook consumer
(see tests/helpers/events.py)."""

from tests.helpers.events import consumer, make_services, services  # noqa: F401  (fixtures)
