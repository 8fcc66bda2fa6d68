"""Fixtures shared by every suite: settings on the real embedded store, app clients."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from orchestrator.app import create_app as create_orchestrator
from provisioning.doctor import check_runner_user
from shared.settings import Settings, load_settings
from shared.store.store import Store


@pytest.fixture(scope="session", autouse=True)
def command_work_base() -> Iterator[Path]:
    """As root, command operations run as the runner user: make sure it exists (a real
    useradd, through the doctor), and keep work roots where it can reach them (pytest's
    own temporary directories are 0700). Settings built without a work root share one."""
    if os.geteuid() == 0:
        [found] = check_runner_user(load_settings(), True)
        assert found.ok, found.message
    base = Path(tempfile.mkdtemp(prefix="provisioning-work-"))
    base.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROVISIONING_COMMAND_WORK_ROOT", str(base / "shared"))
        # Passwords hashed in a worker thread, not a forked child (the product's default,
        # tested on its own in tests/control_center/test_password_child.py): a fork of
        # pytest's big process per hash cost ~65 s of system time in tests/security alone.
        mp.setenv("PROVISIONING_PASSWORD_HASH_IN_CHILD", "false")
        yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def work_root(command_work_base: Path) -> Path:
    """A fresh command work root for one test (created, for the runner, on first use)."""
    return command_work_base / uuid.uuid4().hex


@pytest.fixture
def settings(tmp_path: Any, work_root: Path) -> Settings:
    """Settings on a fresh in-memory SurrealDB with authentication off (the orchestrator's
    own suites); fast retries so failure paths do not wait."""
    return load_settings(
        db_url="mem://",
        data_dir=tmp_path,
        command_work_root=str(work_root),
        auth_enabled=False,
        default_initial_delay_s=0.01,
        default_max_delay_s=0.05,
        webhooks_allow_private=True,
    )


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    s = Store("mem://")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def orch(aiohttp_client: Any, settings: Settings) -> TestClient:
    """A real HTTP client on a real orchestrator app (mem:// store, open access)."""
    return await aiohttp_client(create_orchestrator(settings))
