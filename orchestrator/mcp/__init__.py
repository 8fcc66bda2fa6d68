"""The Model Context Protocol server and the seed's ``mcp_http`` routes over the tool registry.

``protocol.py`` speaks MCP's JSON-RPC (revisions 2026-07-28 and 2025-11-25);
``http_api.py`` carries it over Streamable HTTP in aiohttp and gives the routes
(:func:`~orchestrator.mcp.http_api.mcp_routes`) for ``/ext/mcp_http/``.
"""

from orchestrator.mcp.http_api import mcp_routes

__all__ = ["mcp_routes"]
