"""Run the services: both in one process on one store (``up``), or each alone.

Every process's bus knows the vocabularies of both services
(:data:`VOCABULARIES`), whichever of them it runs: each app factory registers
its own, and this composition root registers them all first, so a control
center running alone still offers (and checks subscriptions against) the
orchestrator's webhook names, and an orchestrator running alone gives the
control center's events the kind they have in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from control_center import events as control_center_events
from control_center.app import create_app as create_control_center
from orchestrator import events as orchestrator_events
from orchestrator.app import create_app as create_orchestrator
from orchestrator.command_runner import make_undumpable
from provisioning.doctor import check_runner_user, check_work_root
from shared.events.bus import EventBus
from shared.events.registry import EventRegistry, Vocabulary
from shared.logs import configure_logging
from shared.metrics import set_process_metrics_owner
from shared.settings import Settings
from shared.web.access_log import RedactingAccessLogger
from shared.web.app import open_store
from shared.web.serve import ConnectionGuard, ConnectionLimits, Listener, listen

log = logging.getLogger("provisioning")

# The product's event vocabularies, in the order their webhook names are listed.
VOCABULARIES: tuple[Vocabulary, ...] = (orchestrator_events.VOCABULARY, control_center_events.VOCABULARY)


def product_registry() -> EventRegistry:
    """A registry that holds every vocabulary of the product."""
    registry = EventRegistry()
    for vocabulary in VOCABULARIES:
        registry.register(vocabulary)
    return registry


def product_bus(settings: Settings) -> EventBus:
    """The process's bus, with every vocabulary of the product registered."""
    return EventBus(settings.event_retention_count, settings.event_retention_s, product_registry())


async def serve(
    settings: Settings,
    which: tuple[str, ...] = ("orchestrator", "control_center"),
    ready: Callable[[], None] | None = None,
) -> None:
    """Start the chosen services on one store and one event bus; stop on SIGINT/SIGTERM.

    Every listener shares one :class:`ConnectionGuard`: the connection cap and the
    per-address limits hold for the process, whose descriptors both services share.
    """
    limits = ConnectionLimits.from_settings(settings)
    guard = ConnectionGuard(limits)
    # Process-wide metrics (process_*, python_*, engine, store, webhooks) on one port.
    set_process_metrics_owner("orchestrator" if "orchestrator" in which else "control_center")
    store = open_store(settings)
    await store.open()
    bus = product_bus(settings)
    listeners: list[Listener] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Event loops without signal support (Windows) raise; Ctrl-C still stops them.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "connection limits",
        extra={
            "max_connections": limits.max_connections,
            "max_connections_per_ip": limits.max_per_ip,
            "header_timeout_s": limits.header_timeout_s,
            "body_timeout_s": limits.body_timeout_s,
            "idle_timeout_s": limits.idle_timeout_s,
        },
    )
    try:
        with guard.installed(loop):
            try:
                # The control center first: it bootstraps keys and the admin the orchestrator trusts.
                if "control_center" in which:
                    app = create_control_center(settings, store=store, bus=bus)
                    listeners.append(await _start(app, settings.host, settings.control_center_port, guard))
                    log.info(
                        "control center listening",
                        extra={"url": f"http://{settings.host}:{settings.control_center_port}"},
                    )
                if "orchestrator" in which:
                    app = create_orchestrator(settings, store=store, bus=bus)
                    listeners.append(await _start(app, settings.host, settings.orchestrator_port, guard))
                    log.info(
                        "orchestrator listening",
                        extra={"url": f"http://{settings.host}:{settings.orchestrator_port}"},
                    )
                if ready is not None:
                    ready()
                await stop.wait()
                log.info("shutting down")
            finally:
                for listener in reversed(listeners):
                    await listener.close()
    finally:
        await store.close()


async def _start(app: web.Application, host: str, port: int, guard: ConnectionGuard) -> Listener:
    return await listen(app, host, port, guard, access_log_class=RedactingAccessLogger)


def prepare_host(settings: Settings, which: tuple[str, ...]) -> None:
    """As root, set up what `command` operations need, as ``provisioning doctor --fix``
    would: the unprivileged runner user and the work root. A first ``provisioning up``
    is then all the set-up there is; what cannot be done is logged, and commands fail
    with the same hint until it is."""
    if os.geteuid() != 0 or "orchestrator" not in which or settings.allow_root_commands:
        return
    for finding in (*check_runner_user(settings, True), *check_work_root(settings, True)):
        if finding.fixed:
            log.info(
                "prepared the host for commands", extra={"check": finding.name, "result": finding.message}
            )
        elif not finding.ok:
            log.warning("commands cannot run yet", extra={"check": finding.name, "problem": finding.message})


def run(settings: Settings, which: tuple[str, ...]) -> None:
    # First: keep same-uid processes (commands when not root) out of /proc/<pid>/environ and mem.
    make_undumpable()
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    prepare_host(settings, which)
    asyncio.run(serve(settings, which))
