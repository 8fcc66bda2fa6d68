"""The Model Context Protocol's JSON-RPC, as this server speaks it: two revisions.

- **2026-07-28** (stateless): every request carries its protocol version, client
  capabilities (and optionally client info) in ``params._meta``, mirrored by the
  ``MCP-Protocol-Version``, ``Mcp-Method`` and ``Mcp-Name`` headers; there is no
  handshake (``server/discover`` says what the server supports) and every result
  carries ``resultType``.
- **2025-11-25** (and the handshake revisions before it that share its tool calls):
  ``initialize`` opens a session (``Mcp-Session-Id``), ``notifications/initialized``
  confirms it, then ``tools/list`` and ``tools/call``.

:class:`McpServer` answers one decoded message for a caller; the HTTP side
(:mod:`orchestrator.mcp.http_api`) does transport, authentication and streaming. Tools
come from the app's :class:`~orchestrator.tools.ToolRegistry`: a call the registry
refuses (bad arguments, the policy, a conflict) is a tool result with ``isError``,
so the model can read why; an unknown tool or method is a JSON-RPC error.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from orchestrator.tools import Progress, ToolCall, ToolRegistry
from shared.errors import NotFound, ProvisioningError

SERVER_NAME = "provisioning-mcp-http"
SERVER_VERSION = "0.2.0"
MODERN_VERSIONS = ("2026-07-28",)
HANDSHAKE_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
SUPPORTED_VERSIONS = (*HANDSHAKE_VERSIONS, *MODERN_VERSIONS)
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]

# _meta keys of the 2026-07-28 envelope
PROTOCOL_VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

# JSON-RPC error codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
# The HTTP status of an error, on the stateless revision (its transport says so).
MODERN_HTTP_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
NAME_PARAMS = {"tools/call": "name"}  # methods whose target the Mcp-Name header mirrors
INSTRUCTIONS = (
    "Tools of the provisioning orchestrator. Validate a batch with provisioning.batch.validate "
    "(check mode, no effects) before submitting it with provisioning.batch.submit; follow it "
    "with provisioning.batch.get or provisioning.batch.progress; a failed operation's error is "
    "in its entry of provisioning.batch.get. Every call is allowed or refused by the same "
    "policy as the REST route it mirrors, for the user of your token."
)
MAX_ID_CHARS = 256


class McpError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def body(self, request_id: Any) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}


def unsupported_version(requested: Any, supported: tuple[str, ...]) -> McpError:
    """The spec's answer to a version this server does not speak: it lists those it does."""
    return McpError(
        UNSUPPORTED_PROTOCOL_VERSION,
        "Unsupported protocol version",
        {"supported": list(supported), "requested": requested},
    )


@dataclass(frozen=True)
class Message:
    """A decoded JSON-RPC message: a request (``id`` and ``method``), a notification
    (``method``), or a response the client sends back (``id`` alone)."""

    id: str | int | None
    method: str | None
    params: dict[str, Any]
    has_id: bool

    @property
    def is_request(self) -> bool:
        return self.has_id and self.method is not None

    @property
    def meta(self) -> dict[str, Any]:
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}


def parse_message(doc: Any) -> Message:
    """Check a message's shape (``McpError`` -32600/-32602 naming what is wrong)."""
    if isinstance(doc, list):
        raise McpError(INVALID_REQUEST, "JSON-RPC batches are not supported: send one message per request")
    if not isinstance(doc, dict):
        raise McpError(INVALID_REQUEST, "a JSON-RPC message must be an object")
    if doc.get("jsonrpc") != "2.0":
        raise McpError(INVALID_REQUEST, 'jsonrpc must be "2.0"')
    has_id = "id" in doc
    request_id = doc.get("id")
    if has_id and (
        isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or (isinstance(request_id, str) and len(request_id) > MAX_ID_CHARS)
    ):
        raise McpError(INVALID_REQUEST, "id must be a string (at most 256 characters) or an integer")
    method = doc.get("method")
    if "method" in doc and (not isinstance(method, str) or not method or len(method) > MAX_ID_CHARS):
        raise McpError(INVALID_REQUEST, "method must be a non-empty string")
    if not has_id and method is None:
        raise McpError(
            INVALID_REQUEST, "a message needs a method (request, notification) or an id (response)"
        )
    params = doc.get("params", {})
    if "params" in doc and not isinstance(params, dict):
        raise McpError(INVALID_PARAMS, "params must be an object")
    meta = params.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        raise McpError(INVALID_PARAMS, "params._meta must be an object")
    return Message(request_id if has_id else None, method, params, has_id)


def is_modern(message: Message, version_header: str | None) -> bool:
    """Whether a message is on the stateless revision: its ``_meta`` names a protocol
    version, it asks ``server/discover``, or its header names a stateless revision."""
    return (
        PROTOCOL_VERSION_KEY in message.meta
        or message.method == "server/discover"
        or (version_header is not None and version_header in MODERN_VERSIONS)
    )


