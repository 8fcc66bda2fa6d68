"""The MCP Inspector's CLI (``npx @modelcontextprotocol/inspector --cli``) lists the tools of a
live orchestrator with an API token. Slow (npx fetches the Inspector at its first run):
``python3 -m pytest -m slow tests/orchestrator/mcp/test_inspector.py``."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tests.helpers.api_tokens import create_token
from tests.helpers.mcp import MCP_PATH
from tests.helpers.services import Services

INSPECTOR = "@modelcontextprotocol/inspector@latest"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
async def test_the_inspector_cli_lists_the_tools(services: Services) -> None:
    token, _ = await create_token(services, await services.admin())
    url = str(services.orch.make_url(MCP_PATH))
    process = await asyncio.create_subprocess_exec(
        "npx", "-y", INSPECTOR, "--cli", url, "--transport", "http", "--method", "tools/list",
        "--header", f"Authorization: Bearer {token}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 540)
    assert process.returncode == 0, err.decode()[-2000:]
    listed = json.loads(out)
    names = {t["name"] for t in listed["tools"]}
    assert {
        "provisioning.batch.submit",
        "provisioning.batch.validate",
        "provisioning.rollback.execute",
    } <= names
