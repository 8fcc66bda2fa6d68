"""The API conventions both services share.

Envelope ``{"success": …, "data": …}``, the error tree mapped to status codes,
request validation against pydantic models (400 malformed, 422 per field),
``Accept`` versioning (406), body size limit (413), pagination headers,
``X-Request-ID`` and request metrics. Routes are declared once with
:class:`Api`, which also feeds the auth middleware and the OpenAPI document.

Hostile input is refused here, once, before any route, policy or audit record
sees it: NUL and other C0 control characters (tab, CR and LF are text), lone
UTF-16 surrogates, integers outside signed 64 bits, non-finite numbers, strings
past ``max_string_chars`` and JSON nested deeper than ``max_json_depth`` (see
:func:`check_json` and :func:`parse_json`). The embedded store keeps a NUL but
can never return it, so one such byte stored would break every later read.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web, web_response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.json_schema import JsonSchemaMode

from shared.errors import (
    BadRequest,
    NotAcceptable,
    PayloadTooLarge,
    ProvisioningError,
    StoreError,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.metrics import HTTP_LATENCY, HTTP_REQUESTS
from shared.web.keys import SETTINGS as SETTINGS_KEY

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


# -- hostile input -----------------------------------------------------------------

MAX_JSON_DEPTH = 64  # defaults of the settings ``max_json_depth`` and ``max_string_chars``
MAX_STRING_CHARS = 65_536
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_FIELD_ERRORS = 20  # per response: a hostile document may hold millions of bad values
# C0 controls except tab, LF and CR; lone UTF-16 surrogates (JSON "\ud800", or bytes that
# are not UTF-8 in a header, which aiohttp keeps as surrogate escapes).
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_INT_DIGITS = 32  # a longer integer is out of range anyway; never convert it (4,300 digits raise)


@dataclass(frozen=True)
class InputLimits:
    """The bounds :func:`check_json` applies (from settings, or the defaults)."""

    max_depth: int = MAX_JSON_DEPTH
    max_string_chars: int = MAX_STRING_CHARS


DEFAULT_LIMITS = InputLimits()


class _Unrepresentable:
    """A JSON number the walk refuses (kept as text so the parser never converts it)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _Unrepresentable:
    return _Unrepresentable(text) if len(text) > _INT_DIGITS else int(text)


def _parse_constant(text: str) -> _Unrepresentable:
    return _Unrepresentable(text)  # NaN, Infinity, -Infinity: not JSON at all


def text_problem(value: str, max_chars: int | None = None) -> str | None:
    """Why a string may not be taken in, or ``None`` when it may."""
    if max_chars is not None and len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    bad = _BAD_CHAR.search(value)
    if bad is None:
        return None
    char = bad.group()
    if char == "\x00":
        return "contains a NUL character"
    if "\ud800" <= char <= "\udfff":
        return "contains a lone UTF-16 surrogate (not text)"
    return f"contains the control character U+{ord(char):04X}"


def clean_text(text: str, max_chars: int) -> str:
    """Text from outside (a webhook consumer's answer, a peer's error) as it may be kept:
    C0 controls other than tab, CR and LF and lone surrogates become U+FFFD, and it is cut
    to ``max_chars`` (an ellipsis marks the cut)."""
    if len(text) > max_chars:
        text = text[: max(0, max_chars - 1)] + "…"
    return _BAD_CHAR.sub("\ufffd", text)


def _field(where: str, key: str | int) -> str:
    if isinstance(key, str):
        # A hostile key must not smuggle what it is refused for into the error.
        key = key.encode("unicode_escape").decode("ascii") if _BAD_CHAR.search(key) else key
        key = key if len(key) <= 64 else key[:64] + "…"
    return f"{where}.{key}" if where else str(key)


