"""Both services on real 127.0.0.1 ports, as ``provisioning up`` runs them, for the fuzzers.

schemathesis drives servers through HTTP (its ASGI/WSGI loaders do not apply to
aiohttp), so :class:`LiveServices` runs the control center and the orchestrator
on one ``mem://`` store and one bus in a background thread with its own event
loop, on free ports, with authentication on. An admin token is obtained through
the real login journey: password login, MFA enrolment with the setup token, then
a login with a backup code (a TOTP code works once per 30 s step).

Settings differ from a default install only where the fuzzer needs it:

* rate limits off: thousands of requests a minute from one address would
  otherwise be answered 429 (documented, so no failure, but nothing else would be
  exercised);
* ``command`` operations run by the ``noop`` provider: fuzzed argv must never
  run on the host;
* fast argon2 and short retry delays, so the 2-core CI machine keeps up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from provisioning.server import build_apps
from shared.events.bus import EventBus
from shared.settings import Settings, load_settings
from shared.store.store import Store

ADMIN_PASSWORD = "fuzzer-first-boot-secret"
FUZZ_SETTINGS: dict[str, Any] = {
    "db_url": "mem://",
    "auth_enabled": True,
    "admin_password": ADMIN_PASSWORD,
    "rate_limit_auth": "off",
    "rate_limit_default": "off",
    "rate_limit_batch": "off",
    "provider_map": {"command": "noop"},
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8,
    "argon2_parallelism": 1,
    "auth_sync_s": 0,
    "default_initial_delay_s": 0.01,
    "default_max_delay_s": 0.05,
    "access_log": False,
}


def fuzz_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(data_dir=data_dir, **{**FUZZ_SETTINGS, **overrides})


@dataclass
class LiveServices:
    """The two services in a thread; ``start()`` returns once both listen."""

    settings: Settings
    cc_url: str = ""
    orch_url: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def start(self) -> LiveServices:
        self._thread = threading.Thread(target=self._run, name="live-services", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the services did not start within 60 s")
        if self._error is not None:
            raise RuntimeError("the services failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() if it happens before ready
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        store = Store("mem://")
        await store.open()
        bus = EventBus()
        runners: list[web.AppRunner] = []
        try:
            # Built by the composition root `provisioning up` uses, started in its order
            # (the control center first: it bootstraps the keys).
            for name, app in build_apps(self.settings, store, bus).in_start_order():
                runner = web.AppRunner(app, shutdown_timeout=2.0)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                runners.append(runner)
                port = runner.addresses[0][1]
                url = f"http://127.0.0.1:{port}"
                if name == "control_center":
                    self.cc_url = url
                else:
                    self.orch_url = url
            self._ready.set()
            await self._stop.wait()
        finally:
            for runner in reversed(runners):
                with contextlib.suppress(Exception):
                    await runner.cleanup()
            await store.close()


def login_admin(cc_url: str, password: str = ADMIN_PASSWORD) -> str:
    """The real journey: password → MFA enrolment with the setup token → login with MFA."""
    import pyotp

    with requests.Session() as http:
        first = http.post(
            f"{cc_url}/auth/login", json={"username": "admin", "password": password}, timeout=30
        )
        data = first.json()["data"]
        assert first.status_code == 200 and data.get("mfa_setup_required"), first.text
        setup = {"Authorization": f"Bearer {data['setup_token']}"}
        enrol = http.post(f"{cc_url}/auth/mfa/setup", json={"password": password}, headers=setup, timeout=30)
        assert enrol.status_code == 200, enrol.text
        code = pyotp.TOTP(enrol.json()["data"]["secret"]).now()
        enabled = http.post(
            f"{cc_url}/auth/mfa/enable", json={"password": password, "code": code}, headers=setup, timeout=30
        )
        assert enabled.status_code == 200, enabled.text
        backup = enabled.json()["data"]["backup_codes"][0]
        final = http.post(
            f"{cc_url}/auth/login",
            json={"username": "admin", "password": password, "mfa_code": backup},
            timeout=30,
        )
        assert final.status_code == 200, final.text
        return str(final.json()["data"]["token"])


@contextlib.contextmanager
def live_services(data_dir: Path, **overrides: Any) -> Iterator[LiveServices]:
    services = LiveServices(fuzz_settings(data_dir, **overrides)).start()
    try:
        yield services
    finally:
        services.stop()
