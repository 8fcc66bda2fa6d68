"""API2 broken authentication: the first admin's generated password went into the logs.

Issue 8, finding 8: with ``PROVISIONING_ADMIN_PASSWORD`` unset, the generated
password was printed on stderr, into the JSON log stream a service manager
keeps and ships. Now it is printed only on a terminal; otherwise it is written
to ``<data dir>/initial-admin-password`` (0600) and only the path is logged.
"""

from __future__ import annotations

import logging
import stat
from typing import Any

import pytest
from aiohttp import web

from control_center.app import create_app as create_control_center
from shared.errors import ValidationFailed
from shared.store.store import Store
from tests.helpers.services import Secrets, cc_settings


async def test_without_a_terminal_the_password_goes_to_a_0600_file_not_the_logs(
    aiohttp_client: Any,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    secrets: Secrets,
) -> None:
    data_dir = tmp_path / "data"
    settings = cc_settings(tmp_path, admin_password="", data_dir=data_dir)
    client = await aiohttp_client(create_control_center(settings))
    path = data_dir / "initial-admin-password"
    password = path.read_text().strip()
    secrets.add(password)  # the autouse guard fails the test if any log line holds it
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(password) >= 20
    printed = capsys.readouterr()
    assert password not in printed.err and password not in printed.out
    assert [p.name for p in data_dir.iterdir()] == ["initial-admin-password"]  # no leftovers
    [record] = [r for r in caplog.records if getattr(r, "path", None) == str(path.resolve())]
    assert record.levelno == logging.WARNING
    resp = await client.post("/auth/login", json={"username": "admin", "password": password})
    doc = await resp.json()
    assert resp.status == 200 and doc["data"]["mfa_setup_required"] is True
    secrets.add(doc["data"]["setup_token"])


async def test_a_chosen_admin_password_must_pass_the_policy(tmp_path: Any, store: Store) -> None:
    settings = cc_settings(tmp_path, admin_password="admin-admin-admin")
    app = create_control_center(settings, store=store)
    runner = web.AppRunner(app)
    with pytest.raises(ValidationFailed) as err:
        await runner.setup()
    await app.cleanup()  # what did start stops again
    assert err.value.message.startswith("PROVISIONING_ADMIN_PASSWORD:")
    assert "admin-admin-admin" not in err.value.message
    assert await store.query("SELECT * FROM user") == []