def check_json(doc: Any, where: str = "", limits: InputLimits = DEFAULT_LIMITS) -> None:
    """Refuse what must never be taken in from a parsed JSON document.

    400 (:class:`BadRequest`) when it nests deeper than ``limits.max_depth``; 422
    (:class:`ValidationFailed`) naming each bad value (``operations.3.name``; object
    keys included) for NUL, other C0 controls except tab/CR/LF, lone surrogates,
    strings longer than ``limits.max_string_chars``, integers outside signed 64 bits
    and non-finite numbers. ``where`` prefixes the field names (``query``, ``message``).
    """
    problems: list[dict[str, Any]] = []
    _walk(doc, where, 1, limits, problems)
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationFailed(f"invalid {where or 'request body'}: {summary}", details={"fields": problems})


def _walk(value: Any, path: str, depth: int, limits: InputLimits, problems: list[dict[str, Any]]) -> None:
    """Depth-first over a parsed document; it never recurses past ``limits.max_depth``."""
    if len(problems) >= MAX_FIELD_ERRORS:
        return
    if isinstance(value, str):
        problem = text_problem(value, limits.max_string_chars)
        if problem is not None:
            problems.append(_problem(path, problem, "string_unsafe"))
    elif isinstance(value, dict | list):
        if depth > limits.max_depth:
            raise BadRequest(
                f"JSON is nested deeper than {limits.max_depth} levels",
                details={"max_depth": limits.max_depth, "field": path or "(body)"},
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            here = _field(path, key)
            if isinstance(key, str):
                problem = text_problem(key, limits.max_string_chars)
                if problem is not None:
                    problems.append({"field": here, "message": f"key {problem}", "type": "key_unsafe"})
            _walk(item, here, depth + 1, limits, problems)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            problems.append(_problem(path, "integer is outside signed 64 bits", "int_range"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(_problem(path, "number is not finite", "float_range"))
    elif isinstance(value, _Unrepresentable):
        problems.append(_problem(path, "number is outside signed 64 bits or not finite", "number_range"))


def _problem(path: str, message: str, kind: str) -> dict[str, Any]:
    return {"field": path or "(body)", "message": message, "type": kind}


def parse_json(raw: bytes | str, where: str = "", limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON from outside and :func:`check_json` it: never a ``RecursionError``.

    400 for what is not JSON or nests too deep, 422 naming each unsafe value."""
    try:
        doc = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise BadRequest(
            f"JSON is nested deeper than {limits.max_depth} levels", details={"max_depth": limits.max_depth}
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{where or 'request body'} is not valid JSON: {exc}") from None
    check_json(doc, where, limits)
    return doc


def input_limits(request: web.Request) -> InputLimits:
    """This app's limits (the defaults for an app built without settings)."""
    settings = request.app.get(SETTINGS_KEY)
    if settings is None:
        return DEFAULT_LIMITS
    return InputLimits(settings.max_json_depth, settings.max_string_chars)


def check_request_line(request: web.Request) -> None:
    """Path parameters and header values (400) and query parameters (422), before any
    route, policy or audit record sees them."""
    for name, value in request.match_info.items():
        problem = text_problem(value)
        if problem is not None:
            raise BadRequest(
                f"path parameter {name} {problem}",
                details={"fields": [{"field": f"path.{name}", "message": problem, "type": "string_unsafe"}]},
            )
    problem = text_problem(request.path)
    if problem is not None:  # an unmatched path is quoted in its 404 and in the access log
        raise BadRequest(
            f"the path {problem}",
            details={"fields": [{"field": "path", "message": problem, "type": "string_unsafe"}]},
        )
    for name, value in request.headers.items():
        problem = text_problem(value)
        if problem is not None:
            field_name = f"header.{name.lower()}"
            raise BadRequest(
                f"header {name} {problem}",
                details={"fields": [{"field": field_name, "message": problem, "type": "string_unsafe"}]},
            )
    _check_query(request)


def _check_query(request: web.Request) -> None:
    limits = input_limits(request)
    problems: list[dict[str, Any]] = []
    for key, value in request.query.items():
        here = _field("query", key)
        for text, what in ((key, "name"), (value, "value")):
            problem = text_problem(text, limits.max_string_chars)
            if problem is not None and len(problems) < MAX_FIELD_ERRORS:
                problems.append({"field": here, "message": f"{what} {problem}", "type": "string_unsafe"})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationFailed(f"invalid query parameters: {summary}", details={"fields": problems})


# The parsed, checked body of a request, once read (the middleware reads it for every
# route that declares a body, before the policy and audit layers run).
JSON_BODY = web.RequestKey("json_body", tuple[bytes, Any])


async def json_body(request: web.Request) -> tuple[bytes, Any]:
    """The raw body and its parsed, checked JSON: 415/413/400/422 for what is refused."""
    cached: tuple[bytes, Any] | None = request.get(JSON_BODY)
    if cached is not None:
        return cached
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
    doc = parse_json(raw, "", input_limits(request))
    request[JSON_BODY] = (raw, doc)
    return raw, doc


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 415/400 for what is not JSON, 422 naming bad fields."""
    raw, doc = await json_body(request)
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        # Strict JSON validation: "5" is not an integer and true is not 1.
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_failed(exc, "request body") from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """Validate query parameters against a model (422 naming each bad one)."""
    _check_query(request)
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


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Instead of aiohttp's "Python/3.11 aiohttp/3.x": no versions for an attacker to look up.
SERVER_HEADER = "provisioning"
# aiohttp's own answers (a malformed request line, a bad header) never reach the app or
# its signals; they take the Server header from this module global.
web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]


def request_id_of(incoming: str) -> str:
    """A client's ``X-Request-ID`` if it is ≤ 64 of ``[A-Za-z0-9._-]``, else a new one."""
    return incoming if _REQUEST_ID.fullmatch(incoming) else str(uuid.uuid4())


async def secure_response_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: on every response the app sends, streams included.

    ``nosniff``; ``Cache-Control: no-store`` (every answer of these APIs is about a
    user's data, tokens, the audit log or live events: nothing a browser or an
    intermediary should keep; there are no static assets to cache); the Server
    header without versions; ``X-Request-ID`` and the
    headers layers asked for, also on a stream prepared inside its handler (SSE),
    before this module's middleware could add them."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Cache-Control"] = "no-store"
    headers["Server"] = SERVER_HEADER
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        headers.setdefault("X-Request-ID", request_id)
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        headers.setdefault(name, value)


def _server_error(request: web.Request, exc: ProvisioningError, request_id: str) -> web.Response:
    """A 5xx the services raised on purpose: the details go to the log, never to the client
    (a database's message names its internals)."""
    log.error(
        "request failed: %s",
        exc.code,
        extra={"request_id": request_id, "path": request.path, "error": exc.message, "code": exc.code},
    )
    what = "the database is unavailable" if isinstance(exc, StoreError) else "the service failed"
    return error_response(exc.status, f"{what}; quote request id {request_id} when reporting it", exc.code)


def _started(request: web.Request) -> bool:
    """Whether a response has begun on the wire (a stream that failed half-way)."""
    writer = request.writer
    return bool(getattr(writer, "output_size", 0))


@web.middleware
async def request_context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """X-Request-ID, hostile-input refusal, metrics by route template, and the error
    envelope for everything.

    Outermost: path parameters, headers, queries and (for routes that declare one) the
    body are checked here, before the policy and audit middlewares see the request."""
    request_id = request_id_of(request.headers.get("X-Request-ID", ""))
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    try:
        check_request_line(request)
        spec = route_spec(request)
        if spec is not None and spec.body is not None:
            await json_body(request)
        response = await handler(request)
    except ProvisioningError as exc:
        if _started(request):
            log.error(
                "a response failed after it started; the connection is closed",
                extra={"request_id": request_id, "path": request.path, "error": exc.message},
            )
            raise ConnectionResetError("response aborted after it started") from None
        if exc.status >= 500:
            response = _server_error(request, exc, request_id)
        else:
            response = error_response(exc.status, exc.message, exc.code, exc.details)
        if exc.status == 429:
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
        if _started(request):
            raise ConnectionResetError("response aborted after it started") from None
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
    import hmac

    from shared.errors import Unauthorized
    from shared.metrics import render
    from shared.web.keys import SETTINGS

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
