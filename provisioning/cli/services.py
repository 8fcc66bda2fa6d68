"""The commands that run the product on this host: ``up``, ``orchestrator``,
``control-center``, ``doctor`` and ``keys rotate``. They read the settings (a bad one
is one line and exit 2); the client commands never do."""

from __future__ import annotations

import asyncio

import typer

from provisioning.cli.common import fail, options, say
from provisioning.cli.start import EXIT_USAGE, serve
from shared.errors import ProvisioningError
from shared.settings import Settings, SettingsError, load_settings

keys_app = typer.Typer(help="Rotate keys (on a stopped service's data directory).", no_args_is_help=True)


def settings_of(ctx: typer.Context) -> Settings:
    try:
        return load_settings(options(ctx).config)
    except SettingsError as exc:
        fail(exc.message, EXIT_USAGE)


def _serve(ctx: typer.Context, which: tuple[str, ...]) -> None:
    code = serve(options(ctx).config, which)  # what the command alone does, without Typer
    if code:
        raise typer.Exit(code)


def up(ctx: typer.Context) -> None:
    """Start the orchestrator and the control center on one embedded store.

    \b
    Example:
      PROVISIONING_ADMIN_PASSWORD='…' provisioning up
    """
    _serve(ctx, ("orchestrator", "control_center"))


def orchestrator(ctx: typer.Context) -> None:
    """Start the orchestrator alone (port 9090).

    \b
    Example:
      provisioning orchestrator
    """
    _serve(ctx, ("orchestrator",))


def control_center(ctx: typer.Context) -> None:
    """Start the control center alone (port 9080).

    \b
    Example:
      provisioning control-center
    """
    _serve(ctx, ("control_center",))


def doctor(
    ctx: typer.Context,
    fix: bool = typer.Option(
        False,
        "--fix",
        "--repair",
        help="repair what can be repaired: runner user, work root, permissions, NUL in the store (as root)",
    ),
) -> None:
    """Check the host and the data (runner user, work root, permissions, store).

    \b
    Example:
      sudo provisioning doctor --fix
    """
    settings = settings_of(ctx)
    from provisioning import doctor as checks

    raise typer.Exit(checks.main(settings, fix))


@keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    kek: bool = typer.Option(False, "--kek", help="rotate the key-encryption key instead"),
) -> None:
    """A new JWT signing key (the old one verifies until its tokens expire); --kek: seal
    every secret under a new key-encryption key.

    \b
    Example:
      provisioning keys rotate --kek
    """
    settings = settings_of(ctx)
    from provisioning.keys import rotate_kek, rotate_signing_key

    rotate_fn = rotate_kek if kek else rotate_signing_key
    try:
        for line in asyncio.run(rotate_fn(settings)):
            say(line)
    except ProvisioningError as exc:
        fail(exc.message, EXIT_USAGE)
