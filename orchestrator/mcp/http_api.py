"""The ``mcp_http`` routes: the seed's ``meta``, ``handshake``, ``tools`` and ``invoke``, and a
Model Context Protocol endpoint at ``mcp`` (Streamable HTTP, written here in aiohttp).

:func:`mcp_api` declares them (relative to ``prefix``) for the built-in extension
``mcp_http`` to mount under ``/ext/mcp_http/``, so the OpenAPI document describes them.
The routes authenticate themselves (a product token: an access JWT or an API token) so that a refusal carries
``WWW-Authenticate: Bearer resource_metadata=…`` (RFC 9728), whose document
:data:`well_known_api` serves; each tool call is then authorized by the tool registry
with the policy of the REST route it mirrors.

On ``mcp``: a foreign ``Origin`` is refused (403, against DNS rebinding); the answer is
JSON, or Server-Sent Events when the client accepts them and asked for progress (a
``progressToken``) of a ``tools/call``: ``notifications/progress`` then the result.
"""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

from aiohttp import web
from pydantic import Field

from orchestrator.mcp.protocol import (
    HANDSHAKE_VERSIONS,
    INVALID_REQUEST,
    MODERN_HTTP_STATUS,
    MODERN_VERSIONS,
    PARSE_ERROR,
    SERVER_NAME,
    SERVER_VERSION,
    SUPPORTED_VERSIONS,
    McpError,
    McpServer,
    Message,
    Sessions,
    check_envelope,
    is_modern,
    parse_message,
    progress_notification,
    progress_token,
    unsupported_version,
)
from orchestrator.tools import ToolCall, ToolRegistry
from shared.errors import Forbidden, NotAcceptable, ProvisioningError, Unauthorized
from shared.security.actor import actor_of
from shared.security.auth import AUTH_BACKEND, PRINCIPAL, Principal
from shared.security.ratelimit import limit_user
from shared.web.keys import SETTINGS
from shared.web.middlewares import add_response_headers
from shared.web.routing import ANY, OBJECT, STR, Api, JsonSchema, Model, array, obj
from shared.web.validation import json_body

EXTENSION_ID = "mcp_http"
MOUNT = f"/ext/{EXTENSION_ID}"
RESOURCE = f"ext:{EXTENSION_ID}"
METADATA_PATH = "/.well-known/oauth-protected-resource"
SESSION_HEADER = "Mcp-Session-Id"
SSE = "text/event-stream"
JSON = "application/json"
TAGS = ("mcp",)
ROUTING_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name")

JSONRPC_MESSAGE: JsonSchema = {
    "type": "object",
    "description": "a JSON-RPC 2.0 message (MCP)",
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer"]},
        "method": {"type": "string", "minLength": 1, "maxLength": 256},
        "params": {"type": "object"},
        "result": {},
        "error": {"type": "object"},
    },
    "required": ["jsonrpc"],
}
JSONRPC_ERROR: JsonSchema = {
    "type": "object",
    "description": "a JSON-RPC 2.0 error (MCP)",
    "properties": {
        "jsonrpc": {"const": "2.0"},
        "id": {"type": ["string", "integer", "null"]},
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
            "required": ["code", "message"],
        },
    },
    "required": ["jsonrpc", "id", "error"],
}
META = obj(
    {
        "server": STR,
        "version": STR,
        "capabilities": array(STR),
        "mcp_endpoint": STR,
        "protocol_versions": array(STR),
    }
)
HANDSHAKE = obj({"server": obj({"name": STR, "version": STR}), "session_id": STR})
TOOLS_LIST = obj({"tools": array(obj({"name": STR, "description": STR, "parameters": OBJECT}, extra=True))})
INVOKED = obj({"success": {"const": True}, "result": ANY})
RESOURCE_METADATA = obj(
    {
        "resource": STR,
        "bearer_methods_supported": array(STR),
        "resource_name": STR,
        "resource_documentation": STR,
    },
    optional=("resource_documentation",),
)


class ClientInfo(Model):
    name: str = Field(min_length=1, max_length=200)
    version: str | None = Field(None, max_length=64)


class HandshakeRequest(Model):
    """``POST handshake``: who the client is (the seed's)."""

    client: ClientInfo | None = None


class InvokeRequest(Model):
    """``POST invoke``: a tool and its parameters (the seed's)."""

    tool: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)


# -- who is asking ------------------------------------------------------------------------


