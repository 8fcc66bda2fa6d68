"""Authorization: Casbin over the store, with seed-004 policy documents compiled to it.

A policy document is ``{name, version, rules[{effect, resource, action[],
condition, roles}], enabled}``. Each rule becomes Casbin lines ``(subject,
resource, action, condition, effect)``: one per role and action. ``Deny``
overrides ``Allow`` (``policies/model.conf``). Conditions are a small expression
language over the request context (``user.role == 'admin' && user.mfa``),
checked here against a whitelist of names and node types and compiled into the
expression Casbin's ``eval()`` hands to simpleeval — Python's own ``eval`` is
never used.

Casbin re-parses an ``eval()`` matcher for every line on every call (~100 µs),
so :class:`PolicyEngine` memoises decisions for (subjects, resource, action)
whenever no conditional line could apply, and evaluates only when one could.
"""

from __future__ import annotations

import ast
import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import casbin
from casbin.persist.adapters.asyncio import AsyncAdapter

from shared.security_repos import PolicyRepository
from shared.store import Write

log = logging.getLogger(__name__)
# pycasbin prints its model at INFO for every enforcer it builds; this module builds one
# per reload and per conditional decision plan.
logging.getLogger("casbin").setLevel(logging.WARNING)

EFFECTS = ("allow", "deny")
# What a condition may read: root -> attributes.
CONTEXT_FIELDS: dict[str, frozenset[str]] = {
    "user": frozenset({"id", "username", "role", "roles", "mfa"}),
    "request": frozenset({"ip", "method", "path", "service"}),
    "time": frozenset({"hour", "minute", "weekday", "date"}),
    "batch": frozenset({"environment", "check_mode", "name"}),
}
# Casbin's own matching functions a condition may call.
CONDITION_FUNCTIONS = frozenset({"ipMatch", "regexMatch", "keyMatch", "globMatch"})
LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "none": None,
    "True": True,
    "False": False,
    "None": None,
}
CONTEXT_NAME = "r_ctx"
MAX_CONDITION_LENGTH = 500
ALWAYS = "True"
_STRINGS = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_ROOTS_USED = re.compile(rf"\b{CONTEXT_NAME}\.(\w+)")
_RESOURCE = re.compile(r"^(\*|[a-z][a-z0-9_-]*(:[A-Za-z0-9_.*/-]+)?)$")
_ACTION = re.compile(r"^(\*|[a-z][a-z0-9_]*)$")
_SUBJECT = re.compile(r"^(\*|[a-z][a-z0-9_-]*|user:[A-Za-z0-9_.@-]+)$")
_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Attribute,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Call,
)


class ConditionError(ValueError):
    """A condition that is not in the language (the message says what is wrong)."""


# -- conditions -------------------------------------------------------------------


def _normalise(source: str) -> str:
    """``&&``/``||``/``!`` to Python's words, leaving string literals alone."""
    parts = _STRINGS.split(source)
    for i in range(0, len(parts), 2):
        text = parts[i].replace("&&", " and ").replace("||", " or ")
        parts[i] = re.sub(r"!(?!=)", " not ", text)
    return "".join(parts)


class _Compiler(ast.NodeTransformer):
    def __init__(self) -> None:
        self.roots: set[str] = set()

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ALLOWED_NODES):
            raise ConditionError(f"{type(node).__name__} is not allowed in a condition")
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in LITERAL_NAMES:
            return ast.copy_location(ast.Constant(LITERAL_NAMES[node.id]), node)
        if node.id in CONTEXT_FIELDS:
            raise ConditionError(
                f"name a field of {node.id!r}, e.g. {node.id}.{sorted(CONTEXT_FIELDS[node.id])[0]}"
            )
        raise ConditionError(
            f"unknown name {node.id!r}; conditions read " + ", ".join(f"{r}.*" for r in CONTEXT_FIELDS)
        )

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        root = node.value
        if not isinstance(root, ast.Name) or root.id not in CONTEXT_FIELDS:
            raise ConditionError(
                "attributes are read as <root>.<field>, with root one of " + ", ".join(CONTEXT_FIELDS)
            )
        if node.attr not in CONTEXT_FIELDS[root.id]:
            raise ConditionError(
                f"{root.id}.{node.attr} is not known; {root.id} has "
                + ", ".join(sorted(CONTEXT_FIELDS[root.id]))
            )
        self.roots.add(root.id)
        ctx = ast.Attribute(ast.Name(CONTEXT_NAME, ast.Load()), root.id, ast.Load())
        return ast.copy_location(ast.Attribute(ctx, node.attr, ast.Load()), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not isinstance(node.func, ast.Name) or node.func.id not in CONDITION_FUNCTIONS:
            raise ConditionError(
                "only these functions may be called: " + ", ".join(sorted(CONDITION_FUNCTIONS))
            )
        if node.keywords:
            raise ConditionError("function arguments are positional")
        node.args = [self.visit(a) for a in node.args]
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ConditionError(f"literal {node.value!r} is not allowed")
        return node


def compile_condition(source: str | None) -> str:
    """The Casbin ``eval()`` expression for a condition; ``True`` for none."""
    if source is None or not source.strip():
        return ALWAYS
    if len(source) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_CONDITION_LENGTH} characters")
    try:
        tree = ast.parse(_normalise(source).strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"not an expression: {exc.msg}") from None
    compiled = _Compiler().visit(tree)
    return ast.unparse(compiled)


