"""Both services on a real file-backed store (``surrealkv://`` under a temporary data
directory), opened the way ``provisioning up`` opens it (``open_store``): for what
only a data directory on disk can show (files, permissions, restarts, key files)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from control_center.keys import MFA
from shared.events.bus import EventBus
from shared.settings import Settings
from shared.web.app import open_store
from tests.helpers.services import Clock, Secrets, Services, both_apps, cc_settings, serve


def file_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings on ``<tmp_path>/data``; the key file lands beside it, ``<tmp_path>/secret.key``."""
    return cc_settings(tmp_path, db_url="", data_dir=tmp_path / "data", **overrides)


@asynccontextmanager
async def file_services(
    settings: Settings,
    aiohttp_client: Any,
    secrets: Secrets,
    previous: Services | None = None,
) -> AsyncIterator[Services]:
    """Start both services on the data directory; stop them and close the store on exit.
    ``previous`` (the same data directory's last run) lends its authenticator clock and
    TOTP secrets, so codes already used stay used."""
    store = open_store(settings)
    await store.open()
    try:
        cc_app, orch_app = both_apps(settings, store, EventBus())
        cc = await aiohttp_client(await serve(cc_app))
        orch = await aiohttp_client(await serve(orch_app))
        clock = previous.clock if previous else Clock(1_800_000_000.0)
        cc.app[MFA].clock = clock
        services = Services(cc, orch, store, clock, secrets)
        if previous:
            services.totp_secrets.update(previous.totp_secrets)
        try:
            yield services
        finally:
            await orch.close()
            await cc.close()
    finally:
        await store.close()


def files_under(root: Path) -> list[Path]:
    """Every directory and file below ``root`` (and ``root`` itself)."""
    found = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        found.extend(Path(dirpath) / n for n in (*dirnames, *filenames))
    return found


def grep(root: Path, needle: bytes) -> list[Path]:
    """The files below ``root`` whose bytes contain ``needle`` (``grep -rla``)."""
    return [p for p in files_under(root) if p.is_file() and needle in p.read_bytes()]
