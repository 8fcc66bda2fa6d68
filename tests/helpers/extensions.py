"""Extensions written to temporary directories, and an orchestrator that finds them
(no fixtures here)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from orchestrator.app import create_app
from shared.settings import load_settings

# An extension with one route (GET /ext/{id}/ping, ext:{id} read) and nothing else.
PING = """
from aiohttp import web
from shared.web.envelope import ok
from shared.web.routing import STR, Api, obj

class Ext:
    def setup(self, context):
        api = Api()

        @api.route("GET", "/ping", resource="ext", action="read", response=obj({"pong": STR}))
        async def ping(request: web.Request) -> web.Response:
            return ok({"pong": context.extension_id})

        context.routes.include(api)

def get_extension():
    return Ext()
"""


def manifest(ext_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": ext_id, "name": ext_id.title(), "version": "1.0.0", "grants": ["ROUTES"], **fields}


def write_extension(
    root: Path, ext_id: str, code: str = PING, *, folder: str | None = None, **fields: Any
) -> Path:
    """``root/<folder or id>/`` with extension.json and extension.py; returns the folder."""
    where = root / (folder or ext_id)
    where.mkdir(parents=True, exist_ok=True)
    (where / "extension.json").write_text(json.dumps(manifest(ext_id, **fields)))
    (where / "extension.py").write_text(textwrap.dedent(code))
    return where


def write_single_file(root: Path, ext_id: str, code: str = PING, **fields: Any) -> Path:
    """A single ``.py`` extension whose manifest is its literal ``MANIFEST``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{ext_id}_ext.py"
    path.write_text(f"MANIFEST = {manifest(ext_id, **fields)!r}\n" + textwrap.dedent(code))
    return path


def ext_settings(tmp_path: Path, paths: list[Path], **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "db_url": "mem://",
        "data_dir": tmp_path,
        "auth_enabled": False,
        "ext_paths": [str(p) for p in paths],
        "command_work_root": str(tmp_path / "work"),
        **overrides,
    }
    return load_settings(**values)


async def orchestrator(
    aiohttp_client: Any, tmp_path: Path, paths: list[Path], **overrides: Any
) -> TestClient:
    """An orchestrator (open access, mem:// store) that discovers extensions in ``paths``."""
    client: TestClient = await aiohttp_client(create_app(ext_settings(tmp_path, paths, **overrides)))
    return client


async def status(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/ext/status")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc
