"""The MCP extension: mounts ``orchestrator.mcp``'s routes (``mcp_routes(registry)``,
paths ``meta``, ``handshake``, ``tools``, ``invoke``, ``mcp``) over the tool registry.
Without that package it mounts nothing and its health says why."""

from __future__ import annotations

import importlib

from orchestrator.extensions.context import ExtensionContext

MCP_MODULE = "orchestrator.mcp"


class McpHttp:
    def __init__(self) -> None:
        self.missing: str | None = None

    def setup(self, context: ExtensionContext) -> None:
        assert context.routes is not None and context.tools is not None  # granted by the manifest
        try:
            module = importlib.import_module(MCP_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != MCP_MODULE:
                raise
            self.missing = f"pending: {MCP_MODULE} is not installed"
            context.log.warning("no MCP routes: %s is not installed", MCP_MODULE)
            return
        context.routes.add(module.mcp_routes(context.tools))

    def health(self) -> dict[str, str]:
        return {"mcp": self.missing or "healthy"}


def get_extension() -> McpHttp:
    return McpHttp()
