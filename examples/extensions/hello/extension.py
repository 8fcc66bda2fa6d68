"""The ``hello`` extension: everything an extension can add, in one small file.

* a route: ``GET /ext/hello/greet/{name}`` (``ext:hello`` read) greets, and publishes
  the greeting to the event stream ``hello.greetings``; ``GET /ext/hello/stats`` says
  how many greetings its subscriber has seen;
* a tool: ``ext.hello.greet`` (``ext:hello`` invoke), for ``/invoke`` and MCP;
* an event stream: publishes to ``hello.greetings``, subscribes to ``hello.*``;
* a provider: ``hello``, which batches name as ``"provider": "hello"``.

Install: put this directory in ``PROVISIONING_EXT_PATHS`` and grant what it asks for::

    [extensions.hello]
    grants = ["ROUTES", "TOOLS", "EVENTS_PUB", "EVENTS_SUB", "PROVIDERS"]

Each handle is ``None`` unless granted: the extension then does without that part.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.extensions.context import ExtensionContext
from orchestrator.extensions.streams import StreamEvent
from orchestrator.models import OperationSpec
from orchestrator.providers.base import OperationContext, OperationResult
from orchestrator.tools import ToolCall
from shared.web.envelope import ok
from shared.web.routing import INT, STR, Api, obj

STREAM = "hello.greetings"


class GreetArgs(BaseModel):
    """The tool's input."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")


def greeting(name: str) -> str:
    return f"Hello, {name}!"


class HelloProvider:
    """An orchestrator provider: ``apply`` greets the operation, ``rollback`` says goodbye."""

    name = "hello"

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "hello", [spec.id]

    def check(self, spec: OperationSpec, provider: str) -> str:
        return f"would greet {spec.id}"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output=greeting(ctx.name), results={"greeted": ctx.name})

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output=f"Goodbye, {ctx.name}!")


class Hello:
    def __init__(self) -> None:
        self.context: ExtensionContext | None = None
        self.seen = 0

    async def setup(self, context: ExtensionContext) -> None:
        self.context = context
        if context.routes is not None:
            context.routes.include(self.api())
        if context.tools is not None:
            context.tools.tool(
                "greet",
                "Greet someone by name (and publish the greeting to hello.greetings)",
                GreetArgs,
                self.greet_tool,
                output_schema=obj({"greeting": STR, "event_id": {"type": ["string", "null"]}}),
            )
        if context.events is not None and "EVENTS_SUB" in context.capabilities:
            await context.events.subscribe("hello.*", self.on_event)
        if context.providers is not None:
            context.providers.register("hello", HelloProvider())

    async def greet(self, name: str) -> dict[str, Any]:
        """Greet, and publish the greeting when allowed to."""
        text = greeting(name)
        event_id = None
        if self.context is not None and "EVENTS_PUB" in self.context.capabilities:
            assert self.context.events is not None
            event_id = await self.context.events.publish(STREAM, {"greeting": text})
        return {"greeting": text, "event_id": event_id}

    async def greet_tool(self, call: ToolCall, args: BaseModel) -> dict[str, Any]:
        assert isinstance(args, GreetArgs)
        return await self.greet(args.name)

    async def on_event(self, event: StreamEvent) -> None:
        self.seen += 1

    def health(self) -> dict[str, str]:
        return {"greeter": "healthy"}

    def api(self) -> Api:
        api = Api()

        @api.route(
            "GET",
            "/greet/{name}",
            resource="ext",  # every route of an extension is authorized as ext:{id}
            action="read",
            summary="Greet someone",
            response=obj({"greeting": STR, "event_id": {"type": ["string", "null"]}}),
        )
        async def greet_route(request: web.Request) -> web.Response:
            name = request.match_info["name"][:64]
            return ok(await self.greet(name))

        @api.route(
            "GET",
            "/stats",
            resource="ext",
            action="read",
            summary="Greetings the subscriber has seen",
            response=obj({"seen": INT}),
        )
        async def stats(request: web.Request) -> web.Response:
            return ok({"seen": self.seen})

        return api


def get_extension() -> Hello:
    return Hello()
