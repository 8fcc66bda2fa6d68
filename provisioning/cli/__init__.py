"""The ``provisioning`` command line (Typer and rich): one module per group of commands,
all talking to the services through :mod:`provisioning.client` only.

``provisioning up`` (``orchestrator``, ``control-center``) alone starts the services
without importing the command line's modules (:mod:`provisioning.cli.start`): the
start of a service is not slowed by a client it does not use."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioning.cli.app import app


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit code of the command (never a traceback)."""
    args = sys.argv[1:] if argv is None else argv
    from provisioning.cli.start import SERVE_COMMANDS

    if len(args) == 1 and args[0] in SERVE_COMMANDS:
        from provisioning.cli.start import serve

        return serve(None, SERVE_COMMANDS[args[0]])
    code: int = _typer_app().main(argv)
    return code


def _typer_app() -> Any:
    """The module of the Typer app, and ``provisioning.cli.app`` the app again: importing
    the submodule binds the package's ``app`` to the module."""
    module = importlib.import_module("provisioning.cli.app")
    globals()["app"] = module.app
    return module


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer app, loaded when asked for (tests, completion)
        return _typer_app().app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
