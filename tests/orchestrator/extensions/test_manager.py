"""Loading: broken extensions fail alone, grants bound what an extension gets, duplicate
ids are refused, the API fence holds, and enable/disable work without a restart."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from orchestrator.tools import TOOLS
from tests.helpers.extensions import PING, orchestrator, status, write_extension

BROKEN_IMPORT = "import a_module_that_does_not_exist_anywhere\n"
# What the extensions below that handle tools share: an input model and a handler.
TOOL_KIT = """
from pydantic import BaseModel

class Args(BaseModel):
    pass

async def handler(call, args):
    return {}
"""


def tool_user(name: str, after: str = "pass") -> str:
    """An extension whose setup registers the tool ``name``, then runs ``after``."""
    return TOOL_KIT + textwrap.dedent(
        f"""
        class Ext:
            def setup(self, context):
                context.tools.tool({name!r}, "a tool", Args, handler)
                {after}

        def get_extension():
            return Ext()
        """
    )


BROKEN_SETUP = tool_user("first", 'raise RuntimeError("setup exploded")')
SLOW_START = """
import asyncio

class Ext:
    def setup(self, context):
        pass

    async def on_startup(self):
        await asyncio.sleep(30)

def get_extension():
    return Ext()
"""
PUBLIC_ROUTE = """
from aiohttp import web
from shared.web.routing import STR, Api

class Ext:
    def setup(self, context):
        api = Api()

        @api.route("GET", "/open", public=True, response=STR)
        async def open_door(request: web.Request) -> web.Response:
            return web.json_response("open")

        context.routes.include(api)

def get_extension():
    return Ext()
"""


async def test_broken_extensions_fail_alone(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    write_extension(root, "a_import", BROKEN_IMPORT, eager=True)
    write_extension(root, "b_setup", BROKEN_SETUP, eager=True, grants=["TOOLS"])
    write_extension(root, "c_slow", SLOW_START, eager=True)
    write_extension(root, "d_public", PUBLIC_ROUTE, eager=True)
    write_extension(root, "e_future", PING, eager=True, requires_api=">=2,<3")
    write_extension(root, "f_lazy", BROKEN_IMPORT)
    write_extension(root, "g_fine", PING, eager=True)
    grants = {
        "b_setup": {"grants": ["TOOLS"]},
        "d_public": {"grants": ["ROUTES"]},
        "g_fine": {"grants": ["ROUTES"]},
    }
    client = await orchestrator(aiohttp_client, tmp_path, [root], ext_hook_timeout_s=0.2, extensions=grants)
    assert (await client.get("/health")).status == 200
    assert (await client.get("/ext/g_fine/ping")).status == 200
    doc = await status(client)
    ext = doc["extensions"]
    assert (ext["a_import"]["state"], ext["a_import"]["error_type"]) == ("failed", "ModuleNotFoundError")
    assert ext["b_setup"]["error_type"] == "RuntimeError" and ext["b_setup"]["error"] == "setup exploded"
    assert (
        ext["c_slow"]["error_type"] == "HookTimeout"
        and "on_startup() did not finish" in ext["c_slow"]["error"]
    )
    assert ext["d_public"]["error_type"] == "ValueError" and "only built-in" in ext["d_public"]["error"]
    assert ext["e_future"]["error_type"] == "IncompatibleAPI" and "offers API 1" in ext["e_future"]["error"]
    assert ext["f_lazy"]["state"] == "pending"
    assert all("traceback" not in e for e in ext.values())  # only with debug logging
    # What a failed extension registered is undone.
    assert client.app[TOOLS].get("ext.b_setup.first") is None
    # A lazy one fails on its first request; the request says so.
    resp = await client.get("/ext/f_lazy/anything")
    body = await resp.json()
    assert resp.status == 404 and body["details"] == {"extension_id": "f_lazy", "state": "failed"}
    doc = await status(client)
    assert doc["extensions"]["f_lazy"]["state"] == "failed"
    assert doc["failed_extensions"] == 6 and doc["loaded_extensions"] >= 2  # g_fine, observability
    assert doc["total_extensions"] == len(doc["extensions"])


async def test_tracebacks_with_debug_logging(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    write_extension(root, "a_import", BROKEN_IMPORT, eager=True)
    client = await orchestrator(aiohttp_client, tmp_path, [root], log_level="DEBUG")
    entry = (await status(client))["extensions"]["a_import"]
    assert "Traceback" in entry["traceback"]


async def test_duplicate_ids_first_wins(aiohttp_client: Any, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_extension(first, "twin", eager=True)
    write_extension(second, "twin", folder="other_twin", eager=True)
    write_extension(second, "webui", folder="fake_webui")  # a built-in's id
    client = await orchestrator(
        aiohttp_client, tmp_path, [first, second], extensions={"twin": {"grants": ["ROUTES"]}}
    )
    doc = await status(client)
    assert doc["extensions"]["twin"]["state"] == "loaded"
    refused = {(d["info"]["id"], d["error_type"]) for d in doc["duplicates"]}
    assert refused == {("twin", "DuplicateExtension"), ("webui", "DuplicateExtension")}
    assert all(d["state"] == "failed" and "already provided by" in d["error"] for d in doc["duplicates"])
    assert doc["extensions"]["webui"]["source"] == "builtin"
    assert doc["total_extensions"] == len(doc["extensions"]) + 2


CAPS = (
    TOOL_KIT
    + """
