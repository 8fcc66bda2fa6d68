"""The MCP extension: mounts :mod:`orchestrator.mcp`'s documented routes (``meta``,
``handshake``, ``tools``, ``invoke`` and the Streamable HTTP endpoint ``mcp``) over the
shared tool registry, under ``/ext/mcp_http/``."""

from __future__ import annotations

from orchestrator.extensions.context import ExtensionContext
from orchestrator.mcp.http_api import mcp_api


class McpHttp:
    def setup(self, context: ExtensionContext) -> None:
        assert context.routes is not None and context.tools is not None  # granted by the manifest
        context.routes.include(mcp_api(context.tools, prefix=""))

    def health(self) -> dict[str, str]:
        return {"mcp": "healthy"}


def get_extension() -> McpHttp:
    return McpHttp()
