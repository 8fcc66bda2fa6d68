"""The root command: help with examples everywhere, shell completion, usage errors, and
the rule that the client's modules import no server code."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import typer

from provisioning.cli import app, main
from tests.helpers.live_server import invoke, run_cli

ROOT = Path(__file__).resolve().parents[3]
# The modules of the client commands and the client itself: HTTP and WebSocket only.
CLIENT_MODULES = [
    "provisioning/client.py",
    *(
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "provisioning" / "cli").glob("*.py"))
        # the root and the commands that run the services
        if p.name not in ("app.py", "services.py", "start.py")
    ),
]
SERVER_PACKAGES = (
    "orchestrator",
    "control_center",
    "shared",
    "provisioning.server",
    "provisioning.doctor",
    "provisioning.keys",
    "provisioning.repair",
    "provisioning.cli.services",
)


def every_command() -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(typer.main.get_command(app), ())
    return found


def test_the_client_modules_import_no_server_code() -> None:
    for rel in CLIENT_MODULES:
        tree = ast.parse((ROOT / rel).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(SERVER_PACKAGES), f"{rel} imports {name}"
    assert "provisioning/cli/batches.py" in CLIENT_MODULES and "provisioning/cli/live.py" in CLIENT_MODULES


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout, f"provisioning {' '.join(command)} --help has no example"
    assert f"provisioning {command[0]}" in result.stdout


def test_the_root_help_lists_every_group_and_the_exit_codes() -> None:
    out = invoke("--help").stdout
    for group in (
        "login",
        "logout",
        "whoami",
        "context",
        "batch",
        "servers",
        "taskserv",
        "cluster",
        "checkpoint",
        "rollback",
        "restore",
        "tasks",
        "users",
        "policies",
        "audit",
        "webhooks",
        "completion",
        "up",
        "doctor",
        "keys",
        "--install-completion",
    ):
        assert group in out, group
    assert "3 server down" in out


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o default -F"),
        ("zsh", "#compdef provisioning"),
        ("fish", "complete --command provisioning --no-files"),
    ],
)
def test_completion_scripts(shell: str, marker: str) -> None:
    result = invoke("completion", shell)
    assert result.exit_code == 0
    assert marker in result.stdout and "_PROVISIONING_COMPLETE" in result.stdout
    assert invoke("completion", "tcsh").exit_code == 2


def test_completion_answers_with_the_commands() -> None:
    done = run_cli(
        {
            "_PROVISIONING_COMPLETE": "complete_bash",
            "COMP_WORDS": "provisioning bat",
            "COMP_CWORD": "1",
            "PYTHONPATH": str(ROOT),
            "PATH": "/usr/bin:/bin",
        },
    )
    assert done.returncode == 0 and "batch" in done.stdout.split()


def test_usage_errors_exit_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nonsense"]) == 2
    assert main(["batch", "list", "--limit", "x"]) == 2
    assert main(["rollback"]) == 2
    err = capsys.readouterr().err
    assert "No such command 'nonsense'" in err and "Traceback" not in err
    assert main(["--help"]) == 0
