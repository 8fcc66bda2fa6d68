"""The API conventions both services share.

Envelope ``{"success": …, "data": …}``, the error tree mapped to status codes,
request validation against pydantic models (400 malformed, 422 per field),
``Accept`` versioning (406), body size limit (413), pagination headers,
``X-Request-ID`` and request metrics. Routes are declared once with
:class:`Api`, which also feeds the auth middleware and the OpenAPI document.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import JsonSchemaMode

from shared.errors import (
    BadRequest,
    NotAcceptable,
    PayloadTooLarge,
    ProvisioningError,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Awaitable[web.StreamResponse]]
API_VERSION = 1
_VND = re.compile(r"application/vnd\.provisioning\.v(\d+)\+json")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
# Far beyond any real list, and well inside the store's positive 32-bit START clause.
MAX_OFFSET = 10_000_000


class Model(BaseModel):
    """Base for request models: unknown fields are kept out, types are strict enough."""

    model_config = ConfigDict(extra="forbid")


def absent_not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of an optional field that is never null: absent is its default."""
    schema.pop("default", None)


def choice(values: Sequence[str], what: str) -> tuple[AfterValidator, WithJsonSchema]:
    """Metadata for ``Annotated[str, *choice(…)]``: a string that must be one of ``values``,
    an ``enum`` in the document, and a 422 that quotes the value sent and lists the choices."""

    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(values)}")
        return value

    return AfterValidator(check), WithJsonSchema({"type": "string", "enum": list(values)})


class PageQuery(Model):
    """``limit`` (default 50, max 1000) and ``offset`` (max 10,000,000) for list endpoints."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


# -- response schemas ----------------------------------------------------------------
# What a route answers is declared beside it (``Api.route(response=…)``): a pydantic
# model or a JSON schema of the success envelope's ``data``. These helpers keep the
# JSON schemas short; ``named`` ones become ``components.schemas`` entries.

JsonSchema = dict[str, Any]
ResponseSchema = type[BaseModel] | JsonSchema
STR: JsonSchema = {"type": "string"}
INT: JsonSchema = {"type": "integer"}
NUM: JsonSchema = {"type": "number"}
BOOL: JsonSchema = {"type": "boolean"}
DATETIME: JsonSchema = {"type": "string", "format": "date-time"}
ANY: JsonSchema = {}
OBJECT: JsonSchema = {"type": "object"}
MESSAGE: JsonSchema = {"type": "string", "description": "a human-readable confirmation"}
_NAMED: dict[str, JsonSchema] = {}


def nullable(schema: JsonSchema) -> JsonSchema:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: JsonSchema) -> JsonSchema:
    return {"type": "array", "items": items}


def obj(
    properties: Mapping[str, JsonSchema], *, optional: Sequence[str] = (), extra: bool = False
) -> JsonSchema:
    """An object with these properties, all present unless ``optional``; no others unless ``extra``."""
    schema: JsonSchema = {
        "type": "object",
        "properties": dict(properties),
        "required": [name for name in properties if name not in optional],
    }
    if not extra:
        schema["additionalProperties"] = False
    return schema


def named(name: str, schema: JsonSchema) -> JsonSchema:
    """Register ``schema`` as ``components.schemas[name]``; returns a reference to it."""
    _NAMED[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class RouteSpec:
    """What a route is: its path, models, and the resource/action policies check."""

    method: str
    path: str
    handler: Handler
    resource: str | None
    action: str | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    public: bool = False
    summary: str = ""
    tags: tuple[str, ...] = ()
    success_status: int = 200
    # The success envelope's ``data`` (or, with ``raw``, the whole JSON body).
    response: ResponseSchema | None = None
    # Other success statuses and their ``data`` (e.g. 200 for a check-mode submission).
    alternatives: tuple[tuple[int, ResponseSchema], ...] = ()
    # Other media types of the success status: (media type, OpenAPI media type object).
    media: tuple[tuple[str, JsonSchema], ...] = ()
    raw: bool = False
    # Error statuses beyond those every route of its kind can answer (see error_statuses).
    errors: tuple[int, ...] = ()
    upgrade: bool = False  # a WebSocket: 101 Switching Protocols, no body


SPEC_ATTR = "__route_spec__"


@dataclass
class Api:
    """A route table that remembers each route's spec."""

    specs: list[RouteSpec] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        resource: str | None = None,
        action: str | None = None,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        public: bool = False,
        summary: str = "",
        tags: Sequence[str] = (),
        status: int = 200,
        response: ResponseSchema | None = None,
        alternatives: Mapping[int, ResponseSchema] | None = None,
        media: Mapping[str, JsonSchema] | None = None,
        raw: bool = False,
        errors: Sequence[int] = (),
        upgrade: bool = False,
    ) -> Callable[[Handler], Handler]:
        if not public and (resource is None or action is None):
            raise ValueError(f"{method} {path}: a non-public route needs a resource and action")
        if response is None and not media and not upgrade:
            raise ValueError(f"{method} {path}: declare what the route answers (response= or media=)")

        def wrap(fn: Handler) -> Handler:
            async def handler(request: web.Request) -> web.StreamResponse:
                args: list[Any] = []
                if body is not None:
                    args.append(await read_body(request, body))
                if query is not None:
                    args.append(read_query(request, query))
                return await fn(request, *args)

            spec = RouteSpec(
                method,
                path,
                handler,
                resource,
                action,
                body,
                query,
                public,
                summary or (fn.__doc__ or "").strip().split("\n")[0],
                tuple(tags),
                status,
                response,
                tuple(sorted((alternatives or {}).items())),
                tuple((media or {}).items()),
                raw,
                tuple(errors),
                upgrade,
            )
            setattr(handler, SPEC_ATTR, spec)
            handler.__name__ = fn.__name__
            self.specs.append(spec)
            return fn

        return wrap

    def include(self, other: Api) -> None:
        self.specs.extend(other.specs)

    def register(self, app: web.Application) -> None:
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, spec.handler)


