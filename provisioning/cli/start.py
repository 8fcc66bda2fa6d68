"""Run the services: what ``provisioning up``, ``orchestrator`` and ``control-center``
do, in a module that imports nothing of the command line (Typer, rich, the HTTP
client), so that a service's start pays only for its own modules.

:func:`provisioning.cli.main` comes here directly when the command line is one of
those commands alone; with options (``--config``, ``--help``…) Typer parses it and
``provisioning.cli.services`` comes here too, so both ways behave the same.
"""

from __future__ import annotations

import gc
import sys

EXIT_USAGE = 2  # usage, validation or local configuration (provisioning.cli.common)

# A command line of one of these alone starts its services without loading Typer.
SERVE_COMMANDS: dict[str, tuple[str, ...]] = {
    "up": ("orchestrator", "control_center"),
    "orchestrator": ("orchestrator",),
    "control-center": ("control_center",),
}


def serve(config: str | None, which: tuple[str, ...]) -> int:
    """Read the settings, run the chosen services until stopped; the exit code (a bad
    setting, or a data directory the services cannot use: one line and 2)."""
    # No garbage collection while the modules are imported: the ~130,000 objects they
    # make are nearly all alive for good, and the collector's passes over them cost ~5 %
    # of the imports (the few cycles left behind are collected after, as usual).
    collecting = gc.isenabled()
    gc.disable()
    try:
        from provisioning.startup import lean_imports

        lean_imports()  # before any of the services' modules
        from shared.errors import ProvisioningError
        from shared.settings import SettingsError, load_settings

        try:
            settings = load_settings(config)
        except SettingsError as exc:
            return usage_error(exc.message)
        from provisioning.server import run
    finally:
        if collecting:
            gc.enable()

    try:
        run(settings, which)
    except ProvisioningError as exc:
        return usage_error(exc.message)
    except KeyboardInterrupt:
        pass
    return 0


def usage_error(message: str) -> int:
    print(f"provisioning: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE
