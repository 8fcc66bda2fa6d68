"""``/webhooks``: register, change, rotate, test and inspect webhook subscriptions.

Handlers parse and shape (``control_center.views``); the rules live in
:class:`~shared.webhooks.WebhookService`, built once per app.
The event names come from the vocabularies registered with the app's bus (the
orchestrator's, registered here by the composition root even when the control
center runs alone; see shared/events/registry.py), so the models check them, and
the OpenAPI document lists them, against that registry rather than a fixed list.
Deliveries are sent by the orchestrator's dispatcher (one per process that runs
the orchestrator), which hears of every change here at once when both run in
one process, and within ``webhook_refresh_s`` otherwise.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, Field, ValidationInfo, WithJsonSchema

from control_center.keys import WEBHOOKS
from control_center.models import (
    DELIVERY,
    WEBHOOK_DELETED,
    WEBHOOK_EVENTS,
    WEBHOOK_VIEW,
    WEBHOOK_WITH_SECRET,
)
from control_center.views import delivery_view, webhook_view
from shared.security.actor import actor_of
from shared.security.audit import AUDIT_DETAILS
from shared.web.envelope import Counted, ok, paginated
from shared.web.keys import BUS
from shared.web.routing import Api, Model, OffsetPageQuery, PageQuery, array
from shared.webhooks import Catalogue, WebhookChange

# The OpenAPI document's enum of event patterns is the running catalogue's, put in
# place of this marker by :func:`document_event_patterns`.
_PATTERNS_MARKER = "x-webhook-event-patterns"


def catalogue_of(app: Any) -> Catalogue:
    """The webhook names of the app's bus (``app`` is the validation context ``read_body`` gives)."""
    if not isinstance(app, web.Application):
        raise TypeError("webhook events are checked against an application's catalogue: validate with it")
    return Catalogue(app[BUS].registry)


def _known_event(value: str, info: ValidationInfo) -> str:
    """What the catalogue accepts, as the model (and so the OpenAPI document) says it:
    an event name, a family such as task.*, or *."""
    if value not in catalogue_of(info.context).patterns:
        raise ValueError(
            f"unknown webhook event {value!r}; use names such as task.completed, batch.failed, "
            "a family such as task.*, or * (GET /webhooks/events lists them)"
        )
    return value


def document_event_patterns(app: web.Application, doc: dict[str, Any]) -> None:
    """The running catalogue's patterns as the enum of every event-pattern schema."""
    patterns = list(catalogue_of(app).patterns)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.pop(_PATTERNS_MARKER, None) is not None:
                node["enum"] = patterns
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


EventPattern = Annotated[
    str, AfterValidator(_known_event), WithJsonSchema({"type": "string", _PATTERNS_MARKER: True})
]
# http(s) URLs only.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"
WebhookUrl = Annotated[str, Field(min_length=1, max_length=2048, pattern=URL_PATTERN)]

api = Api()
TAGS = ("webhooks",)


class WebhookCreate(Model):
    """``POST /webhooks``."""

    url: WebhookUrl = Field(description="http(s) endpoint")
    events: list[EventPattern] = Field(min_length=1, max_length=64, description="event names, family.* or *")
    description: str = Field("", max_length=500)
    enabled: bool = True


class WebhookUpdate(Model):
    """``PUT /webhooks/{id}``: the fields to change."""

    url: WebhookUrl | None = None
    events: list[EventPattern] | None = Field(None, min_length=1, max_length=64)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = None


class DeliveryQuery(PageQuery):
    """``GET /webhooks/{id}/deliveries``: newest first, optionally by status."""

    status: Literal["pending", "delivered", "failed", "cancelled"] | None = None


def _audit(request: web.Request, **details: str) -> None:
    request[AUDIT_DETAILS] = {**request.get(AUDIT_DETAILS, {}), **details}


@api.route("GET", "/webhooks/events", resource="webhooks", action="read", tags=TAGS, response=WEBHOOK_EVENTS)
async def list_event_names(request: web.Request) -> web.Response:
    """The event names a webhook can subscribe to."""
    return ok({"events": list(catalogue_of(request.app).names), "patterns": ["<family>.*", "*"]})


@api.route(
    "GET",
    "/webhooks",
    resource="webhooks",
    action="read",
    query=OffsetPageQuery,
    tags=TAGS,
    response=array(WEBHOOK_VIEW),
)
async def list_webhooks(request: web.Request, query: OffsetPageQuery) -> web.Response:
    """Every webhook subscription (never their secrets)."""
    webhooks, total = await request.app[WEBHOOKS].list_webhooks(query.limit, query.offset)
    return paginated(request, [webhook_view(w) for w in webhooks], query, Counted(total))