def route_spec(request: web.Request) -> RouteSpec | None:
    """The spec of the route that matched this request, if any."""
    handler = request.match_info.handler
    spec = getattr(handler, SPEC_ATTR, None)
    return spec if isinstance(spec, RouteSpec) else None


# -- responses -----------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def ok(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """The success envelope."""
    return web.json_response({"success": True, "data": data}, status=status, headers=headers, dumps=_dumps)


def error_response(
    status: int, message: str, code: str, details: dict[str, Any] | None = None
) -> web.Response:
    """The error envelope."""
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=status, dumps=_dumps)


def paginated(request: web.Request, items: list[Any], total: int, limit: int, offset: int) -> web.Response:
    """A list response with ``X-Total-Count``, ``X-Limit``, ``X-Offset`` and ``Link``."""
    headers = {"X-Total-Count": str(total), "X-Limit": str(limit), "X-Offset": str(offset)}
    links = []
    if offset + limit < total:
        nxt = request.rel_url.update_query(offset=offset + limit, limit=limit)
        links.append(f'<{nxt}>; rel="next"')
    if offset > 0:
        prev = request.rel_url.update_query(offset=max(0, offset - limit), limit=limit)
        links.append(f'<{prev}>; rel="prev"')
    if links:
        headers["Link"] = ", ".join(links)
    return ok(items, headers=headers)


# -- request parsing -------------------------------------------------------------


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append({"field": loc, "message": err["msg"], "type": err["type"]})
    return out


