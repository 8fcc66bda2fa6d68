"""The tool registry: what an assistant (MCP) or ``/ext/mcp_http/invoke`` may call.

A :class:`Tool` is a name (``provisioning.batch.submit``; ``ext.{id}.{name}`` for an
extension's), a description, a pydantic model for its arguments (its JSON Schema is
what clients see), an async handler, and the Casbin ``resource``/``action`` of the
REST route it mirrors. :meth:`ToolRegistry.call` is the one door: it validates the
arguments (a 422 naming each field), authorizes the caller with the same policies
and conditions as the mirrored route (a batch: operation by operation), runs the
handler and audits the call with the caller's user. Callers (MCP, ``/invoke``)
only translate: they never run a handler themselves.

The orchestrator's own tools are in :mod:`orchestrator.product_tools`; the app holds
its one registry under :data:`TOOLS`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web

from shared.errors import Forbidden, NotFound, ProvisioningError, ValidationFailed
from shared.security.audit import AuditLog
from shared.security.auth import AuthBackend, OpenAccess
from shared.security.backend import SecurityBackend
from shared.web.validation import validation_failed

log = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # MCP's tool-name characters
# A progress report: (progress, total or None, message or None).
Progress = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    """Who calls, for policy and audit; ``request`` when called over HTTP; ``progress``
    when the caller can stream progress reports (MCP with a progress token)."""

    actor: Any  # shared.security.actor.Actor
    request: Any | None = None  # the aiohttp request when called over HTTP
    progress: Progress | None = None

    async def report(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress is not None:
            await self.progress(progress, total, message)


Handler = Callable[[ToolCall, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Tool:
    """One callable tool; ``route`` names the REST route it mirrors (``POST /batch/execute``),
    whose path policy conditions see; ``document`` turns the arguments into the body that
    route would get (what conditions on ``batch`` and ``operation`` read)."""

    name: str
    description: str
    input_model: type[pydantic.BaseModel]
    handler: Handler
    resource: str  # Casbin resource, e.g. "batch" or "ext:hello"
    action: str  # Casbin action, e.g. "execute" or "invoke"
    output_schema: dict[str, Any] | None = None
    route: str | None = None
    document: Callable[[dict[str, Any]], Any] | None = None

    def input_schema(self) -> dict[str, Any]:
        """The arguments' JSON Schema, generated from the model (an object at the top)."""
        schema = self.input_model.model_json_schema()
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})
        return schema

    @property
    def route_path(self) -> str | None:
        return self.route.split(" ", 1)[1] if self.route else None


class ToolRegistry:
    """The tools of one app, called with validation, authorization and audit."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._backend: AuthBackend | None = None
        self._audit: AuditLog | None = None

    def bind(self, backend: AuthBackend, audit: AuditLog) -> None:
        """The app's auth backend and audit log (wired in ``orchestrator/app.py``)."""
        self._backend = backend
        self._audit = audit

    def register(self, tool: Tool) -> None:
        if not NAME.match(tool.name):
            raise ValueError(f"tool name {tool.name!r} must match {NAME.pattern}")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def list(self) -> list[Tool]:
        return sorted(self._tools.values(), key=lambda t: t.name)

    async def call(self, name: str, arguments: dict[str, Any], call: ToolCall) -> Any:
        """Validate, authorize, run and audit one call. Raises ``NotFound`` (no such tool),
        ``ValidationFailed`` (naming each bad field), ``Forbidden`` (the policy), or what
        the handler raises (its error tree: ``Conflict``, ``NotFound`` …)."""
        tool = self._tools.get(name)
        if tool is None:
            raise NotFound(f"no tool named {name!r}", details={"tool": name})
        if self._backend is None or self._audit is None:
            raise RuntimeError("the tool registry is not bound to the app's security")
        if not isinstance(arguments, dict):
            raise ValidationFailed(
                "arguments must be an object",
                details={"fields": [{"field": "arguments", "message": "must be an object"}]},
            )
        try:
            args = tool.input_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            error = validation_failed(exc, f"arguments of {name}")
            await self._record(call, tool, "failure", error)
            raise error from None
        try:
            await self._authorize(call, tool, arguments)
        except Forbidden as exc:
            await self._record(call, tool, "denied", exc)
            raise
        try:
            result = await tool.handler(call, args)
        except ProvisioningError as exc:
            await self._record(call, tool, "failure", exc)
            raise
        await self._record(call, tool, "success", None)
        return result

    async def _authorize(self, call: ToolCall, tool: Tool, arguments: dict[str, Any]) -> None:
        backend = self._backend
        if isinstance(backend, OpenAccess):
            return
        if not isinstance(backend, SecurityBackend):
            raise Forbidden("tools cannot be authorized by this service's auth backend")
        document = tool.document(arguments) if tool.document is not None else arguments
        await backend.authorize_actor(
            call.actor, tool.resource, tool.action, document=document, path=tool.route_path
        )

    async def _record(self, call: ToolCall, tool: Tool, result: str, error: ProvisioningError | None) -> None:
        assert self._audit is not None
        details: dict[str, Any] = {"tool": tool.name, "route": tool.route}
        if error is not None:
            details["error"] = error.message
            details["code"] = error.code
        try:
            await self._audit.record_as(
                call.actor, f"tool.{tool.name}", f"{tool.resource}:{tool.action}", result, details=details
            )
        except ProvisioningError as exc:  # the call's outcome stands; a lost record is logged
            log.error("could not audit a tool call", extra={"tool": tool.name, "error": str(exc)})


TOOLS = web.AppKey("tools", ToolRegistry)