def check_envelope(message: Message, headers: dict[str, str | None]) -> str:
    """The 2026-07-28 checks, in the spec's order: the envelope, the routing headers, the
    version. Returns the version."""
    meta = message.meta
    missing = [k for k in (PROTOCOL_VERSION_KEY, CLIENT_CAPABILITIES_KEY) if k not in meta]
    if missing:
        raise McpError(INVALID_PARAMS, f"params._meta is missing the required key(s): {', '.join(missing)}")
    version = meta[PROTOCOL_VERSION_KEY]
    if headers.get("mcp-protocol-version") != version:
        raise McpError(HEADER_MISMATCH, "MCP-Protocol-Version does not match params._meta's protocol version")
    if headers.get("mcp-method") != message.method:
        raise McpError(HEADER_MISMATCH, "Mcp-Method does not match the request's method")
    name_key = NAME_PARAMS.get(message.method or "")
    if name_key is not None:
        value = message.params.get(name_key)
        if value is not None and headers.get("mcp-name") != value:
            raise McpError(HEADER_MISMATCH, f"Mcp-Name does not match the request's {name_key}")
    if not isinstance(version, str):
        raise McpError(INVALID_PARAMS, "the protocol version must be a string")
    if version not in MODERN_VERSIONS:
        raise unsupported_version(version, MODERN_VERSIONS)
    return version


@dataclass
class Session:
    """A 2025-11-25 session: whose it is, the version agreed, and whether it is confirmed."""

    id: str
    user_id: str
    version: str
    initialized: bool = False
    seen_s: float = field(default_factory=time.monotonic)


class Sessions:
    """Open handshake sessions, the oldest idle one dropped past ``max_sessions``."""

    def __init__(self, ttl_s: float, max_sessions: int) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._open: OrderedDict[str, Session] = OrderedDict()

    def open(self, user_id: str, version: str) -> Session:
        self._expire()
        while len(self._open) >= self.max_sessions:
            self._open.popitem(last=False)
        session = Session(uuid.uuid4().hex, user_id, version)
        self._open[session.id] = session
        return session

    def find(self, session_id: str, user_id: str) -> Session | None:
        """The session, if it is open and the caller's (another user's id is not found)."""
        self._expire()
        session = self._open.get(session_id)
        if session is None or session.user_id != user_id:
            return None
        session.seen_s = time.monotonic()
        self._open.move_to_end(session_id)
        return session

    def close(self, session_id: str, user_id: str) -> bool:
        if self.find(session_id, user_id) is None:
            return False
        del self._open[session_id]
        return True

    def _expire(self) -> None:
        limit = time.monotonic() - self.ttl_s
        while self._open:
            oldest = next(iter(self._open.values()))
            if oldest.seen_s >= limit:
                break
            self._open.popitem(last=False)


def _tool_entry(tool: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": tool.name,
        "title": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema(),
    }
    if tool.output_schema is not None:
        entry["outputSchema"] = tool.output_schema
    return entry


def tool_result(value: Any, *, error: bool = False) -> dict[str, Any]:
    """A ``tools/call`` result: the value as JSON text, and as structured content if an object."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": error}
    if isinstance(value, dict) and not error:
        result["structuredContent"] = value
    return result


def error_result(exc: ProvisioningError) -> dict[str, Any]:
    """A refused or failed call as the model should read it: what went wrong, the product's
    error code, and its details (the fields to correct, the permission missing)."""
    body: dict[str, Any] = {"error": exc.message, "code": exc.code}
    if exc.details:
        body["details"] = exc.details
    return tool_result(body, error=True)


class McpServer:
    """Answers MCP requests with the tools of one registry."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry

    def capabilities(self) -> dict[str, Any]:
        return {"tools": {"listChanged": False}}

    def server_info(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION}

    def initialize(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The handshake's answer: the client's version if spoken here, else the latest."""
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise McpError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string)")
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_HANDSHAKE
        return version, {
            "protocolVersion": version,
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
            "instructions": INSTRUCTIONS,
        }

    def discover(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": self.capabilities(),
            "instructions": INSTRUCTIONS,
            "ttlMs": 0,
            "cacheScope": "public",
        }

    def list_tools(self) -> dict[str, Any]:
        return {"tools": [_tool_entry(t) for t in self.registry.list()]}

    async def call_tool(self, params: dict[str, Any], call: ToolCall) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise McpError(INVALID_PARAMS, "tools/call needs params.name (a string)")
        arguments = params.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise McpError(INVALID_PARAMS, "params.arguments must be an object")
        if self.registry.get(name) is None:
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}", {"tool": name})
        try:
            value = await self.registry.call(name, arguments, call)
        except NotFound as exc:
            return error_result(exc)
        except ProvisioningError as exc:
            return error_result(exc)
        return tool_result(value)

    async def answer(self, message: Message, version: str, call: ToolCall) -> dict[str, Any]:
        """The result of a request (not ``initialize``: the transport opens the session)."""
        method = message.method
        modern = version in MODERN_VERSIONS
        if method == "tools/list":
            result = self.list_tools()
            if modern:
                result.update({"ttlMs": 0, "cacheScope": "private"})
        elif method == "tools/call":
            result = await self.call_tool(message.params, call)
        elif method == "server/discover" and modern:
            result = self.discover()
        elif method == "ping" and not modern:
            result = {}
        else:
            raise McpError(METHOD_NOT_FOUND, f"Method not found: {method}", {"method": method})
        if modern:
            result["resultType"] = "complete"
            result["_meta"] = {SERVER_INFO_KEY: self.server_info()}
        return result


def progress_notification(
    token: Any, progress: float, total: float | None, message: str | None
) -> dict[str, Any]:
    params: dict[str, Any] = {"progressToken": token, "progress": progress}
    if total is not None:
        params["total"] = total
    if message is not None:
        params["message"] = message
    return {"jsonrpc": "2.0", "method": "notifications/progress", "params": params}


def progress_token(message: Message) -> Any:
    token = message.meta.get("progressToken")
    return token if isinstance(token, str | int) and not isinstance(token, bool) else None


__all__ = ["McpError", "McpServer", "Message", "Progress", "Sessions"]
