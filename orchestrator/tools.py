"""The tool registry: named, typed operations that ``/ext/mcp_http/invoke``, MCP and
extensions call (product tools under ``provisioning.``, extension tools under
``ext.{id}.``).

This is the minimal registry the extensions framework needs (the interface agreed
with the MCP work, which owns this module and its product tools): every call is
validated against the tool's input model (422 naming each field), authorized with
the same Casbin resource and action as the REST route it mirrors, and audited with
the caller's user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pydantic
from aiohttp import web

from shared.errors import NotFound
from shared.security.actor import Actor
from shared.security.audit import AUDIT
from shared.security.auth import ANONYMOUS, AUTH_BACKEND
from shared.web.validation import validation_failed


@dataclass(frozen=True)
class ToolCall:
    """Who calls, for policy and audit."""

    actor: Any  # shared.security.actor.Actor
    request: Any | None = None  # the aiohttp request when called over HTTP


@dataclass(frozen=True)
class Tool:
    name: str  # "provisioning.batch.submit" or "ext.{id}.{name}"
    description: str
    input_model: type[pydantic.BaseModel]
    handler: Callable[[ToolCall, pydantic.BaseModel], Awaitable[Any]]
    resource: str  # Casbin resource, e.g. "batch" or "ext:hello"
    action: str  # Casbin action, e.g. "create" or "invoke"
    output_schema: dict[str, Any] | None = None


class ToolRegistry:
    """Tools by name; one per app (:data:`TOOLS`)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def list(self) -> list[Tool]:
        return [self._tools[name] for name in sorted(self._tools)]

    async def call(self, name: str, arguments: dict[str, Any], call: ToolCall) -> Any:
        """Validate the arguments, authorize the caller, run the tool, audit the call."""
        tool = self._tools.get(name)
        if tool is None:
            raise NotFound(f"no tool named {name!r}", details={"tool": name})
        try:
            parsed = tool.input_model.model_validate(arguments)
        except pydantic.ValidationError as exc:
            raise validation_failed(exc, f"arguments of {name}") from exc
        actor = call.actor
        app = getattr(call.request, "app", None)  # over HTTP: that app's policy and audit log
        if app is not None:
            principal = actor.principal if isinstance(actor, Actor) and actor.principal else ANONYMOUS
            await app[AUTH_BACKEND].authorize(principal, tool.resource, tool.action, call.request)
        result = await tool.handler(call, parsed)
        if app is not None and isinstance(actor, Actor):
            await app[AUDIT].record_as(actor, f"tool.{name}", tool.resource, "success")
        return result


TOOLS = web.AppKey("tools", ToolRegistry)
