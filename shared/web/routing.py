"""Routes declared once: the request models, the response schemas and the route table.

:class:`Api` remembers each route's spec (path, models, the resource and action
policies check, what it answers); the auth middleware and the OpenAPI document
read the same specs. Request models bound what they accept (:class:`Model`,
:class:`PageQuery`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from shared.web.validation import read_body, read_query

log = logging.getLogger(__name__)


log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[web.StreamResponse]]
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


class OffsetPageQuery(Model):
    """``limit`` (default 50, max 1000) and ``offset`` (max 10,000,000) for the small lists
    that page by offset only (policies, webhook subscriptions)."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class PageQuery(OffsetPageQuery):
    """``limit``, ``offset`` (costs O(offset)) and ``cursor`` (from the previous page's
    ``Link: rel="next"``; costs nothing whatever the page) for lists that grow."""

    cursor: str | None = Field(
        None,
        min_length=1,
        max_length=600,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="opaque: the next page after the one whose Link header gave it",
    )


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
NAMED_SCHEMAS: dict[str, JsonSchema] = {}


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
    NAMED_SCHEMAS[name] = schema
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
    # A request that allocates in bulk (a big submission): run out of the garbage
    # collector's way, body parsing included (shared/collector.py).
    burst: bool = False


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
        burst: bool = False,
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
                burst,
            )
            setattr(handler, SPEC_ATTR, spec)
            handler.__name__ = fn.__name__
            self.specs.append(spec)
            return fn

        return wrap

    def include(self, other: Api) -> None:
        self.specs.extend(other.specs)

    def permissions(self) -> tuple[tuple[str, str], ...]:
        """The (resource, action) pairs the policy checks on these routes (public ones aside)."""
        pairs = {(s.resource, s.action) for s in self.specs if not s.public and s.resource and s.action}
        return tuple(sorted(pairs))

    def register(self, app: web.Application) -> None:
        for spec in self.specs:
            app.router.add_route(spec.method, spec.path, spec.handler)


def route_spec(request: web.Request) -> RouteSpec | None:
    """The spec of the route that matched this request, if any."""
    handler = request.match_info.handler
    spec = getattr(handler, SPEC_ATTR, None)
    return spec if isinstance(spec, RouteSpec) else None
