"""The provider plug-in point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from orchestrator.models import OperationSpec
from shared.settings import Settings
from shared.store.store import Store
from shared.store.writes import Write

ProgressFn = Callable[[float, str], Awaitable[None]]


class OperationFailed(Exception):
    """A provider's way to say an attempt failed; the engine decides whether to retry."""

    def __init__(self, message: str, *, output: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.output = output
        self.retryable = retryable


@dataclass(frozen=True)
class OperationResult:
    """What an operation produced: shown as the task's ``output`` and ``results``.

    ``writes``: store writes that record what it changed (the ``local`` provider's
    inventory), committed in the same transaction as the outcome's transition: they
    share its group commit, and neither is recorded without the other. The engine
    queues them in the same turn of the event loop in which ``apply`` or ``rollback``
    returns (no ``await`` between), so writes of operations finishing one after the
    other commit in that order: a provider may keep its own view of what it wrote
    (``orchestrator/providers/local_inventory.py`` does)."""

    output: str = ""
    results: dict[str, Any] = field(default_factory=dict)
    writes: tuple[Write, ...] = ()


@dataclass(frozen=True)
class OperationContext:
    """Everything a provider may know about the attempt it runs."""

    task_id: str
    workflow_id: str
    name: str
    spec: OperationSpec
    provider: str  # the name the batch used, e.g. "upcloud"
    attempt: int
    timeout_s: float
    report: ProgressFn
    previous_results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderEnv:
    """What a provider is built with."""

    settings: Settings
    store: Store


class Provider(Protocol):
    """Does the work. Cancellation arrives as ``asyncio.CancelledError`` inside ``apply``
    or ``rollback`` (cancel and timeout alike): a provider must stop what it started."""

    name: str

    async def apply(self, ctx: OperationContext) -> OperationResult: ...

    async def rollback(self, ctx: OperationContext) -> OperationResult: ...

    def check(self, spec: OperationSpec, provider: str) -> str:
        """What ``apply`` would do, in words, with no effect (for ``check_mode``)."""
        ...

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        """The task's ``command`` and ``args`` as ``/tasks`` shows them."""
        ...


@runtime_checkable
class ValidatesOperations(Protocol):
    """A provider that also checks an operation at submission, before anything runs
    (the ``command`` provider checks ``cwd`` against the work root)."""

    def problems(self, spec: OperationSpec) -> list[tuple[str, str]]:
        """``(field, message)`` for each problem, the field relative to the operation."""
        ...
