"""``/ext/*`` on the orchestrator: the framework's own routes (status, the manifest's
JSON Schema, enable/disable), and the router resource that sends ``/ext/{id}/…`` to
the extension's own routes, loading a pending extension on its first request.

Extension routes resolve to handlers that carry route specs like the product's own,
so the middlewares treat them the same way: authentication, the policy on
``ext:{id}`` (read, write, invoke), rate limits, audit, the error envelope and the
request metrics; :func:`extension_metrics_middleware` adds the per-extension ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractMatchInfo
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute, MatchInfoError
from yarl import URL

from orchestrator.extensions.context import EXTENSION_ATTR
from orchestrator.extensions.manager import ExtensionState
from orchestrator.extensions.manifest import manifest_schema
from orchestrator.keys import EXTENSIONS
from shared.errors import NotFound, ProvisioningError
from shared.web.envelope import ok
from shared.web.openapi import openapi_document
from shared.web.routing import (
    INT,
    NUM,
    OBJECT,
    SPEC_ATTR,
    STR,
    Api,
    JsonSchema,
    RouteSpec,
    array,
    named,
    nullable,
    obj,
)

api = Api()
TAG = ("extensions",)
_EXT_PATH = re.compile(r"^/ext/([a-z][a-z0-9_]{0,39})(/.*)?$")

_STATE = {"type": "string", "enum": [s.value for s in ExtensionState]}
EXTENSION_ENTRY = named(
    "ExtensionStatus",
    obj(
        {
            "state": _STATE,
            "info": obj({"id": STR, "name": STR, "version": STR, "description": STR}),
            "capabilities": array(STR),
            "requested": array(STR),
            "source": STR,
            "eager": {"type": "boolean"},
            "loaded_ms": nullable(INT),
            "metrics": obj({"requests_total": NUM, "errors_total": NUM, "latency_ms_sum": NUM}),
            "error_type": STR,
            "error": STR,
            "traceback": STR,
        },
        optional=("error_type", "error", "traceback"),
    ),
)
STATUS = obj(
    {
        "extensions": {"type": "object", "additionalProperties": EXTENSION_ENTRY},
        "duplicates": array(EXTENSION_ENTRY),
        "discovery_sources": array(STR),
        "total_extensions": INT,
        "loaded_extensions": INT,
        "failed_extensions": INT,
    }
)
HEALTH = named(
    "ExtensionHealth",
    obj(
        {
            "status": STR,
            "timestamp": {"type": "string", "format": "date-time"},
            "version": STR,
            "checks": {"type": "object", "additionalProperties": STR},
        }
    ),
)


def _public(path: str, summary: str, response: JsonSchema, answer: Callable[[web.Request], Any]) -> None:
    """A public GET answering ``answer(request)`` as JSON (raw, as the seed has it)."""

    async def public(request: web.Request) -> web.Response:
        return web.json_response(answer(request))

    public.__name__ = "ext_" + path.rsplit("/", 1)[1].replace(".", "_")
    api.route("GET", path, public=True, summary=summary, tags=TAG, response=response, raw=True)(public)


_public(
    "/ext/status",
    "Every discovered extension: state, capabilities, metrics",
    STATUS,
    lambda request: request.app[EXTENSIONS].status(),
)
_public(
    "/ext/schema/extension.json", "The JSON Schema of extension.json", OBJECT, lambda _: manifest_schema()
)


def _switch(verb: str, what: str) -> None:
    """``POST /ext/{id}/enable`` or ``/disable``: admins only (``extensions:manage``), audited."""

    async def switch(request: web.Request) -> web.Response:
        manager = request.app[EXTENSIONS]
        change = manager.enable if verb == "enable" else manager.disable
        return ok(manager.entry(await change(request.match_info["id"])))

    switch.__name__ = f"ext_{verb}"
    api.route(
        "POST",
        f"/ext/{{id}}/{verb}",
        resource="extensions",
        action="manage",
        summary=f"{what} an extension, without a restart",
        tags=TAG,
        response=EXTENSION_ENTRY,
    )(switch)


_switch("enable", "Enable (and load)")
_switch("disable", "Disable (and unload)")


# -- the extensions' own routes -----------------------------------------------------------


def _health_route(ext_id: str) -> web.UrlDispatcher:
    """``GET /ext/{id}/health`` (ext:{id} read), answered by the framework."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response(await request.app[EXTENSIONS].health(ext_id))

    health.__name__ = f"{ext_id}_health"
    path = f"/ext/{ext_id}/health"
    spec = RouteSpec(
        "GET",
        path,
        health,
        f"ext:{ext_id}",
        "read",
        summary=f"Health of the {ext_id} extension",
        tags=(f"ext:{ext_id}",),
        response=HEALTH,
        raw=True,
    )
    setattr(health, SPEC_ATTR, spec)
    setattr(health, EXTENSION_ATTR, ext_id)
    router = web.UrlDispatcher()
    router.add_route("GET", path, health)
    return router


def _unavailable_route(ext_id: str) -> web.UrlDispatcher:
    """Every other path of an extension that is not loaded: 404 naming its state."""

    async def unavailable(request: web.Request) -> web.Response:
        ext = request.app[EXTENSIONS].get(ext_id)
        raise NotFound(
            f"extension {ext_id!r} is {ext.state.value}"
            + (f" ({ext.error_type}); see GET /ext/status" if ext.error_type else ""),
            details={"extension_id": ext_id, "state": ext.state.value},
        )

    router = web.UrlDispatcher()
    router.add_route("*", f"/ext/{ext_id}" + "{tail:.*}", unavailable)
    return router


