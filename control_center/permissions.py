"""What the signed-in user may do, so the console offers only that.

The vocabulary is every (resource, action) pair the product's routes and event
streams check, of both services: the composition root (``provisioning/server.py``)
collects it from each service's route declarations and hands it to the control
center, which never imports the orchestrator. Each pair is decided against the
current policy for the caller's roles as the auth middleware would: allowed,
allowed only under a condition (a submission's operations, the time, the address
…: decided per request), or not listed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from shared.security.actor import Actor
from shared.security.auth import ANONYMOUS, Principal
from shared.security.backend import subjects_of
from shared.security.policy import PolicyEngine

Pair = tuple[str, str]


class Permission(NamedTuple):
    """A pair the caller may use; ``conditional``: only when a rule's condition holds."""

    resource: str
    action: str
    conditional: bool


@dataclass(frozen=True)
class Permissions:
    """Who asked, and what they may do."""

    principal: Principal
    allowed: tuple[Permission, ...]


class PermissionService:
    """Decides the vocabulary's pairs for a caller against the live policy."""

    def __init__(self, policy: PolicyEngine, vocabulary: Iterable[Pair]) -> None:
        self.policy = policy
        self.vocabulary = tuple(sorted(set(vocabulary)))

    def of(self, actor: Actor) -> Permissions:
        principal = actor.principal or ANONYMOUS
        subjects = subjects_of(principal)
        allowed = []
        for resource, action in self.vocabulary:
            decision = self.policy.plan(subjects, resource, action).decision
            if decision is not False:
                allowed.append(Permission(resource, action, conditional=decision is None))
        return Permissions(principal, tuple(allowed))
