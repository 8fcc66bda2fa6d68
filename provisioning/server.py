"""Run the services: both in one process on one store (``up``), or each alone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from control_center.app import create_app as create_control_center
from orchestrator.app import create_app as create_orchestrator
from orchestrator.command_runner import make_undumpable
from shared.access_log import RedactingAccessLogger
from shared.app import open_store
from shared.events import EventBus
from shared.logs import configure_logging
from shared.settings import Settings

log = logging.getLogger("provisioning")


async def serve(
    settings: Settings,
    which: tuple[str, ...] = ("orchestrator", "control_center"),
    ready: Callable[[], None] | None = None,
) -> None:
    """Start the chosen services on one store and one event bus; stop on SIGINT/SIGTERM."""
    store = open_store(settings)
    await store.open()
    bus = EventBus(settings.event_retention_count, settings.event_retention_s)
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Event loops without signal support (Windows) raise; Ctrl-C still stops them.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        # The control center first: it bootstraps keys and the admin the orchestrator trusts.
        if "control_center" in which:
            app = create_control_center(settings, store=store, bus=bus)
            runners.append(await _start(app, settings.host, settings.control_center_port))
            log.info(
                "control center listening",
                extra={"url": f"http://{settings.host}:{settings.control_center_port}"},
            )
        if "orchestrator" in which:
            app = create_orchestrator(settings, store=store, bus=bus)
            runners.append(await _start(app, settings.host, settings.orchestrator_port))
            log.info(
                "orchestrator listening",
                extra={"url": f"http://{settings.host}:{settings.orchestrator_port}"},
            )
        if ready is not None:
            ready()
        await stop.wait()
        log.info("shutting down")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        await store.close()


async def _start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(
        app,
        access_log_class=RedactingAccessLogger,
        access_log=logging.getLogger("aiohttp.access"),
        shutdown_timeout=5.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def run(settings: Settings, which: tuple[str, ...]) -> None:
    # First: keep same-uid processes (commands when not root) out of /proc/<pid>/environ and mem.
    make_undumpable()
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    asyncio.run(serve(settings, which))