class ExtensionsResource(AbstractResource):
    """``/ext/{id}/…``: resolved at request time against the extension's own router."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(name=None)
        self.app = app  # requests know their app only once resolved
        self._health: dict[str, web.UrlDispatcher] = {}
        self._unavailable: dict[str, web.UrlDispatcher] = {}

    @property
    def canonical(self) -> str:
        return "/ext/{extension}"

    def url_for(self, **kwargs: str) -> URL:
        return URL.build(path=f"/ext/{kwargs['extension']}")

    def add_prefix(self, prefix: str) -> None:
        raise RuntimeError("the extensions resource cannot live in a sub-application")

    def get_info(self) -> dict[str, Any]:  # type: ignore[override]
        return {"prefix": "/ext/"}

    def raw_match(self, path: str) -> bool:
        return path == self.canonical

    def _documented(self) -> list[AbstractRoute]:
        """The routes in the OpenAPI document (the health routes, and the documented routes
        of loaded extensions), for introspection: ``app.router.routes()``."""
        manager = self.app.get(EXTENSIONS)
        if manager is None:
            return []
        found: list[AbstractRoute] = []
        for ext_id, ext in manager.extensions.items():
            found.extend(self._health.setdefault(ext_id, _health_route(ext_id)).routes())
            if ext.state is ExtensionState.LOADED and ext.mount is not None:
                documented = {id(spec.handler) for spec in ext.mount.specs}
                found.extend(r for r in ext.mount.router.routes() if id(r.handler) in documented)
        return found

    def __len__(self) -> int:
        return len(self._documented())

    def __iter__(self) -> Iterator[AbstractRoute]:
        return iter(self._documented())

    async def resolve(self, request: web.Request) -> tuple[AbstractMatchInfo | None, set[str]]:  # type: ignore[override]
        manager = self.app.get(EXTENSIONS)
        match = _EXT_PATH.match(request.rel_url.path)
        if manager is None or match is None or match.group(1) not in manager.extensions:
            return None, set()
        ext_id, rest = match.group(1), match.group(2) or ""
        ext = await manager.ensure_loaded(ext_id)
        if rest == "/health":
            router = self._health.setdefault(ext_id, _health_route(ext_id))
        elif ext.state is ExtensionState.LOADED and ext.mount is not None:
            router = ext.mount.router
        else:
            router = self._unavailable.setdefault(ext_id, _unavailable_route(ext_id))
        found = await router.resolve(request)
        if isinstance(found, MatchInfoError):
            exc = found.http_exception
            allowed = getattr(exc, "allowed_methods", None) if exc.status == 405 else None
            return None, set(allowed or ())
        return found, set()


def _is_stream(spec: RouteSpec | None) -> bool:
    return spec is not None and (spec.upgrade or any(m == "text/event-stream" for m, _ in spec.media))


@web.middleware
async def extension_metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Per-extension requests, latency, errors (by the envelope's code) and open streams;
    placed outside authentication, so refusals are counted too."""
    routed = request.match_info.handler
    ext_id = getattr(routed, EXTENSION_ATTR, None)
    if ext_id is None:
        return await handler(request)
    manager = request.app[EXTENSIONS]
    resource = request.match_info.route.resource
    endpoint = resource.canonical if resource is not None else request.path
    spec = getattr(routed, SPEC_ATTR, None)
    stream = _is_stream(spec if isinstance(spec, RouteSpec) else None)
    started = time.perf_counter()
    status, error_type = 500, "internal_error"
    if stream:
        manager.connection(ext_id, endpoint, 1)
    try:
        response = await handler(request)
        status, error_type = response.status, ""
        return response
    except ProvisioningError as exc:
        status, error_type = exc.status, exc.code
        raise
    except web.HTTPException as exc:
        status, error_type = exc.status, exc.reason.lower().replace(" ", "_")
        raise
    finally:
        if stream:
            manager.connection(ext_id, endpoint, -1)
        if status >= 400 and not error_type:
            error_type = f"http_{status}"
        manager.observe(
            ext_id, endpoint, request.method, status, time.perf_counter() - started, error_type or None
        )


def document_extensions(request: web.Request, doc: JsonSchema) -> None:
    """Add the loaded extensions' documented routes (and every health route) to the
    orchestrator's OpenAPI document."""
    manager = request.app.get(EXTENSIONS)
    if manager is None:
        return
    specs: list[RouteSpec] = []
    for ext_id, ext in manager.extensions.items():
        health = _health_route(ext_id)
        for resource in health.resources():
            for route in resource:
                spec = getattr(route.handler, SPEC_ATTR)
                specs.append(spec)
        if ext.state is ExtensionState.LOADED and ext.mount is not None:
            specs.extend(ext.mount.specs)
    extra = openapi_document(Api(specs=specs), "extensions")
    doc["paths"].update(extra["paths"])
    for name, schema in extra["components"]["schemas"].items():
        doc["components"]["schemas"].setdefault(name, schema)


def mount(app: web.Application) -> None:
    """Install the resource (after the app's own routes, which take precedence) and the metrics
    middleware (right after the request-context middleware, outside authentication)."""
    app.router.register_resource(ExtensionsResource(app))
    app.middlewares.insert(1, extension_metrics_middleware)
