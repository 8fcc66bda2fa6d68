"""The OpenAPI 3.1 document, generated from the same route specs and models that
validate requests, and the standard routes of every service (``/health``,
``/metrics``, ``/openapi.json``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from shared.web.envelope import ok
from shared.web.keys import SERVICE_KEY
from shared.web.middlewares import add_response_headers
from shared.web.routing import NAMED_SCHEMAS, STR, Api, JsonSchema, OffsetPageQuery, ResponseSchema, RouteSpec

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)

ERROR_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "success": {"const": False},
        "error": {"type": "string", "description": "what went wrong, for a human"},
        "code": {"type": "string", "description": "a stable machine-readable code"},
        "details": {"type": "object", "description": "e.g. fields[] naming each bad field"},
    },
    "required": ["success", "error", "code"],
    "additionalProperties": False,
}
# What every list answers beside its page (shared/web/envelope.py, ``paginated``).
PAGE_HEADERS: dict[str, Any] = {
    "X-Limit": {"description": "the page size used", "schema": {"type": "integer"}},
    "X-Offset": {"description": "the offset used", "schema": {"type": "integer"}},
    "X-Total-Count": {
        "description": "how many items match in all; absent when no counter follows the filters",
        "schema": {"type": "integer"},
    },
    "Link": {
        "description": (
            '<…?cursor=…&limit=…>; rel="next" while there is a next page (its cursor costs '
            'nothing, an offset O(offset)); <…?offset=…>; rel="prev" when paging by offset'
        ),
        "schema": {"type": "string"},
    },
}

ERROR_DESCRIPTIONS = {
    400: "malformed request (not JSON, bad header, parameter or body)",
    401: "missing, invalid, expired or revoked credentials",
    403: "the policy does not allow this",
    404: "no such resource",
    406: "an API version this server does not speak (Accept)",
    409: "conflicts with the resource's current state",
    413: "request body larger than the limit",
    415: "body not sent as application/json",
    422: "a field or parameter is invalid (details.fields names each)",
    429: "rate limit exceeded (Retry-After)",
    503: "the store is unavailable; retry later",
}
# Routes that answer without touching the store (so never 503).
_STORELESS = {"/health", "/metrics", "/openapi.json"}


def error_statuses(spec: RouteSpec) -> list[int]:
    """Every error status the route can answer: those of its kind, plus its own ``errors``."""
    codes = {400, 406, *spec.errors}
    if not spec.public:
        codes |= {401, 403, 429}
    if spec.path not in _STORELESS:
        codes.add(503)
    if spec.body is not None:
        codes |= {413, 415, 422}
    if spec.query is not None:
        codes.add(422)
    if "{" in spec.path:
        codes.add(404)
    return sorted(codes)


def _models_of(api: Api) -> Iterator[tuple[type[BaseModel], JsonSchemaMode]]:
    for spec in api.specs:
        for m in (spec.body, spec.query):
            if m is not None:
                yield m, "validation"
        for schema in (spec.response, *(s for _, s in spec.alternatives)):
            if isinstance(schema, type):
                yield schema, "serialization"


def _query_schema(schema: JsonSchema) -> JsonSchema:
    """A query parameter is absent rather than null: drop ``null`` and the ``None`` default."""
    out = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    variants = out.get("anyOf")
    if isinstance(variants, list):
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) == 1:
            del out["anyOf"]
            out.update(kept[0])
        else:
            out["anyOf"] = kept
    return out


def _named_refs(value: Any, found: dict[str, JsonSchema]) -> None:
    """Collect the ``named`` schemas ``value`` refers to, transitively."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name in NAMED_SCHEMAS and name not in found:
                found[name] = NAMED_SCHEMAS[name]
                _named_refs(NAMED_SCHEMAS[name], found)
        for item in value.values():
            _named_refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _named_refs(item, found)