def roots_of(compiled: str) -> frozenset[str]:
    """Which context parts (user, request, time, batch) a compiled condition reads."""
    return frozenset(_ROOTS_USED.findall(compiled))


class RoleSet(tuple[str, ...]):
    """``user.role``: equal to any one of the caller's roles (``user.role == 'admin'``)."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other in tuple(self)
        return tuple(self) == other

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)


# -- rules and lines ------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One rule of a policy document, as the API shows it."""

    effect: str
    resource: str
    actions: tuple[str, ...]
    condition: str | None = None
    subjects: tuple[str, ...] = ("*",)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "effect": self.effect.capitalize(),
            "resource": self.resource,
            "action": list(self.actions),
            "condition": self.condition,
        }
        if self.subjects != ("*",):
            doc["roles"] = list(self.subjects)
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Rule:
        actions = doc.get("action", [])
        return cls(
            effect=str(doc["effect"]).lower(),
            resource=str(doc["resource"]),
            actions=tuple([actions] if isinstance(actions, str) else actions),
            condition=doc.get("condition") or None,
            subjects=tuple(doc.get("roles") or ("*",)),
        )


@dataclass(frozen=True)
class Line:
    """One Casbin policy line ``p, sub, obj, act, cond, eft``."""

    sub: str
    obj: str
    act: str
    cond: str
    eft: str
    roots: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def from_values(cls, values: list[str]) -> Line:
        sub, obj, act, cond, eft = values[:5]
        return cls(sub, obj, act, cond, eft, roots_of(cond))

    @property
    def values(self) -> list[str]:
        return [self.sub, self.obj, self.act, self.cond, self.eft]

    @property
    def conditional(self) -> bool:
        return self.cond != ALWAYS


def compile_rule(rule: Rule, where: str = "rule") -> list[Line]:
    """Check a rule and turn it into Casbin lines (``ConditionError`` says what is wrong)."""
    if rule.effect not in EFFECTS:
        raise ConditionError(f"{where}: effect must be Allow or Deny, not {rule.effect!r}")
    if not _RESOURCE.match(rule.resource):
        raise ConditionError(
            f"{where}: resource {rule.resource!r} is not a name, 'name:pattern' (e.g. servers:*) or *"
        )
    if not rule.actions:
        raise ConditionError(f"{where}: name at least one action")
    for act in rule.actions:
        if not _ACTION.match(act):
            raise ConditionError(f"{where}: action {act!r} is not an action name or *")
    for sub in rule.subjects:
        if not _SUBJECT.match(sub):
            raise ConditionError(f"{where}: role {sub!r} is not a role name, user:<name> or *")
    try:
        cond = compile_condition(rule.condition)
    except ConditionError as exc:
        raise ConditionError(f"{where}: condition: {exc}") from None
    return [
        Line(sub, rule.resource, act, cond, rule.effect, roots_of(cond))
        for sub in rule.subjects
        for act in rule.actions
    ]


def compile_rules(rules: Iterable[Rule]) -> list[Line]:
    lines: list[Line] = []
    for i, rule in enumerate(rules):
        lines.extend(compile_rule(rule, f"rules[{i}]"))
    return lines