def validation_failed(exc: ValidationError, where: str) -> ValidationFailed:
    fields = _field_errors(exc)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:10])
    return ValidationFailed(f"invalid {where}: {summary}", details={"fields": fields})


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 415/400 for what is not JSON, 422 naming bad fields."""
    ctype = request.content_type
    if (
        request.can_read_body
        and ctype not in ("application/json", "application/octet-stream", "")
        and not ctype.endswith("+json")
    ):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"request body is larger than the limit of {request.client_max_size} bytes",
            details={"limit_bytes": request.client_max_size},
        ) from exc
    if not raw:  # no body: as {} (whitespace alone is not JSON, and is a 400)
        raw = b"{}"
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        # Strict JSON validation: "5" is not an integer and true is not 1.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_failed(exc, "request body") from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """Validate query parameters against a model (422 naming each bad one)."""
    values: dict[str, Any] = {}
    for key in request.query:
        got = request.query.getall(key)
        values[key] = got[0] if len(got) == 1 else got
    known = set(model.model_fields)
    values = {k: v for k, v in values.items() if k in known or k not in _IGNORED_QUERY}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_failed(exc, "query parameters") from exc


_IGNORED_QUERY = {"token", "_"}


# -- middlewares -------------------------------------------------------------------

SERVICE_KEY = web.AppKey("service_name", str)
REQUEST_ID = web.RequestKey("request_id", str)
# Headers any layer wants on the response, error responses included (e.g. X-RateLimit-*).
EXTRA_HEADERS = web.RequestKey("extra_headers", dict[str, str])
# Set by a handler that accepted a workflow submission (the batch rate limit counts these).
SUBMITTED = web.RequestKey("submitted", bool)


def add_response_headers(request: web.Request, headers: dict[str, str]) -> None:
    """Ask for headers on this request's response, whatever the outcome."""
    request.setdefault(EXTRA_HEADERS, {}).update(headers)


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """X-Request-ID, metrics by route template, and the error envelope for everything."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if re.fullmatch(r"[A-Za-z0-9._-]{1,128}", incoming) else str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ProvisioningError as exc:
        response = error_response(exc.status, exc.message, exc.code, exc.details)
        if isinstance(exc, ProvisioningError) and exc.status == 429:
            response.headers.update(exc.details.get("headers", {}))
    except web.HTTPRequestEntityTooLarge:
        response = error_response(
            413,
            f"request body is larger than the limit of {request.client_max_size} bytes",
            "payload_too_large",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"no such endpoint: {request.method} {request.path}",
            405: f"method {request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        response = error_response(exc.status, message, exc.reason.lower().replace(" ", "_"))
        if "Allow" in exc.headers:  # 405: RFC 9110 asks for the methods the resource takes
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id, "path": request.path})
        response = error_response(
            500,
            f"internal error; quote request id {request_id} when reporting it",
            "internal_error",
        )
    response.headers["X-Request-ID"] = request_id
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        response.headers.setdefault(name, value)
    elapsed = time.perf_counter() - started
    info = request.match_info.route.resource
    route = info.canonical if info is not None else "unmatched"
    service = request.app.get(SERVICE_KEY, "app")
    HTTP_REQUESTS.labels(service, route, request.method, str(response.status)).inc()
    HTTP_LATENCY.labels(service, route, request.method).observe(elapsed)
    return response


@web.middleware
async def version_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``Accept: application/vnd.provisioning.v1+json`` is v1; any other version is a 406."""
    accept = request.headers.get("Accept", "")
    for match in _VND.finditer(accept):
        if int(match.group(1)) != API_VERSION:
            raise NotAcceptable(
                f"API version v{match.group(1)} is not supported; this server speaks "
                f"v{API_VERSION} (Accept: application/vnd.provisioning.v{API_VERSION}+json)",
                details={"supported": [f"v{API_VERSION}"]},
            )
    return await handler(request)


# -- standard routes -----------------------------------------------------------------


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
            if name in _NAMED and name not in found:
                found[name] = _NAMED[name]
                _named_refs(_NAMED[name], found)
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


def add_standard_routes(
    api: Api,
    *,
    title: str,
    health: Callable[[web.Request], Any],
    customize: Callable[[web.Request, JsonSchema], None] | None = None,
) -> None:
    """``/health``, ``/metrics`` and ``/openapi.json``: public on every service.
    ``customize`` adjusts the document to the running settings (e.g. password length)."""
    from shared.metrics import render

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
    )
    async def get_metrics(request: web.Request) -> web.Response:
        body, ctype = render()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = ctype
        return resp

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
