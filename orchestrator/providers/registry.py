"""Built-in providers, third-party ones from the ``provisioning.providers`` entry points,
and the configured map from batch provider names (``upcloud``) to implementations."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from orchestrator.providers.base import Provider, ProviderEnv
from orchestrator.providers.command import CommandProvider
from orchestrator.providers.local import LocalProvider
from orchestrator.providers.noop import NoopProvider

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "provisioning.providers"


class ProviderRegistry:
    """Implementations by name, plus the provider map from configuration."""

    def __init__(self, env: ProviderEnv, provider_map: dict[str, str]) -> None:
        self.providers: dict[str, Provider] = {
            "local": LocalProvider(env),
            "command": CommandProvider(env),
            "noop": NoopProvider(env),
        }
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.providers:
                continue
            try:
                factory: Any = ep.load()
                self.providers[ep.name] = factory(env)
            except Exception:
                log.exception("provider plug-in failed to load", extra={"provider": ep.name})
        self.provider_map = dict(provider_map)

    def resolve_name(self, name: str) -> str | None:
        """The implementation a batch's provider name maps to, or None if unknown."""
        impl = self.provider_map.get(name, name)
        return impl if impl in self.providers else None

    def get(self, name: str) -> Provider:
        impl = self.resolve_name(name)
        if impl is None:
            raise KeyError(name)
        return self.providers[impl]

    def known_names(self) -> list[str]:
        names = set(self.providers) | {k for k, v in self.provider_map.items() if v in self.providers}
        return sorted(names)
