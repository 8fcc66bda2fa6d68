"""The ``noop`` provider: does nothing, successfully. For dry wiring and benchmarks."""

from __future__ import annotations

from orchestrator.models import OperationSpec
from orchestrator.providers.base import OperationContext, OperationResult, ProviderEnv


class NoopProvider:
    name = "noop"

    def __init__(self, env: ProviderEnv) -> None:
        """Needs nothing from its environment."""

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "noop", [spec.id]

    def check(self, spec: OperationSpec, provider: str) -> str:
        return "nothing (noop provider)"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return OperationResult()

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult()
