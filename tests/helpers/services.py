"""Both services on one real store over real HTTP, and the login journey (fixtures and helpers).

``services`` starts the control center and the orchestrator on one mem://
SurrealDB and one bus, with authentication on, as ``provisioning up`` does.
Helpers walk the real login journey (MFA enrolment included) to get tokens.

Every secret a helper handles (passwords, codes, tokens, TOTP secrets) is
registered, and after each test no captured log line may contain one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control_center.keys import MFA
from provisioning.server import build_apps
from shared.events.bus import EventBus
from shared.logs import JsonFormatter
from shared.settings import Settings, load_settings
from shared.store.store import Store
from shared.web.access_log import RedactingAccessLogger

ADMIN_PASSWORD = "first-boot-secret-for-tests"  # a password may not contain the username
USER_PASSWORD = "user-password-for-tests"
FAST_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}


class Secrets:
    """What must never show up in a log line."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: Any) -> None:
        for value in values:
            if isinstance(value, str) and len(value) >= 6:
                self.values.add(value)
            elif isinstance(value, list | tuple):
                self.add(*value)


@pytest.fixture
def secrets() -> Secrets:
    found = Secrets()
    found.add(ADMIN_PASSWORD, USER_PASSWORD)
    return found


@pytest.fixture(autouse=True)
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture, secrets: Secrets) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    formatter = JsonFormatter()
    records = [r for phase in ("setup", "call", "teardown") for r in caplog.get_records(phase)]
    for record in records:
        line = formatter.format(record)
        for secret in secrets.values:
            assert not logged(secret, line), f"a secret was logged by {record.name}: {line[:300]}"


def logged(secret: str, line: str) -> bool:
    """Whether ``secret`` is in a log line. A code of digits (TOTP, backup code) counts
    only as a number of its own: not as the fraction of a timestamp or a duration
    (``…:02.182305Z``, ``0.182305``), where six digits turn up by chance."""
    if not secret.isdigit():
        return secret in line
    return re.search(rf"(?<![0-9.]){secret}(?![0-9])", line) is not None


def cc_settings(tmp_path: Any, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "db_url": "mem://",
        "data_dir": tmp_path,
        "auth_enabled": True,
        "admin_password": ADMIN_PASSWORD,
        "rate_limit_auth": "1000/minute",
        "rate_limit_default": "10000/minute",
        "rate_limit_batch": "1000/minute",
        "auth_sync_s": 0,
        "default_initial_delay_s": 0.01,
        "default_max_delay_s": 0.05,
        **FAST_ARGON2,
    }
    values.update(overrides)
    return load_settings(**values)


