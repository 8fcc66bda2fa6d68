"""API8 security misconfiguration: the data directory is private (issue 8, finding 1 b).

The store's files were created with the process's umask (``0644`` files,
``0755``/``0750`` directories): anyone on the host could copy the users, sessions
and audit log. After a start every path in the data directory is ``0700``/``0600``,
a path someone widened is repaired with a warning naming it, and one that belongs
to another user stops the start.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from shared.store.fsperms import DataDirError, check_data_dir
from shared.web.app import open_store
from tests.helpers.file_services import file_services, file_settings, files_under
from tests.helpers.services import Secrets


def wide(paths: list[Path]) -> list[str]:
    return [f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in paths if p.lstat().st_mode & 0o077]


@pytest.fixture
def restore_umask() -> Any:
    """Starting a store sets the process umask to 077 on purpose; give the test run its own back."""
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


async def test_every_path_in_the_data_dir_is_private_after_start(
    tmp_path: Path, aiohttp_client: Any, secrets: Secrets, restore_umask: None
) -> None:
    os.umask(0o022)  # as a shell usually leaves it
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    settings = file_settings(tmp_path)
    async with file_services(settings, aiohttp_client, secrets) as services:
        await services.admin()  # users, sessions, audit: the engine writes files as it goes
        paths = files_under(data_dir)
        assert any(p.suffix == ".clog" for p in paths)
        assert wide(paths) == []
    assert wide(files_under(data_dir)) == []
    assert os.umask(0o077) == 0o077  # files the engine makes later are private too


async def test_a_widened_path_is_repaired_with_a_warning_naming_it(
    tmp_path: Path,
    aiohttp_client: Any,
    secrets: Secrets,
    caplog: pytest.LogCaptureFixture,
    restore_umask: None,
) -> None:
    settings = file_settings(tmp_path)
    async with file_services(settings, aiohttp_client, secrets):
        pass
    data_dir = tmp_path / "data"
    clog = next(p for p in files_under(data_dir) if p.suffix == ".clog")
    clog.chmod(0o644)
    (data_dir / "db").chmod(0o755)
    assert check_data_dir(settings, fix=False)[0].ok is False  # what `provisioning doctor` reports
    caplog.clear()
    async with file_services(settings, aiohttp_client, secrets):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(clog) in w and "0644" in w and "0600" in w for w in warnings), warnings
    assert any(f"{data_dir / 'db'} had mode 0755" in w for w in warnings), warnings
    assert stat.S_IMODE(clog.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "db").stat().st_mode) == 0o700
    assert wide(files_under(data_dir)) == []
    [finding] = check_data_dir(settings, fix=False)
    assert finding.ok and not finding.fixed


async def test_a_path_owned_by_another_user_is_refused(tmp_path: Path, restore_umask: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    planted = data_dir / "planted"
    planted.write_text("x")
    settings = file_settings(tmp_path)
    # As seen by a service that runs as someone else than the owner of these files:
    findings = check_data_dir(settings, fix=True, owner=os.geteuid() + 1)
    assert findings and not any(f.ok for f in findings)
    assert all("not to the service's user" in f.message and "chown" in f.message for f in findings)
    if os.geteuid() == 0:  # CI runs as root: really give a file away and start
        os.chown(planted, 65534, 65534)
        with pytest.raises(DataDirError) as err:
            open_store(settings)
        assert str(planted) in err.value.message and "uid 65534" in err.value.message
