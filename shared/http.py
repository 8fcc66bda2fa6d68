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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class Model(BaseModel):
    """Base for request models: unknown fields are kept out, types are strict enough."""

    model_config = ConfigDict(extra="forbid")


class PageQuery(Model):
    """``limit`` (default 50, max 1000) and ``offset`` for list endpoints."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0)


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
    ) -> Callable[[Handler], Handler]:
        if not public and (resource is None or action is None):
            raise ValueError(f"{method} {path}: a non-public route needs a resource and action")

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
    if not raw.strip():
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


def openapi_document(api: Api, title: str, version: str = "1.0.0") -> dict[str, Any]:
    """OpenAPI 3.1 generated from the same models that validate requests."""
    from pydantic.json_schema import models_json_schema

    models: list[type[BaseModel]] = []
    for spec in api.specs:
        for m in (spec.body, spec.query):
            if m is not None and m not in models:
                models.append(m)
    _, defs = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for spec in api.specs:
        op: dict[str, Any] = {
            "summary": spec.summary or f"{spec.method} {spec.path}",
            "operationId": f"{spec.method.lower()}_{spec.handler.__name__}",
            "tags": list(spec.tags),
            "responses": {
                str(spec.success_status): {"description": "success envelope"},
                "default": {
                    "description": "error envelope",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", spec.path)
        ]
        if spec.query is not None:
            qschema = spec.query.model_json_schema()
            for name, prop in qschema.get("properties", {}).items():
                params.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in qschema.get("required", []),
                        "schema": prop,
                    }
                )
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{spec.body.__name__}"}}
                },
            }
        if spec.public:
            op["security"] = []
        else:
            op["x-permission"] = {"resource": spec.resource, "action": spec.action}
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "success": {"const": False},
            "error": {"type": "string"},
            "code": {"type": "string"},
            "details": {"type": "object"},
        },
        "required": ["success", "error", "code"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    }


def add_standard_routes(api: Api, *, title: str, health: Callable[[web.Request], Any]) -> None:
    """``/health``, ``/metrics`` and ``/openapi.json``: public on every service."""
    import hmac

    from shared.errors import Unauthorized
    from shared.keys import SETTINGS
    from shared.metrics import render

    @api.route("GET", "/health", public=True, summary="Liveness", tags=("monitoring",))
    async def get_health(request: web.Request) -> web.Response:
        return ok(await health(request))

    @api.route("GET", "/metrics", public=True, summary="Prometheus metrics", tags=("monitoring",))
    async def get_metrics(request: web.Request) -> web.Response:
        """This service's metrics; behind ``Authorization: Bearer <metrics_token>`` when one is set."""
        settings = request.app.get(SETTINGS)
        expected = settings.metrics_token if settings is not None else ""
        if expected:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()
            ):
                add_response_headers(request, {"WWW-Authenticate": 'Bearer realm="metrics"'})
                raise Unauthorized("/metrics needs Authorization: Bearer <the metrics token>")
        body, ctype = render(request.app.get(SERVICE_KEY, "app"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = ctype
        return resp

    @api.route("GET", "/openapi.json", public=True, summary="OpenAPI 3.1", tags=("meta",))
    async def get_openapi(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(api, title))
