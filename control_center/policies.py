"""Policy documents: create, change (keeping each previous version), delete.

Every change is one transaction — the document, its compiled Casbin lines and
the policy revision — and is then loaded by this process at once and by any
other within ``auth_sync_s``. A change that would leave its author unable to
manage policies is refused (409), so an admin cannot lock everyone out by
mistake.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from control_center.events import EventType
from shared.errors import Conflict, NotFound, StoreError, ValidationFailed
from shared.events.bus import EventBus
from shared.security.actor import Actor
from shared.security.auth import ANONYMOUS
from shared.security.backend import Security, actor_conditions, subjects_of
from shared.security.policy import (
    ConditionError,
    Line,
    PolicyEngine,
    Rule,
    compile_rules,
    next_version,
    policy_writes,
)
from shared.security.repositories import PolicyRepository
from shared.security.tokens import utcnow


@dataclass(frozen=True)
class PolicyChanges:
    name: str | None = None
    version: str | None = None
    description: str | None = None
    rules: list[Rule] | None = None
    enabled: bool | None = None


def rules_from(docs: list[dict[str, Any]]) -> list[Rule]:
    """Rules from request documents, each condition checked on the sample contexts;
    422 naming the bad part (``rules.2.condition``) and why."""
    rules = [Rule.from_doc(d) for d in docs]
    try:
        compile_rules(rules)
    except ConditionError as exc:
        raise ValidationFailed(
            f"invalid policy: {exc}",
            details={
                "fields": [{"field": exc.field or "rules", "type": "invalid_rule", "message": str(exc)}]
            },
        ) from None
    return rules


class PolicyService:
    def __init__(self, security: Security, bus: EventBus) -> None:
        self.security = security
        self.bus = bus

    @property
    def repo(self) -> PolicyRepository:
        return self.security.policies

    async def get(self, policy_id: str) -> dict[str, Any]:
        row = await self.repo.get(policy_id)
        if row is None:
            raise NotFound(f"no policy with id {policy_id!r}")
        return row

    async def page(self, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        return await self.repo.page(limit, offset)

    async def versions(self, policy_id: str) -> list[dict[str, Any]]:
        await self.get(policy_id)
        return await self.repo.versions(policy_id)

    async def create(
        self,
        actor: Actor,
        *,
        name: str,
        version: str,
        description: str | None,
        rules: list[Rule],
        enabled: bool,
    ) -> dict[str, Any]:
        if await self.repo.by_name(name) is not None:
            raise Conflict(f"a policy named {name!r} already exists")
        policy_id = uuid.uuid4().hex
        await self._keeps_control(actor, policy_id, rules if enabled else [])
        now = utcnow()
        row = {
            "name": name,
            "version": version,
            "description": description,
            "rules": [r.to_doc() for r in rules],
            "enabled": enabled,
            "revision": 1,
            "created_at": now,
            "updated_at": now,
            "created_by": (actor.principal or ANONYMOUS).username,
        }
        await self._write(policy_writes(self.repo, policy_id, _no_none(row), rules, create=True), name)
        await self._changed(policy_id, "created")
        return await self.get(policy_id)

    async def update(self, actor: Actor, policy_id: str, changes: PolicyChanges) -> dict[str, Any]:
        current = await self.get(policy_id)
        if (
            changes.name is not None
            and changes.name != current["name"]
            and await self.repo.by_name(changes.name) is not None
        ):
            raise Conflict(f"a policy named {changes.name!r} already exists")
        rules = (
            changes.rules
            if changes.rules is not None
            else [Rule.from_doc(d) for d in current.get("rules", [])]
        )
        enabled = changes.enabled if changes.enabled is not None else current.get("enabled", True)
        await self._keeps_control(actor, policy_id, rules if enabled else [])
        row = {k: v for k, v in current.items() if k != "id"}
        row.update(
            {
                "name": changes.name or current["name"],
                "version": changes.version or next_version(current["version"]),
                "rules": [r.to_doc() for r in rules],
                "enabled": enabled,
                "revision": int(current.get("revision", 1)) + 1,
                "updated_at": utcnow(),
                "updated_by": (actor.principal or ANONYMOUS).username,
            }
        )
        if changes.description is not None:
            row["description"] = changes.description
        await self._write(
            policy_writes(self.repo, policy_id, _no_none(row), rules, create=False, previous=current),
            row["name"],
        )
        await self._changed(policy_id, "updated")
        return await self.get(policy_id)

    async def delete(
        self,
        actor: Actor,
        policy_id: str,
    ) -> dict[str, Any]:
        current = await self.get(policy_id)
        await self._keeps_control(actor, policy_id, [])
        await self.repo.store.write(*self.repo.delete(policy_id), self.repo.bump_revision())
        await self._changed(policy_id, "deleted")
        return current

    async def _write(self, writes: list[Any], name: str) -> None:
        try:
            await self.repo.store.write(*writes)
        except StoreError as exc:
            if "policy_name" in str(exc):
                raise Conflict(f"a policy named {name!r} already exists") from exc
            raise

    async def _changed(self, policy_id: str, change: str) -> None:
        await self.security.reload_policy()
        self.bus.publish(
            EventType.POLICY_CHANGED,
            {"policy_id": policy_id, "change": change, "revision": self.security.policy.revision},
        )

    async def _keeps_control(self, actor: Actor, policy_id: str, rules: list[Rule]) -> None:
        """409 if, after this change, the author could no longer update policies."""
        principal = actor.principal or ANONYMOUS
        if principal is ANONYMOUS:
            return
        others = [
            Line.from_values([str(r.get(f"v{i}", "")) for i in range(5)])
            for r in await self.repo.lines()
            if r.get("policy_id") != policy_id
        ]
        candidate = PolicyEngine(self.security.policy.model_text)
        candidate.load_lines([*others, *compile_rules(rules)])
        subjects = subjects_of(principal)
        context = actor_conditions(actor)
        if not candidate.decide(subjects, "policies", "update", context):
            raise Conflict(
                "this change would take away your own right to manage policies "
                "(policies:update); nobody could undo it",
                details={"rule": "keep_policy_control"},
            )


def _no_none(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None}