class Clock:
    """The MFA service's time, moved by tests (a TOTP code works once per step)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def step(self, steps: int = 1) -> None:
        self.now += 30 * steps


@dataclass
class Services:
    cc: TestClient
    orch: TestClient
    store: Store
    clock: Clock
    secrets: Secrets
    totp_secrets: dict[str, str] = field(default_factory=dict)

    # -- the login journey --------------------------------------------------------

    def code(self, username: str) -> str:
        """The current TOTP code of a user's authenticator, at the next unused step."""
        self.clock.step()
        code = pyotp.TOTP(self.totp_secrets[username]).at(self.clock.now)
        self.secrets.add(code)
        return code

    async def login(
        self,
        username: str,
        password: str,
        mfa_code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"username": username, "password": password}
        if mfa_code is not None:
            body["mfa_code"] = mfa_code
        resp = await self.cc.post("/auth/login", json=body, headers=headers or {})
        doc: dict[str, Any] = await resp.json()
        data = doc.get("data") or {}
        if isinstance(data, dict):
            self.secrets.add(data.get("token"), data.get("refresh_token"), data.get("setup_token"))
        return resp.status, doc

    async def refresh(self, **body: str) -> tuple[int, dict[str, Any]]:
        """``POST /auth/refresh`` with this body; the tokens it returns are secrets."""
        resp = await self.cc.post("/auth/refresh", json=body)
        doc: dict[str, Any] = await resp.json()
        if isinstance(doc.get("data"), dict):
            self.secrets.add(doc["data"].get("token"), doc["data"].get("refresh_token"))
        return resp.status, doc

    async def enrol(self, username: str, password: str) -> list[str]:
        """Log in, enrol TOTP with the setup token (and the password, which each step
        asks for again); returns the backup codes."""
        status, doc = await self.login(username, password)
        assert status == 200, doc
        assert doc["data"]["mfa_setup_required"] is True, doc
        return await self.enrol_with(username, password, doc["data"]["setup_token"])

    async def enrol_with(self, username: str, password: str, setup: str) -> list[str]:
        """Enrol TOTP with this bearer token (a setup token, or a session's own token);
        returns the backup codes."""
        resp = await self.cc.post("/auth/mfa/setup", json={"password": password}, headers=bearer(setup))
        enrolment = (await resp.json())["data"]
        assert resp.status == 200, enrolment
        self.totp_secrets[username] = enrolment["secret"]
        self.secrets.add(enrolment["secret"])
        resp = await self.cc.post(
            "/auth/mfa/enable",
            json={"password": password, "code": self.code(username)},
            headers=bearer(setup),
        )
        doc = await resp.json()
        assert resp.status == 200, doc
        codes: list[str] = doc["data"]["backup_codes"]
        self.secrets.add(codes)
        return codes

    async def token(self, username: str, password: str) -> dict[str, Any]:
        """A full login (enrolling MFA first where needed): the login data."""
        status, doc = await self.login(username, password)
        if status == 401 and doc.get("code") == "mfa_required":
            status, doc = await self.login(username, password, self.code(username))
        elif status == 200 and doc["data"].get("mfa_setup_required"):
            await self.enrol(username, password)
            status, doc = await self.login(username, password, self.code(username))
        assert status == 200, doc
        data: dict[str, Any] = doc["data"]
        return data

    async def admin(self) -> str:
        return str((await self.token("admin", ADMIN_PASSWORD))["token"])

    async def user(
        self,
        username: str,
        *roles: str,
        admin_token: str | None = None,
    ) -> tuple[str, str]:
        """Create a user with these roles and log them in: (user id, access token)."""
        admin_token = admin_token or await self.admin()
        resp = await self.cc.post(
            "/users",
            headers=bearer(admin_token),
            json={
                "username": username,
                "email": f"{username}@example.com",
                "password": USER_PASSWORD,
                "roles": list(roles),
            },
        )
        doc = await resp.json()
        assert resp.status == 201, doc
        data = await self.token(username, USER_PASSWORD)
        return doc["data"]["id"], str(data["token"])


def both_apps(settings: Settings, store: Store, bus: EventBus) -> tuple[web.Application, web.Application]:
    """The control center's and the orchestrator's apps on one store and bus, built by the
    composition root ``provisioning up`` uses; start them in this order."""
    apps = build_apps(settings, store, bus)
    assert apps.control_center is not None and apps.orchestrator is not None
    return apps.control_center, apps.orchestrator


@asynccontextmanager
async def running_apps(settings: Settings, store: Store) -> AsyncIterator[tuple[TestClient, TestClient]]:
    """Both services started on ``store`` (a bus of their own) as plain test clients:
    ``(control center, orchestrator)``; stopped on exit, the store left open."""
    cc_app, orch_app = both_apps(settings, store, EventBus())
    cc, orch = TestClient(TestServer(cc_app)), TestClient(TestServer(orch_app))
    await cc.start_server()
    await orch.start_server()
    try:
        yield cc, orch
    finally:
        await orch.close()
        await cc.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def serve(app: web.Application) -> TestServer:
    """A started test server whose access log redacts ``?token=`` (as ``up`` should)."""
    server = TestServer(app)
    await server.start_server(access_log_class=RedactingAccessLogger)
    return server


@pytest.fixture
def shared_store(store: Store) -> Store:
    """The one store both services of a test share (tests/conftest.py opens and closes it)."""
    return store


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override per module (or per test, via parametrize) to change the services' settings."""
    return {}


@pytest.fixture
async def services(
    shared_store: Store,
    aiohttp_client: Any,
    tmp_path: Any,
    secrets: Secrets,
    settings_overrides: dict[str, Any],
) -> Services:
    # The store comes first so that it closes after the apps stop.
    settings = cc_settings(tmp_path, **settings_overrides)
    cc_app, orch_app = both_apps(settings, shared_store, EventBus())
    cc = await aiohttp_client(await serve(cc_app))
    orch = await aiohttp_client(await serve(orch_app))
    clock = Clock(1_800_000_000.0)
    cc.app[MFA].clock = clock
    return Services(cc, orch, shared_store, clock, secrets)
