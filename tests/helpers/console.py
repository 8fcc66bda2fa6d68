"""A tiny console bundle (the shape a Vite build has) and a control center serving it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from control_center.app import create_app
from shared.settings import load_settings
from shared.store.store import Store

INDEX = (
    b'<!doctype html><html><head><script type="module" src="/assets/index-3f2a1b.js"></script>'
    b'<link rel="stylesheet" href="/assets/index-9c8d7e.css"></head><body><div id="root"></div></body></html>'
)
SCRIPT = b"document.getElementById('root').textContent = 'console';\n"
STYLE = b"body { margin: 0 }\n"


def make_bundle(root: Path) -> Path:
    """``index.html`` and ``assets/`` with a script and a stylesheet; returns ``root``."""
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "index-3f2a1b.js").write_bytes(SCRIPT)
    (root / "assets" / "index-9c8d7e.css").write_bytes(STYLE)
    return root


@asynccontextmanager
async def console_client(
    store: Store, data_dir: Path, bundle: Path, **overrides: Any
) -> AsyncIterator[TestClient]:
    """A control center (authentication off) serving ``bundle``, on ``store``."""
    settings = load_settings(db_url="mem://", data_dir=data_dir, auth_enabled=False, **overrides)
    client = TestClient(TestServer(create_app(settings, store=store, console_dir=bundle)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