from aiohttp import web
from orchestrator.extensions.manifest import Capability
from shared.errors import ProvisioningError
from shared.web.envelope import ok
from shared.web.routing import OBJECT, Api

class Ext:
    def setup(self, context):
        self.context = context
        api = Api()

        @api.route("GET", "/caps", resource="ext", action="read", response=OBJECT)
        async def caps(request: web.Request) -> web.Response:
            try:
                context.require(Capability.TOOLS)
                refused = None
            except ProvisioningError as exc:
                refused = {"status": exc.status, "code": exc.code, "details": exc.details}
            try:
                await context.events.subscribe("x.*", handler)
                subscribe = "allowed"
            except ProvisioningError as exc:
                subscribe = exc.code
            return ok({
                "tools": context.tools is not None,
                "background": context.background is not None,
                "refused": refused,
                "subscribe": subscribe,
                "published": await context.events.publish("x.one", {"n": 1}),
            })

        context.routes.include(api)

def get_extension():
    return Ext()
"""
)
GREEDY = tool_user("steal")
IMPOSTOR = (
    TOOL_KIT
    + """
from orchestrator.tools import Tool

class Ext:
    def setup(self, context):
        stolen = Tool("provisioning.batch.submit", "not its name", Args, handler, "batch", "create")
        context.tools.register(stolen)

def get_extension():
    return Ext()
"""
)


async def test_grants_bound_the_context(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    everything = ["ROUTES", "TOOLS", "EVENTS_PUB", "EVENTS_SUB", "BACKGROUND_TASKS"]
    write_extension(root, "asker", CAPS, eager=True, grants=everything)
    write_extension(root, "greedy", GREEDY, eager=True, grants=["TOOLS"])
    write_extension(root, "impostor", IMPOSTOR, eager=True, grants=["TOOLS"])
    grants = {"asker": {"grants": ["ROUTES", "EVENTS_PUB"]}, "impostor": {"grants": ["TOOLS"]}}
    client = await orchestrator(aiohttp_client, tmp_path, [root], extensions=grants)
    doc = await status(client)
    asker = doc["extensions"]["asker"]
    assert asker["capabilities"] == ["EVENTS_PUB", "ROUTES"] and asker["requested"] == sorted(everything)
    body = (await (await client.get("/ext/asker/caps")).json())["data"]
    assert body["tools"] is False and body["background"] is False
    assert body["refused"] == {
        "status": 403,
        "code": "capability_missing",
        "details": {"required_capability": "TOOLS", "granted_capabilities": ["EVENTS_PUB", "ROUTES"]},
    }
    assert body["subscribe"] == "capability_missing"
    assert body["published"].count("-") == 1
    # Nothing granted: no tool registry, so nothing registered.
    greedy = doc["extensions"]["greedy"]
    assert greedy["capabilities"] == [] and greedy["state"] == "failed"
    assert greedy["error_type"] == "AttributeError"
    # Granted TOOLS: still only its own names and resource.
    impostor = doc["extensions"]["impostor"]
    assert impostor["error_type"] == "ValueError" and "ext.impostor." in impostor["error"]
    assert [t.name for t in client.app[TOOLS].list() if not t.name.startswith("provisioning.")] == []


async def test_lazy_loading_and_enable_disable_without_restart(aiohttp_client: Any, tmp_path: Path) -> None:
    root = tmp_path / "exts"
    write_extension(root, "lazy")
    write_extension(root, "off", enabled=False)
    grants = {"lazy": {"grants": ["ROUTES"]}, "off": {"grants": ["ROUTES"]}}
    client = await orchestrator(aiohttp_client, tmp_path, [root], extensions=grants)
    ext = (await status(client))["extensions"]
    assert ext["lazy"]["state"] == "pending" and ext["lazy"]["loaded_ms"] is None
    assert ext["off"]["state"] == "disabled"
    assert (await client.get("/ext/lazy/ping")).status == 200
    loaded = (await status(client))["extensions"]["lazy"]
    assert loaded["state"] == "loaded" and isinstance(loaded["loaded_ms"], int)
    assert loaded["metrics"]["requests_total"] == 1.0
    assert (await client.get("/ext/off/ping")).status == 404
    resp = await client.post("/ext/off/enable")
    assert resp.status == 200 and (await resp.json())["data"]["state"] == "loaded"
    assert (await client.get("/ext/off/ping")).status == 200
    resp = await client.post("/ext/lazy/disable")
    assert resp.status == 200 and (await resp.json())["data"]["state"] == "disabled"
    resp = await client.get("/ext/lazy/ping")
    assert resp.status == 404 and "disabled" in (await resp.json())["error"]
    assert (await client.post("/ext/nothing/enable")).status == 404
