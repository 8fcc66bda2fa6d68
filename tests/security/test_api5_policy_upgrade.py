"""API5: a data directory from before issue 8 gets the operator command allowlist too.

The default policy is seeded at first start only. At a later start, a ``default``
document still holding the rules an earlier release shipped is replaced by this
release's (the old one kept as a version); an edited one is left alone, with a warning.
Its stored lines, compiled by the old compiler, are compiled again when loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.security.backend import DEFAULT_POLICY_ID, default_policy_row
from shared.security.policy import line_row, read_default_rules
from shared.security.repositories import PolicyRepository
from shared.store.store import Store
from tests.helpers.services import Services, bearer

# policies/policy.csv as shipped before issue 8
OLD_POLICY_CSV = """\
p, admin, *, *, , allow
p, *, profile, *, , allow
p, operator, workflows, read, , allow
p, operator, workflows, create, , allow
p, operator, workflows, execute, , allow
p, operator, workflows, cancel, , allow
p, operator, workflows, rollback, , allow
p, operator, batch, read, , allow
p, operator, batch, execute, , allow
p, operator, batch, cancel, , allow
p, operator, batch, rollback, , allow
p, operator, tasks, read, , allow
p, operator, tasks, cancel, , allow
p, operator, rollback, *, , allow
p, operator, state, read, , allow
p, operator, audit, read, , allow
p, operator, webhooks, read, , allow
p, developer, workflows, read, , allow
p, developer, batch, read, , allow
p, developer, tasks, read, , allow
p, developer, rollback, read, , allow
p, developer, state, read, , allow
p, developer, batch, execute, batch.check_mode == true, allow
p, developer, workflows, create, batch.check_mode == true, allow
p, viewer, workflows, read, , allow
p, viewer, batch, read, , allow
p, viewer, tasks, read, , allow
p, viewer, state, read, , allow
p, auditor, audit, read, , allow
"""
# what the old compiler stored for its one condition
OLD_COMPILED = {"batch.check_mode == true": "r_ctx.batch.check_mode == True"}


@pytest.fixture
def edited() -> bool:
    return False


@pytest.fixture
async def shared_store(store: Store, tmp_path: Path, edited: bool) -> Store:
    """The store as an earlier release left it: the old default policy, old compiled lines."""
    old = tmp_path / "old-policies"
    old.mkdir()
    (old / "policy.csv").write_text(OLD_POLICY_CSV)
    rules = read_default_rules(old)
    if edited:
        rules = rules[:-1]  # an admin removed the auditor's rule
    repo = PolicyRepository(store)
    row = default_policy_row(rules)
    lines = [
        [sub, r.resource, act, OLD_COMPILED[r.condition] if r.condition else "True", r.effect]
        for r in rules
        for sub in r.subjects
        for act in r.actions
    ]
    await store.write(
        repo.create(DEFAULT_POLICY_ID, row),
        *repo.insert_lines([line_row(DEFAULT_POLICY_ID, i, "p", v) for i, v in enumerate(lines)]),
        repo.bump_revision(),
    )
    return store


async def default_policy(services: Services, admin: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    resp = await services.cc.get(f"/policies/{DEFAULT_POLICY_ID}", headers=bearer(admin))
    current = (await resp.json())["data"]
    resp = await services.cc.get(f"/policies/{DEFAULT_POLICY_ID}/versions", headers=bearer(admin))
    return current, (await resp.json())["data"]


async def test_an_untouched_old_default_policy_is_upgraded(services: Services) -> None:
    admin = await services.admin()
    current, versions = await default_policy(services, admin)
    assert current["version"] == "1.0.1" and current["updated_by"] == "system"
    assert [v["version"] for v in versions] == ["1.0.0"]
    assert {
        "effect": "Allow",
        "resource": "batch",
        "action": ["execute"],
        "condition": "batch.check_mode == true || operation.program == null || operation.program_allowed",
        "roles": ["operator"],
    } in current["rules"]
    _, operator = await services.user("ops", "operator", admin_token=admin)
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "b", "operations": [{"id": "x", "type": "command", "run": ["sh", "-c", "id"]}]},
        headers=bearer(operator),
    )
    assert resp.status == 403, await resp.text()
    _, developer = await services.user("dev", "developer", admin_token=admin)
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "b", "check_mode": True, "operations": [{"id": "x", "type": "server_batch"}]},
        headers=bearer(developer),
    )
    assert resp.status in (200, 201), await resp.text()


@pytest.mark.parametrize("edited", [True])
async def test_an_edited_default_policy_is_left_alone_with_a_warning(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    admin = await services.admin()
    current, versions = await default_policy(services, admin)
    assert current["version"] == "1.0.0" and versions == []
    warnings = [r.getMessage() for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert any("the default policy was edited" in w for w in warnings), warnings
