"""The Model Context Protocol over HTTP, at ``/ext/mcp_http/``."""