@api.route(
    "POST",
    "/webhooks",
    resource="webhooks",
    action="create",
    body=WebhookCreate,
    tags=TAGS,
    status=201,
    response=WEBHOOK_WITH_SECRET,
    errors=(409,),
)
async def create_webhook(request: web.Request, body: WebhookCreate) -> web.Response:
    """Register a webhook; its ``whsec_`` secret is in this answer and nowhere else."""
    webhook, secret = await request.app[WEBHOOKS].create(
        actor_of(request), body.url, body.events, body.description, body.enabled
    )
    _audit(request, webhook_id=webhook.id)
    return ok(webhook_view(webhook, secret=secret), status=201)


@api.route("GET", "/webhooks/{id}", resource="webhooks", action="read", tags=TAGS, response=WEBHOOK_VIEW)
async def get_webhook(request: web.Request) -> web.Response:
    """One webhook subscription."""
    return ok(webhook_view(await request.app[WEBHOOKS].get(request.match_info["id"])))


@api.route(
    "PUT",
    "/webhooks/{id}",
    resource="webhooks",
    action="update",
    body=WebhookUpdate,
    tags=TAGS,
    response=WEBHOOK_VIEW,
    errors=(409,),
)
async def update_webhook(request: web.Request, body: WebhookUpdate) -> web.Response:
    """Change a webhook's url, events, description, or switch it on and off."""
    webhook_id = request.match_info["id"]
    updated = await request.app[WEBHOOKS].update(
        webhook_id,
        WebhookChange(url=body.url, events=body.events, description=body.description, enabled=body.enabled),
    )
    _audit(request, webhook_id=webhook_id)
    return ok(webhook_view(updated))


@api.route(
    "DELETE",
    "/webhooks/{id}",
    resource="webhooks",
    action="delete",
    tags=TAGS,
    response=WEBHOOK_DELETED,
    errors=(409,),
)
async def delete_webhook(request: web.Request) -> web.Response:
    """Remove a webhook; deliveries still waiting are cancelled, the log is kept."""
    webhook_id = request.match_info["id"]
    await request.app[WEBHOOKS].delete(webhook_id)
    _audit(request, webhook_id=webhook_id)
    return ok({"id": webhook_id, "deleted": True})


@api.route(
    "POST",
    "/webhooks/{id}/rotate-secret",
    resource="webhooks",
    action="update",
    tags=TAGS,
    response=WEBHOOK_WITH_SECRET,
    errors=(409,),
)
async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret, returned once; the old one keeps signing during the grace period."""
    webhook_id = request.match_info["id"]
    webhook, secret = await request.app[WEBHOOKS].rotate_secret(webhook_id)
    _audit(request, webhook_id=webhook_id)
    return ok(webhook_view(webhook, secret=secret))


@api.route(
    "POST",
    "/webhooks/{id}/test",
    resource="webhooks",
    action="update",
    tags=TAGS,
    status=202,
    response=DELIVERY,
    errors=(409,),
)
async def send_test(request: web.Request) -> web.Response:
    """Queue a ``webhook.test`` delivery; follow it in ``/deliveries``."""
    webhook_id = request.match_info["id"]
    delivery = await request.app[WEBHOOKS].send_test(actor_of(request), webhook_id)
    _audit(request, webhook_id=webhook_id, delivery_id=delivery["id"])
    return ok(delivery_view(delivery), status=202)


@api.route(
    "GET",
    "/webhooks/{id}/deliveries",
    resource="webhooks",
    action="read",
    query=DeliveryQuery,
    tags=TAGS,
    response=array(DELIVERY),
)
async def list_deliveries(request: web.Request, query: DeliveryQuery) -> web.Response:
    """A webhook's deliveries, newest first: status code, attempt, latency, error."""
    listing = await request.app[WEBHOOKS].deliveries(
        request.match_info["id"], query.status, query.limit, query.offset, query.cursor
    )
    return paginated(request, [delivery_view(r) for r in listing.items], query, listing)


@api.route(
    "GET",
    "/webhooks/{id}/deliveries/{delivery_id}",
    resource="webhooks",
    action="read",
    tags=TAGS,
    response=DELIVERY,
)
async def get_delivery(request: web.Request) -> web.Response:
    """One delivery with its payload and every attempt."""
    row, attempts = await request.app[WEBHOOKS].delivery(
        request.match_info["id"], request.match_info["delivery_id"]
    )
    return ok(delivery_view(row, attempts))


@api.route(
    "POST",
    "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    resource="webhooks",
    action="update",
    tags=TAGS,
    status=202,
    response=DELIVERY,
    errors=(409,),
)
async def redeliver(request: web.Request) -> web.Response:
    """Send a delivery again (same ``webhook-id``), after what is already waiting."""
    webhook_id, delivery_id = request.match_info["id"], request.match_info["delivery_id"]
    delivery = await request.app[WEBHOOKS].redeliver(webhook_id, delivery_id)
    _audit(request, webhook_id=webhook_id, delivery_id=delivery_id)
    return ok(delivery_view(delivery), status=202)
