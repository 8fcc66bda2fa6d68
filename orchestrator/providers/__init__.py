"""Providers do an operation's work: ``apply``, ``rollback``, ``check``."""

from orchestrator.providers.base import (
    OperationContext,
    OperationFailed,
    OperationResult,
    Provider,
    ProviderEnv,
)
from orchestrator.providers.registry import ProviderRegistry

__all__ = [
    "OperationContext",
    "OperationFailed",
    "OperationResult",
    "Provider",
    "ProviderEnv",
    "ProviderRegistry",
]