def base_url(request: web.Request) -> str:
    configured: str = request.app[SETTINGS].mcp_public_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


async def authenticate(request: web.Request) -> Principal:
    """The caller of an ``mcp_http`` route, by its bearer token, counted under the general
    rate limit; a refusal (401) points the client at the protected-resource metadata."""
    metadata = f"{base_url(request)}{METADATA_PATH}"
    try:
        principal = await request.app[AUTH_BACKEND].authenticate(request)
    except Unauthorized as exc:
        challenge = f'Bearer resource_metadata="{metadata}"'
        if exc.reason != "missing":
            challenge += ', error="invalid_token"'
        add_response_headers(request, {"WWW-Authenticate": challenge})
        raise
    request[PRINCIPAL] = principal
    if request.app[SETTINGS].auth_enabled:
        await limit_user(request, principal.user_id)
    return principal


def refuse_foreign_origin(request: web.Request) -> None:
    """A browser page of another origin must not reach the endpoint (DNS rebinding)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = {f"{request.scheme}://{request.host}", *request.app[SETTINGS].mcp_allowed_origins}
    if origin.rstrip("/") not in allowed:
        raise Forbidden(
            f"requests from the origin {origin[:200]!r} are not allowed (mcp_allowed_origins)",
            details={"origin": origin[:200]},
        )


def accepted(request: web.Request) -> tuple[bool, bool]:
    """(JSON, SSE) as the ``Accept`` header allows; no header allows JSON."""
    header = request.headers.get("Accept")
    if not header:
        return True, False
    types = {part.split(";")[0].strip().lower() for part in header.split(",")}
    anything = "*/*" in types
    wants_json = anything or JSON in types or "application/*" in types
    wants_sse = SSE in types or "text/*" in types
    if not wants_json and not wants_sse:
        raise NotAcceptable(f"the MCP endpoint answers {JSON} or {SSE}")
    return wants_json, wants_sse


# -- answers --------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def rpc(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def rpc_error(exc: McpError, request_id: Any, *, modern: bool, default: int = 200) -> web.Response:
    status = MODERN_HTTP_STATUS.get(exc.code, default) if modern else default
    return rpc(exc.body(request_id), status)


def accepted_notification() -> web.Response:
    """202, no body (typed as empty text, so that every answer says what it holds)."""
    return web.Response(status=202, content_type="text/plain")


def _sse_event(message: dict[str, Any]) -> bytes:
    return f"event: message\ndata: {_dumps(message)}\n\n".encode()


class McpEndpoint:
    """``POST``/``DELETE``/``GET`` of the MCP endpoint, over one registry."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.server = McpServer(registry)
        self._sessions: Sessions | None = None

    def sessions(self, request: web.Request) -> Sessions:
        if self._sessions is None:
            settings = request.app[SETTINGS]
            self._sessions = Sessions(settings.mcp_session_ttl_s, settings.mcp_max_sessions)
        return self._sessions

    async def post(self, request: web.Request) -> web.StreamResponse:
        refuse_foreign_origin(request)
        principal = await authenticate(request)
        _, wants_sse = accepted(request)
        try:
            _, doc = await json_body(request)
        except ProvisioningError as exc:
            return rpc(McpError(PARSE_ERROR, f"Parse error: {exc.message}").body(None), 400)
        try:
            message = parse_message(doc)
        except McpError as exc:
            request_id = doc.get("id") if isinstance(doc, dict) else None
            valid_id = isinstance(request_id, str | int) and not isinstance(request_id, bool)
            return rpc(exc.body(request_id if valid_id else None), 400)
        headers = {name: request.headers.get(name) for name in ROUTING_HEADERS}
        if is_modern(message, headers["mcp-protocol-version"]):
            if not message.is_request:
                return accepted_notification()
            try:
                version = check_envelope(message, headers)
            except McpError as exc:
                return rpc_error(exc, message.id, modern=True)
            return await self._respond(request, message, version, wants_sse)
        return await self._handshake_era(request, message, principal, headers, wants_sse)

    async def _handshake_era(
        self,
        request: web.Request,
        message: Message,
        principal: Principal,
        headers: dict[str, str | None],
        wants_sse: bool,
    ) -> web.StreamResponse:
        version_header = headers["mcp-protocol-version"]
        if version_header is not None and version_header not in SUPPORTED_VERSIONS:
            return rpc(unsupported_version(version_header, SUPPORTED_VERSIONS).body(message.id), 400)
        sessions = self.sessions(request)
        if message.method == "initialize":
            if not message.is_request:
                return rpc(
                    McpError(INVALID_REQUEST, "initialize is a request: give it an id").body(None), 400
                )
            try:
                version, result = self.server.initialize(message.params)
            except McpError as exc:
                return rpc(exc.body(message.id), 400)
            opened = sessions.open(principal.user_id, version)
            return rpc(
                {"jsonrpc": "2.0", "id": message.id, "result": result}, headers={SESSION_HEADER: opened.id}
            )
        session_id = request.headers.get(SESSION_HEADER)
        if not session_id:
            error = McpError(
                INVALID_REQUEST,
                f"send {SESSION_HEADER} (from initialize), or the 2026-07-28 envelope in params._meta",
                {"supported": list(SUPPORTED_VERSIONS)},
            )
            return rpc(error.body(message.id), 400)
        session = sessions.find(session_id, principal.user_id)
        if session is None:
            error = McpError(INVALID_REQUEST, "no such session (ended or unknown): initialize again")
            return rpc(error.body(message.id), 404)
        if not message.is_request:
            if message.method == "notifications/initialized":
                session.initialized = True
            return accepted_notification()
        return await self._respond(request, message, session.version, wants_sse)

    async def _respond(
        self, request: web.Request, message: Message, version: str, wants_sse: bool
    ) -> web.StreamResponse:
        modern = version in MODERN_VERSIONS
        actor = actor_of(request)
        token = progress_token(message)
        if not (wants_sse and token is not None and message.method == "tools/call"):
            try:
                result = await self.server.answer(message, version, ToolCall(actor, request))
            except McpError as exc:
                return rpc_error(exc, message.id, modern=modern)
            return rpc({"jsonrpc": "2.0", "id": message.id, "result": result})
        response = web.StreamResponse(
            headers={
                "Content-Type": SSE,
                "Cache-Control": "no-cache, no-transform",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)

        async def progress(value: float, total: float | None, text: str | None) -> None:
            await response.write(_sse_event(progress_notification(token, value, total, text)))

        try:
            result = await self.server.answer(message, version, ToolCall(actor, request, progress))
            final: dict[str, Any] = {"jsonrpc": "2.0", "id": message.id, "result": result}
        except McpError as exc:
            final = exc.body(message.id)
        await response.write(_sse_event(final))
        await response.write_eof()
        return response

    async def delete(self, request: web.Request) -> web.Response:
        refuse_foreign_origin(request)
        principal = await authenticate(request)
        session_id = request.headers.get(SESSION_HEADER, "")
        if not self.sessions(request).close(session_id, principal.user_id):
            return rpc(McpError(INVALID_REQUEST, "no such session").body(None), 404)
        return web.json_response({"session_id": session_id, "ended": True})


def mcp_api(registry: ToolRegistry, *, prefix: str = MOUNT) -> Api:
    """The ``mcp_http`` routes under ``prefix``, declared for the OpenAPI document."""
    api = Api()
    endpoint = McpEndpoint(registry)
    # Public to the auth middleware: each route authenticates itself (see authenticate).
    route = functools.partial(api.route, public=True, resource=RESOURCE, tags=TAGS)

    @route(
        "GET",
        f"{prefix}/meta",
        action="read",
        response=META,
        raw=True,
    )
    async def mcp_meta(request: web.Request) -> web.Response:
        """What this MCP server is and speaks (the seed's, plus the MCP endpoint and versions)."""
        return web.json_response(
            {
                "server": SERVER_NAME,
                "version": SERVER_VERSION,
                "capabilities": ["handshake", "list_tools", "invoke", "schema", "sse", "mcp"],
                "mcp_endpoint": f"{prefix}/mcp",
                "protocol_versions": list(SUPPORTED_VERSIONS),
            }
        )

    @route(
        "POST",
        f"{prefix}/handshake",
        action="read",
        body=HandshakeRequest,
        response=HANDSHAKE,
        raw=True,
    )
    async def mcp_handshake(request: web.Request, body: HandshakeRequest) -> web.Response:
        """The seed's handshake: the server's name and version, and a session id."""
        return web.json_response(
            {"server": {"name": SERVER_NAME, "version": SERVER_VERSION}, "session_id": f"sess-{uuid.uuid4()}"}
        )

    @route(
        "GET",
        f"{prefix}/tools",
        action="read",
        response=TOOLS_LIST,
        raw=True,
        errors=(401,),
    )
    async def mcp_tools(request: web.Request) -> web.Response:
        """Every tool with its JSON Schema (``parameters``); needs a bearer token."""
        await authenticate(request)
        tools = [
            {"name": t.name, "description": t.description, "parameters": t.input_schema()}
            for t in registry.list()
        ]
        return web.json_response({"tools": tools}, dumps=_dumps)

    @route(
        "POST",
        f"{prefix}/invoke",
        action="invoke",
        body=InvokeRequest,
        response=INVOKED,
        raw=True,
        errors=(401, 403, 404, 409),
    )
    async def mcp_invoke(request: web.Request, body: InvokeRequest) -> web.Response:
        """Call a tool (the seed's): ``{success, result}``; a refusal is the product's error."""
        await authenticate(request)
        result = await registry.call(body.tool, body.parameters, ToolCall(actor_of(request), request))
        return web.json_response({"success": True, "result": result}, dumps=_dumps)

    @route(
        "POST",
        f"{prefix}/mcp",
        action="invoke",
        response=JSONRPC_MESSAGE,
        raw=True,
        media={SSE: {"schema": {"type": "string", "description": "notifications/progress, then the answer"}}},
        alternatives={202: {"description": "a notification or response, accepted"}},
        errors=(401, 403, 404),
    )
    async def mcp_post(request: web.Request) -> web.StreamResponse:
        """Model Context Protocol (JSON-RPC over Streamable HTTP; revisions 2026-07-28 and 2025-11-25)."""
        return await endpoint.post(request)

    @route(
        "DELETE",
        f"{prefix}/mcp",
        action="invoke",
        response=obj({"session_id": STR, "ended": {"const": True}}),
        raw=True,
        errors=(401, 403, 404),
    )
    async def mcp_delete(request: web.Request) -> web.Response:
        """End a 2025-11-25 session (``Mcp-Session-Id``)."""
        return await endpoint.delete(request)

    return api


def document_mcp(doc: JsonSchema, prefix: str = MOUNT) -> None:
    """The OpenAPI document as the MCP endpoint really answers: its body is a JSON-RPC
    message, and a protocol error (400, 404) is a JSON-RPC error rather than the envelope."""
    op = doc["paths"].get(f"{prefix}/mcp", {}).get("post")
    if op is None:
        return
    op["requestBody"] = {"required": True, "content": {JSON: {"schema": JSONRPC_MESSAGE}}}
    op["parameters"] = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}}
        for name in ("MCP-Protocol-Version", "Mcp-Method", "Mcp-Name", SESSION_HEADER)
    ]
    for status in ("400", "404"):
        content = op["responses"][status]["content"][JSON]
        content["schema"] = {"anyOf": [content["schema"], JSONRPC_ERROR]}
    for status in ("413", "415", "422"):  # of any route with a body (here answered as 400)
        op["responses"].setdefault(status, {**op["responses"]["400"], "description": "error"})
    op["responses"]["202"] = {
        "description": "a notification or a response: accepted, no body",
        "content": {"text/plain": {"schema": {"type": "string", "maxLength": 0}}},
    }
    delete = doc["paths"][f"{prefix}/mcp"].get("delete")
    if delete is not None:
        delete["responses"]["404"]["content"][JSON]["schema"] = {
            "anyOf": [delete["responses"]["404"]["content"][JSON]["schema"], JSONRPC_ERROR]
        }


# -- RFC 9728: OAuth 2.0 protected resource metadata ----------------------------------------

well_known_api = Api()


@well_known_api.route(
    "GET",
    METADATA_PATH,
    public=True,
    resource="auth",
    action="resource_metadata",
    tags=TAGS,
    response=RESOURCE_METADATA,
    raw=True,
)
async def protected_resource_metadata(request: web.Request) -> web.Response:
    """How to present a token to this resource (RFC 9728): a Bearer header with a product
    token (an access token from POST /auth/login, or an API token from POST /auth/tokens)."""
    return web.json_response(
        {
            "resource": f"{base_url(request)}{MOUNT}/mcp",
            "bearer_methods_supported": ["header"],
            "resource_name": "provisioning orchestrator (MCP)",
        },
        headers={"Cache-Control": "max-age=300"},
    )


__all__ = ["HANDSHAKE_VERSIONS", "document_mcp", "mcp_api", "well_known_api"]
