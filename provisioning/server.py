"""Run the services: both in one process on one store (``up``), or each alone.

:func:`build_apps` is the composition root: the one place that builds the
services' apps on one store and one event bus. ``provisioning up`` and the tests
that run both services use it.

Every process's bus knows the vocabularies of both services
(:data:`VOCABULARIES`), whichever of them it runs: each app factory registers
its own, and this composition root registers them all first (:func:`product_bus`),
so a control center running alone still offers (and checks subscriptions against)
the orchestrator's webhook names, and an orchestrator running alone gives the
control center's events the kind they have in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from control_center import events as control_center_events
from control_center.app import build_api as control_center_api
from control_center.app import create_app as create_control_center
from orchestrator import events as orchestrator_events
from orchestrator.app import build_api as orchestrator_api
from orchestrator.app import create_app as create_orchestrator
from orchestrator.command_runner import make_undumpable
from provisioning.doctor import check_runner_user, check_work_root
from provisioning.startup import tune_malloc
from shared.events.bus import EventBus
from shared.events.registry import EventRegistry, Vocabulary
from shared.logs import configure_logging
from shared.metrics import set_process_metrics_owner
from shared.settings import Settings
from shared.store.store import Store
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


def product_permissions() -> tuple[tuple[str, str], ...]:
    """Every (resource, action) pair the product checks: both services' routes and the
    kinds of their event streams (what ``/auth/me/permissions`` decides for a user)."""
    pairs = {*control_center_api().permissions(), *orchestrator_api().permissions()}
    pairs.update(kind.permission for vocabulary in VOCABULARIES for kind in vocabulary.kinds)
    return tuple(sorted(pairs))


SERVICES = ("control_center", "orchestrator")


@dataclass(frozen=True)
class Apps:
    """The services' apps on one store and one bus (``None``: not asked for)."""

    control_center: web.Application | None = None
    orchestrator: web.Application | None = None

    def in_start_order(self) -> list[tuple[str, web.Application]]:
        """The control center first: it bootstraps the keys and the admin the orchestrator trusts."""
        order = (("control_center", self.control_center), ("orchestrator", self.orchestrator))
        return [(name, app) for name, app in order if app is not None]


def build_apps(settings: Settings, store: Store, bus: EventBus, which: tuple[str, ...] = SERVICES) -> Apps:
    """Build the chosen services' apps on one open store and one bus; start them in
    :meth:`Apps.in_start_order`. The apps share the store and the bus; each builds its
    own services, once, as it starts."""
    unknown = sorted(set(which) - set(SERVICES))
    if unknown:
        raise ValueError(f"unknown services {unknown}; choose from {list(SERVICES)}")
    return Apps(
        control_center=(
            create_control_center(settings, store=store, bus=bus, permissions=product_permissions())
            if "control_center" in which
            else None
        ),
        orchestrator=create_orchestrator(settings, store=store, bus=bus) if "orchestrator" in which else None,
    )


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
    opening = time.perf_counter()
    store = open_store(settings)
    await store.open()
    store_open_s = time.perf_counter() - opening
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
                ports = {
                    "control_center": settings.control_center_port,
                    "orchestrator": settings.orchestrator_port,
                }
                for name, app in build_apps(settings, store, bus, which).in_start_order():
                    listeners.append(await _start(app, settings.host, ports[name], guard))
                    log.info(
                        f"{name.replace('_', ' ')} listening",
                        extra={"url": f"http://{settings.host}:{ports[name]}"},
                    )
                log.info(
                    "started",
                    extra={
                        # from the process's start (imports included), and the store's
                        # open alone: what is left is the services' own start-up
                        "since_process_start_s": _process_age_s(),
                        "store_open_s": round(store_open_s, 3),
                        "services_s": round(time.perf_counter() - opening - store_open_s, 3),
                    },
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


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None


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
    tune_malloc(settings.malloc_arena_max, settings.malloc_mmap_threshold_kib)  # before any thread
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    prepare_host(settings, which)
    asyncio.run(serve(settings, which))
