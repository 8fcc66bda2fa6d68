"""The ``provisioning`` command line (Typer and rich): one module per group of commands,
all talking to the services through :mod:`provisioning.client` only."""

from provisioning.cli.app import app, main

__all__ = ["app", "main"]
