"""The Model Context Protocol server and the seed's ``mcp_http`` routes over the tool registry.

``protocol.py`` speaks MCP's JSON-RPC (revisions 2026-07-28 and 2025-11-25);
``http_api.py`` carries it over Streamable HTTP in aiohttp and declares the routes
(:func:`~orchestrator.mcp.http_api.mcp_api`) that the built-in extension ``mcp_http``
mounts under ``/ext/mcp_http/``.
"""
