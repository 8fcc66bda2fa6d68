"""``provisioning doctor``: each check on the real host, the table and the exit code."""

from __future__ import annotations

import io
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import doctor
from provisioning.cli import main as cli_main
from provisioning.doctor import (
    CHECKS,
    Finding,
    check_command_identity,
    check_runner_user,
    check_work_root,
    render,
    run_checks,
)
from provisioning.server import prepare_host
from shared.settings import Settings, load_settings
from shared.store.fsperms import check_data_dir

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the runner user matters only to a root service")


def test_render_is_a_table_with_a_status_per_finding():
    table = render(
        [
            Finding("runner user", True, "exists"),
            Finding("work root", True, "created", fixed=True),
            Finding("identity", False, "would run as root"),
        ]
    )
    lines = table.splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAILS"]
    assert [line.split()[0] for line in lines[1:]] == ["ok", "fixed", "FAIL"]
    assert len({line.index(line.split()[1]) for line in lines}) == 1  # aligned columns


def test_a_check_that_raises_is_a_failed_finding_and_the_exit_code_is_1(settings):
    def broken(s: Settings, fix: bool) -> list[Finding]:
        raise RuntimeError("boom")

    def fine(s: Settings, fix: bool) -> list[Finding]:
        return [Finding("fine", True, "all good")]

    found = run_checks(settings, False, [fine, broken])
    assert [(f.name, f.ok) for f in found] == [("fine", True), ("broken", False)]
    assert "boom" in found[1].message
    assert {check_data_dir, check_runner_user, check_work_root, check_command_identity} <= set(CHECKS)


@as_root
def test_the_runner_user_is_reported_and_a_missing_one_is_not_ok(settings):
    [found] = check_runner_user(settings, False)
    assert found.ok and f"uid {pwd.getpwnam('provisioning-runner').pw_uid}" in found.message
    [missing] = check_runner_user(
        settings.model_copy(update={"runner_user": "provisioning-absent-user"}), False
    )
    assert not missing.ok and "--fix" in missing.message
    [root] = check_runner_user(settings.model_copy(update={"runner_user": "root"}), False)
    assert not root.ok and "privileged" in root.message


def test_fix_creates_the_work_root_for_the_runner(settings, work_root):
    [before] = check_work_root(settings, False)
    assert not before.ok and "missing" in before.message
    [after] = check_work_root(settings, True)
    assert after.ok and after.fixed
    st = work_root.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        assert st.st_uid == pwd.getpwnam("provisioning-runner").pw_uid
    [again] = check_work_root(settings, True)
    assert again.ok and not again.fixed


@as_root
def test_a_work_root_the_runner_cannot_enter_is_reported(settings, work_root):
    work_root.mkdir(mode=0o700)
    [found] = check_work_root(settings, True)  # an existing directory is never taken over
    assert not found.ok and "cannot read, write and enter" in found.message and "chown" in found.message


def test_a_work_root_inside_the_data_directory_is_refused(settings, tmp_path):
    [found] = check_work_root(
        settings.model_copy(update={"data_dir": tmp_path, "command_work_root": str(tmp_path / "w")}), True
    )
    assert not found.ok and "overlaps the data directory" in found.message
    assert not (tmp_path / "w").exists()


def test_the_default_work_root_sits_beside_the_data_directory(settings, tmp_path):
    from orchestrator.command_runner import work_root

    data = tmp_path / "data"
    assert (
        work_root(settings.model_copy(update={"data_dir": data, "command_work_root": ""}))
        == tmp_path / "data-work"
    )


@as_root
def test_identity_says_runner_or_root(settings):
    [runner] = check_command_identity(settings, False)
    assert runner.ok and "as provisioning-runner" in runner.message
    [root] = check_command_identity(settings.model_copy(update={"allow_root_commands": True}), False)
    assert not root.ok and "as root" in root.message


def test_doctor_main_prints_the_table_and_exits_by_the_findings(settings):
    out = io.StringIO()
    code = doctor.main(settings, True, out)
    assert out.getvalue().startswith("STATUS")
    assert code == (0 if all(f.ok for f in run_checks(settings, False)) else 1)


def test_the_cli_subcommand(work_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVISIONING_COMMAND_WORK_ROOT", str(work_root))
    monkeypatch.setenv("PROVISIONING_DATA_DIR", str(tmp_path / "data"))
    assert cli_main(["doctor"]) == 1  # the work root does not exist yet
    assert "FAIL" in capsys.readouterr().out
    assert cli_main(["doctor", "--fix"]) == 0
    assert "fixed" in capsys.readouterr().out
    assert cli_main(["doctor"]) == 0


def test_the_installed_command_runs(work_root: Path, tmp_path: Path):
    env = {
        **os.environ,
        "PROVISIONING_COMMAND_WORK_ROOT": str(work_root),
        "PROVISIONING_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "provisioning", "doctor", "--fix"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "command work root" in done.stdout


def test_the_doctor_makes_a_widened_data_directory_private_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "db").mkdir(parents=True)
    leaked = data / "db" / "segment.clog"
    leaked.write_text("x")
    data.chmod(0o755)
    leaked.chmod(0o644)
    settings = load_settings(data_dir=data)
    found = run_checks(settings, False, [check_data_dir])
    assert not all(f.ok for f in found), render(found)
    assert stat.S_IMODE(leaked.stat().st_mode) == 0o644  # without --fix nothing changes
    fixed = run_checks(settings, True, [check_data_dir])
    assert all(f.ok for f in fixed) and any(f.fixed for f in fixed), render(fixed)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(leaked.stat().st_mode) == 0o600


@as_root
def test_up_as_root_creates_the_runner_user_and_work_root_it_needs(settings, work_root):
    """A first `provisioning up` is all the set-up: as root it does what `doctor --fix` does."""
    name = f"prov-test-{os.getpid() % 100000}"
    subprocess.run(["userdel", name], capture_output=True, check=False)
    try:
        prepare_host(settings.model_copy(update={"runner_user": name}), ("orchestrator", "control_center"))
        entry = pwd.getpwnam(name)
        assert entry.pw_uid != 0 and entry.pw_shell.endswith("nologin")
        assert work_root.is_dir() and work_root.stat().st_uid == entry.pw_uid
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def test_up_prepares_nothing_for_the_control_center_alone_or_root_commands(settings, work_root):
    prepare_host(settings, ("control_center",))
    prepare_host(settings.model_copy(update={"allow_root_commands": True}), ("orchestrator",))
    assert not work_root.exists()
