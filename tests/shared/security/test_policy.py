"""The policy layer on its own: the condition language, matching, the default policy,
the store adapter under Casbin's own API, and memoised decisions."""

from __future__ import annotations

from typing import Any

import casbin
import pytest

from shared.security.conditions import as_facts, display, recompile
from shared.security.policy import (
    ConditionError,
    Line,
    PolicyEngine,
    RoleSet,
    Rule,
    StoreAdapter,
    compile_condition,
    compile_rules,
    read_default_rules,
    read_model,
    resource_match,
)
from shared.security.repositories import PolicyRepository
from shared.settings import Settings
from shared.store.store import Store

POLICIES = Settings().policies_dir
MODEL = read_model(POLICIES)


def ctx(**parts: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user": {"id": "u", "username": "u", "role": RoleSet(("viewer",)), "roles": ["viewer"], "mfa": False},
        "request": {"ip": "10.1.2.3", "method": "GET", "path": "/", "service": "orchestrator"},
        "time": {"hour": 12, "minute": 0, "weekday": 0, "date": "2026-01-05"},
        "batch": {"environment": None, "check_mode": False, "name": None},
    }
    for key, value in parts.items():
        base[key] = {**base[key], **value}
    return base


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (None, "True"),
        ("", "True"),
        ("user.mfa == true", "user.mfa == True"),
        ("user.role == 'admin' && !user.mfa", "user.role == 'admin' and (not user.mfa)"),
        ("batch.environment != 'Prod ' || user.mfa", "batch.environment != 'prod' or user.mfa"),
        ("ipMatch(request.ip, '10.0.0.0/8')", "ipMatch(request.ip, '10.0.0.0/8')"),
        ("time.hour >= 8 and time.hour < 18", "time.hour >= 8 and time.hour < 18"),
        ("'ops' in user.roles", "'ops' in user.roles"),
        ("request.path == 'a&&b!'", "request.path == 'a&&b!'"),
        ("batch.environment == null", "batch.environment == None"),
        (
            "operation.program == null || operation.program_allowed",
            "operation.program == None or operation.program_allowed",
        ),
    ],
)
def test_conditions_compile(source: str | None, shown: str) -> None:
    compiled = compile_condition(source)
    assert display(compiled) == shown
    # facts are read from Casbin's request context; no string literal is left for Casbin to rewrite
    assert "'" not in compiled.replace("lit('", "").replace("')", "")
    assert recompile(compiled) == compiled


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('id')",
        "user.__class__.__mro__",
        "user.password",
        "open('/etc/passwd')",
        "eval('1')",
        "x",
        "user",
        "(lambda: 1)()",
        "[r for r in user.roles]",
        "user.role.upper()",
        "1 if user.mfa else 0",
        "user.mfa = True",
        "ipMatch(request.ip, cidr='10.0.0.0/8')",
        "user.roles[0] == 'admin'",
        "f'{user.id}'",
        "'a' * 10000000",
        "x" * 600,
    ],
)
def test_conditions_outside_the_language_are_refused(source: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(source)


def test_role_set_compares_as_any_role() -> None:
    roles = RoleSet(("admin", "operator"))
    assert roles == "admin" and "operator" == roles and roles != "viewer"
    assert roles in ["viewer", "operator"]


@pytest.mark.parametrize(
    ("resource", "pattern", "matches"),
    [
        ("tasks", "tasks", True),
        ("tasks", "*", True),
        ("tasks", "task", False),
        ("servers:web-01", "servers:*", True),
        ("servers", "servers:*", True),
        ("serversx", "servers:*", False),
        ("servers:web-01", "servers:web-*", True),
    ],
)
def test_resource_patterns(resource: str, pattern: str, matches: bool) -> None:
    assert resource_match(resource, pattern) is matches


def test_default_policy_file() -> None:
    rules = read_default_rules(POLICIES)
    lines = compile_rules(rules)
    assert Line("admin", "*", "*", "True", "allow") in lines
    conditional = [ln for ln in lines if ln.conditional]
    assert {(ln.sub, ln.obj, ln.act) for ln in conditional} == {
        ("developer", "batch", "execute"),
        ("developer", "workflows", "create"),
        ("operator", "batch", "execute"),
    }
    [operator] = [ln for ln in conditional if ln.sub == "operator"]
    assert display(operator.cond) == (
        "batch.check_mode == True or operation.program == None or operation.program_allowed"
    )


def test_rule_documents_round_trip() -> None:
    doc = {
        "effect": "Deny",
        "resource": "servers:*",
        "action": ["create", "read"],
        "condition": "user.role == 'admin'",
        "roles": ["operator"],
    }
    assert Rule.from_doc(doc).to_doc() == doc
    seed = {"effect": "Allow", "resource": "tasks", "action": "read", "condition": None}
    assert Rule.from_doc(seed).to_doc() == {**seed, "action": ["read"]}


def engine_with(*rules: Rule) -> PolicyEngine:
    engine = PolicyEngine(MODEL)
    engine.load_lines(compile_rules(rules))
    return engine


def test_deny_overrides_allow_and_conditions_decide() -> None:
    engine = engine_with(
        Rule("allow", "tasks", ("read",), subjects=("viewer",)),
        Rule("deny", "tasks", ("read",), "request.ip == '10.1.2.3'"),
        Rule("allow", "audit", ("read",), "user.mfa == true"),
    )
    subjects = ("viewer", "user:u")
    assert engine.decide(subjects, "tasks", "read", ctx()) is False
    assert engine.decide(subjects, "tasks", "read", ctx(request={"ip": "10.9.9.9"})) is True
    assert engine.decide(subjects, "audit", "read", ctx()) is False
    assert engine.decide(subjects, "audit", "read", ctx(user={"mfa": True})) is True
    assert engine.decide(subjects, "users", "read", ctx()) is False


def test_fixed_decisions_are_memoised_and_conditional_ones_are_not() -> None:
    engine = engine_with(
        Rule("allow", "tasks", ("read",), subjects=("viewer",)),
        Rule("allow", "batch", ("execute",), "batch.check_mode == true", ("developer",)),
    )
    assert engine.plan(("viewer",), "tasks", "read").decision is True
    assert engine.plan(("viewer",), "users", "read").decision is False
    plan = engine.plan(("developer",), "batch", "execute")
    assert plan.decision is None and plan.roots == {"batch"}
    # a memoised plan is returned as is
    assert engine.plan(("viewer",), "tasks", "read") is engine.plan(("viewer",), "tasks", "read")
    # a reload drops the memo
    engine.load_lines([])
    assert engine.plan(("viewer",), "tasks", "read").decision is False


async def test_store_adapter_under_casbins_own_api(store: Store) -> None:
    repo = PolicyRepository(store)
    adapter = StoreAdapter(repo)
    enforcer = casbin.AsyncEnforcer(casbin.AsyncEnforcer.new_model(text=MODEL), adapter)
    for name, fn in (
        ("subjectMatch", lambda s, p: p == "*" or p in s),
        ("resourceMatch", lambda r, p: p in ("*", r)),
        ("actionMatch", lambda a, p: p in ("*", a)),
    ):
        enforcer.add_function(name, fn)
    await enforcer.add_policy("viewer", "tasks", "read", "True", "allow")
    await enforcer.add_policy("viewer", "state", "read", "True", "allow")
    await enforcer.add_policy("auditor", "audit", "read", "True", "allow")
    assert await repo.revision() == 3
    fresh = PolicyEngine(MODEL)
    await fresh.load(repo)
    assert fresh.decide(("viewer",), "tasks", "read", ctx())
    await enforcer.remove_policy("viewer", "tasks", "read", "True", "allow")
    await enforcer.remove_filtered_policy(0, "auditor")
    await fresh.load(repo)
    assert not fresh.decide(("viewer",), "tasks", "read", ctx())
    assert not fresh.decide(("auditor",), "audit", "read", ctx())
    assert fresh.decide(("viewer",), "state", "read", ctx())
    enforcer.get_model().add_policy("p", "p", ["x", "y", "z", "True", "allow"])
    await enforcer.save_policy()
    await fresh.load(repo)
    assert [ln.values for ln in fresh.lines] == [
        ["viewer", "state", "read", "True", "allow"],
        ["x", "y", "z", "True", "allow"],
    ]
    assert fresh.revision == await repo.revision()


def test_parsed_lines_answer_as_casbin_does() -> None:
    engine = engine_with(
        Rule("allow", "batch", ("execute",), "batch.check_mode == true", ("developer",)),
        Rule("allow", "batch", ("execute",), "user.mfa && request.method == 'POST'"),
        Rule("deny", "batch", ("execute",), "batch.environment == 'prod' && !user.mfa"),
        Rule("deny", "batch", ("*",), "regexMatch(batch.name, '^x!')", ("developer",)),
        Rule("allow", "batch", ("execute",), subjects=("admin",)),
    )
    for subjects in (("developer", "user:u"), ("viewer",), ("admin", "developer")):
        plan = engine.plan(subjects, "batch", "execute")
        assert plan.evaluator is not None and plan.enforcer is not None
        for mfa in (True, False):
            for env in ("prod", None):
                for check_mode in (True, False):
                    for name in ("x!y", "y", None):
                        for method in ("POST", "GET"):
                            facts = as_facts(
                                ctx(
                                    user={"mfa": mfa},
                                    batch={"environment": env, "check_mode": check_mode, "name": name},
                                    request={"method": method},
                                )
                            )
                            expected = plan.enforcer.enforce(subjects, "batch", "execute", facts)
                            assert plan.evaluator.enforce(subjects, "batch", "execute", facts) is expected