def read_model(policies_dir: Path) -> str:
    return (policies_dir / "model.conf").read_text()


def read_default_rules(policies_dir: Path) -> list[Rule]:
    """``policy.csv`` as rules: lines that differ only by action share one rule."""
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    with open(policies_dir / "policy.csv", newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row or row[0].strip().startswith("#"):
                continue
            if row[0].strip() != "p" or len(row) != 6:
                raise ValueError(
                    f"policy.csv: expected 'p, subject, resource, action, condition, effect', got {row}"
                )
            _, sub, obj, act, cond, eft = (c.strip() for c in row)
            grouped.setdefault((sub, obj, cond, eft.lower()), []).append(act)
    rules = [
        Rule(eft, obj, tuple(acts), cond or None, (sub,)) for (sub, obj, cond, eft), acts in grouped.items()
    ]
    compile_rules(rules)  # fail at start, not at the first request
    return rules


# -- matching functions of the model ------------------------------------------------------


def subject_match(subjects: tuple[str, ...], policy_subject: str) -> bool:
    return policy_subject == "*" or policy_subject in subjects


def resource_match(resource: str, pattern: str) -> bool:
    """``*``, the exact name, or ``name:*`` (which also covers the bare ``name``)."""
    if pattern == "*" or pattern == resource:
        return True
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return resource.startswith(prefix) or (prefix.endswith(":") and resource == prefix[:-1])
    return False


def action_match(action: str, pattern: str) -> bool:
    return pattern == "*" or pattern == action


# -- the store adapter ------------------------------------------------------------------------


ADAPTER_POLICY_ID = "casbin"  # lines added through Casbin's own API rather than a document


class StoreAdapter(AsyncAdapter):  # type: ignore[misc]
    """Casbin's adapter interface over the ``casbin_rule`` table."""

    def __init__(self, repo: PolicyRepository) -> None:
        self.repo = repo

    async def load_policy(self, model: Any) -> None:
        for row in await self.repo.lines():
            values = [str(row.get(f"v{i}", "")) for i in range(5)]
            model.add_policy("p", str(row.get("ptype", "p")), values)

    async def save_policy(self, model: Any) -> bool:
        writes: list[Write] = [self.repo.delete_all_lines()]
        rows = [
            line_row(ADAPTER_POLICY_ID, i, ptype, rule)
            for ptype, assertion in model.model.get("p", {}).items()
            for i, rule in enumerate(assertion.policy)
        ]
        writes.extend(self.repo.insert_lines(rows))
        writes.append(self.repo.bump_revision())
        await self.repo.store.write(*writes)
        return True

    async def add_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        await self.repo.store.write(
            *self.repo.insert_lines([line_row(ADAPTER_POLICY_ID, 0, ptype, rule)]), self.repo.bump_revision()
        )
        return True

    async def remove_policy(self, sec: str, ptype: str, rule: list[str]) -> bool:
        await self.repo.store.write(self.repo.delete_matching(ptype, 0, rule), self.repo.bump_revision())
        return True

    async def remove_filtered_policy(
        self, sec: str, ptype: str, field_index: int, *field_values: str
    ) -> bool:
        await self.repo.store.write(
            self.repo.delete_matching(ptype, field_index, list(field_values)), self.repo.bump_revision()
        )
        return True


def line_row(policy_id: str, seq: int, ptype: str, values: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"ptype": ptype, "policy_id": policy_id, "seq": seq}
    row.update({f"v{i}": v for i, v in enumerate(values)})
    return row


# -- the engine --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a (subjects, resource, action) needs: a fixed answer, or the context parts
    and an enforcer holding only the lines that can apply (Casbin's cost grows per line)."""

    decision: bool | None
    roots: frozenset[str] = frozenset()
    enforcer: Any = field(default=None, compare=False, repr=False)


PlanKey = tuple[tuple[str, ...], str, str]


class PolicyEngine:
    """The current enforcer, swapped whole on reload, and the memo of fixed decisions."""

    def __init__(self, model_text: str) -> None:
        self.model_text = model_text
        self.revision = -1
        self._enforcer = self._new_enforcer()
        self._lines: list[Line] = []
        self._plans: dict[PlanKey, Plan] = {}

    def _new_enforcer(self, adapter: StoreAdapter | None = None) -> casbin.AsyncEnforcer:
        model = casbin.AsyncEnforcer.new_model(text=self.model_text)
        enforcer = casbin.AsyncEnforcer(model, adapter)
        enforcer.add_function("subjectMatch", subject_match)
        enforcer.add_function("resourceMatch", resource_match)
        enforcer.add_function("actionMatch", action_match)
        return enforcer

    async def load(self, repo: PolicyRepository) -> None:
        """Read every line from the store into a new enforcer, then swap it in."""
        revision = await repo.revision()
        enforcer = self._new_enforcer(StoreAdapter(repo))
        await enforcer.load_policy()
        self._install(enforcer, revision)

    def load_lines(self, lines: Iterable[Line], revision: int = 0) -> None:
        """Use these lines (a candidate policy set, or tests)."""
        enforcer = self._new_enforcer()
        for line in lines:
            enforcer.get_model().add_policy("p", "p", line.values)
        self._install(enforcer, revision)

    def _install(self, enforcer: casbin.AsyncEnforcer, revision: int) -> None:
        # Swapped, never mutated: a request in flight sees the old set or the new one.
        self._lines = [Line.from_values(v) for v in enforcer.get_policy()]
        self._enforcer = enforcer
        self._plans = {}
        self.revision = revision
        log.info("policy loaded", extra={"lines": len(self._lines), "revision": revision})

    @property
    def lines(self) -> list[Line]:
        return list(self._lines)

    def plan(self, subjects: tuple[str, ...], resource: str, action: str) -> Plan:
        """A memoised fixed decision, or which context parts the applicable conditions read."""
        key = (subjects, resource, action)
        found = self._plans.get(key)
        if found is not None:
            return found
        applicable = [
            ln
            for ln in self._lines
            if subject_match(subjects, ln.sub)
            and resource_match(resource, ln.obj)
            and action_match(action, ln.act)
        ]
        if any(ln.eft == "deny" and not ln.conditional for ln in applicable) or not any(
            ln.eft == "allow" for ln in applicable
        ):
            plan = Plan(False)
        elif not any(ln.conditional for ln in applicable):
            plan = Plan(True)
        else:
            roots: frozenset[str] = frozenset().union(*(ln.roots for ln in applicable))
            narrow = self._new_enforcer()
            for ln in applicable:
                narrow.get_model().add_policy("p", "p", ln.values)
            plan = Plan(None, roots, narrow)
        self._plans[key] = plan
        return plan

    def enforce(self, subjects: tuple[str, ...], resource: str, action: str, context: dict[str, Any]) -> bool:
        """Casbin's answer for a request with its condition context."""
        return bool(self._enforcer.enforce(subjects, resource, action, context))

    def decide(self, subjects: tuple[str, ...], resource: str, action: str, context: dict[str, Any]) -> bool:
        plan = self.plan(subjects, resource, action)
        if plan.decision is not None:
            return plan.decision
        return bool(plan.enforcer.enforce(subjects, resource, action, context))

    def conditions_for(self, subjects: tuple[str, ...], resource: str, action: str) -> list[str]:
        """The conditions of allow lines that would grant this, for a helpful refusal."""
        return sorted(
            {
                ln.cond.replace(f"{CONTEXT_NAME}.", "")
                for ln in self._lines
                if ln.conditional
                and ln.eft == "allow"
                and subject_match(subjects, ln.sub)
                and resource_match(resource, ln.obj)
                and action_match(action, ln.act)
            }
        )


def policy_writes(
    repo: PolicyRepository,
    policy_id: str,
    row: dict[str, Any],
    rules: list[Rule],
    *,
    create: bool,
    previous: dict[str, Any] | None = None,
) -> list[Write]:
    """One transaction: the document (keeping ``previous`` as a version), its compiled
    lines (none while it is disabled) and the revision every service watches."""
    lines = compile_rules(rules) if row.get("enabled", True) else []
    writes: list[Write] = []
    if previous is not None:
        kept = {k: v for k, v in previous.items() if k != "id"}
        writes.append(repo.keep_version({**kept, "policy_id": policy_id}))
    writes.append(repo.create(policy_id, row) if create else repo.replace(policy_id, row))
    writes.append(repo.delete_lines(policy_id))
    writes.extend(repo.insert_lines([line_row(policy_id, i, "p", ln.values) for i, ln in enumerate(lines)]))
    writes.append(repo.bump_revision())
    return writes