def openapi_document(
    api: Api,
    title: str,
    version: str = "1.0.0",
    customize: Callable[[JsonSchema], None] | None = None,
) -> JsonSchema:
    """OpenAPI 3.1 generated from the same models that validate requests and the response
    schemas declared on each route: every status a route can answer, each with a schema."""
    from pydantic.json_schema import models_json_schema

    models = list(dict.fromkeys(_models_of(api)))
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, JsonSchema] = defs.get("$defs", {})

    def schema_of(value: ResponseSchema, mode: JsonSchemaMode) -> JsonSchema:
        return refs[(value, mode)] if isinstance(value, type) else value

    def component(model: type[BaseModel]) -> JsonSchema:
        ref = refs[(model, "validation")]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]

    def envelope(data: JsonSchema) -> JsonSchema:
        return {
            "type": "object",
            "properties": {"success": {"const": True}, "data": data},
            "required": ["success", "data"],
            "additionalProperties": False,
        }

    def success(value: ResponseSchema, raw: bool) -> JsonSchema:
        data = schema_of(value, "serialization")
        return {
            "description": "success",
            "content": {"application/json": {"schema": data if raw else envelope(data)}},
        }

    paths: dict[str, dict[str, Any]] = {}
    for spec in api.specs:
        responses: dict[str, Any] = {}
        if spec.upgrade:
            responses["101"] = {"description": "Switching Protocols: the WebSocket is open"}
        else:
            ok_response: JsonSchema = {"description": "success", "content": {}}
            if spec.response is not None:
                ok_response = success(spec.response, spec.raw)
            for media_type, media_object in spec.media:
                ok_response["content"][media_type] = media_object
            if isinstance(spec.query, type) and issubclass(spec.query, OffsetPageQuery):
                ok_response["headers"] = PAGE_HEADERS
            responses[str(spec.success_status)] = ok_response
        for status, value in spec.alternatives:
            responses[str(status)] = success(value, spec.raw)
        for status in error_statuses(spec):
            responses[str(status)] = {
                "description": ERROR_DESCRIPTIONS.get(status, "error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        op: dict[str, Any] = {
            "summary": spec.summary or f"{spec.method} {spec.path}",
            "operationId": f"{spec.method.lower()}_{spec.handler.__name__}",
            "tags": list(spec.tags),
            "responses": responses,
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", spec.path)
        ]
        if spec.query is not None:
            qschema = component(spec.query)
            for name, prop in qschema.get("properties", {}).items():
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in qschema.get("required", []),
                        "schema": _query_schema(prop),
                    }
                )
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {
                # An empty body is read as {}: it is optional when {} is a valid body.
                "required": bool(component(spec.body).get("required")),
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
            }
        if spec.public:
            op["security"] = []
        else:
            op["x-permission"] = {"resource": spec.resource, "action": spec.action}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    found: dict[str, JsonSchema] = {}
    _named_refs(paths, found)
    schemas.update(found)
    schemas["Error"] = ERROR_SCHEMA
    doc: JsonSchema = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }
    if customize is not None:
        customize(doc)
    return doc


PROMETHEUS_TEXT = "text/plain"  # Prometheus text exposition format (version in the parameters)


def metrics_response(request: web.Request) -> web.Response:
    """The service's Prometheus text, behind ``Authorization: Bearer <metrics_token>`` when
    one is set (``/metrics``, and ``/ext/observability/metrics`` on the orchestrator)."""
    import hmac

    from shared.errors import Unauthorized
    from shared.metrics import render
    from shared.web.keys import SETTINGS

    settings = request.app.get(SETTINGS)
    expected = settings.metrics_token if settings is not None else ""
    if expected:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            add_response_headers(request, {"WWW-Authenticate": 'Bearer realm="metrics"'})
            raise Unauthorized(f"{request.path} needs Authorization: Bearer <the metrics token>")
    body, ctype = render(request.app.get(SERVICE_KEY, "app"))
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


def add_standard_routes(
    api: Api,
    *,
    title: str,
    health: Callable[[web.Request], Any],
    customize: Callable[[web.Request, JsonSchema], None] | None = None,
) -> None:
    """``/health``, ``/metrics`` and ``/openapi.json``: public on every service.
    ``customize`` adjusts the document to the running settings (e.g. password length)."""

    @api.route("GET", "/health", public=True, summary="Liveness", tags=("monitoring",), response=STR)
    async def get_health(request: web.Request) -> web.Response:
        return ok(await health(request))

    @api.route(
        "GET",
        "/metrics",
        public=True,
        summary="Prometheus metrics",
        tags=("monitoring",),
        media={PROMETHEUS_TEXT: {"schema": {"type": "string", "description": "Prometheus text format"}}},
        errors=(401,),  # only when PROVISIONING_METRICS_TOKEN is set
    )
    async def get_metrics(request: web.Request) -> web.Response:
        """This service's metrics; behind ``Authorization: Bearer <metrics_token>`` when one is set."""
        return metrics_response(request)

    @api.route(
        "GET",
        "/openapi.json",
        public=True,
        summary="OpenAPI 3.1",
        tags=("meta",),
        response={"type": "object", "required": ["openapi", "info", "paths"]},
        raw=True,
    )
    async def get_openapi(request: web.Request) -> web.Response:
        adjust = None
        if customize is not None:

            def adjust(doc: JsonSchema) -> None:
                assert customize is not None
                customize(request, doc)

        return web.json_response(openapi_document(api, title, customize=adjust))
