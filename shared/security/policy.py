"""Authorization: Casbin over the store, with seed-004 policy documents compiled to it.

A policy document is ``{name, version, rules[{effect, resource, action[],
condition, roles}], enabled}``. Each rule becomes Casbin lines ``(subject,
resource, action, condition, effect)``: one per role and action. ``Deny``
overrides ``Allow`` (``policies/model.conf``). Conditions are a small expression
language over the request context (``user.role == 'admin' && user.mfa``),
compiled and checked by :mod:`shared.security.conditions` into the expression Casbin's
``eval()`` hands to simpleeval — Python's own ``eval`` is never used.

Casbin re-parses an ``eval()`` matcher for every line on every call (~100 µs),
so :class:`PolicyEngine` memoises decisions for (subjects, resource, action)
whenever no conditional line could apply, and evaluates only when one could —
with the applicable lines' matchers parsed once (:class:`ParsedLines`). A
condition that raises denies the request. Stored lines are compiled again by
this release's compiler when loaded.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import casbin
from casbin import util as casbin_util
from casbin.effect import Effector, effect_to_bool
from casbin.persist.adapters.asyncio import AsyncAdapter

from shared.security.conditions import (
    ALWAYS,
    FUNCTIONS,
    NEVER,
    as_facts,
    display,
    fields_of,
    recompile,
)
from shared.security.conditions import ConditionError as ConditionError
from shared.security.conditions import RoleSet as RoleSet
from shared.security.conditions import compile_condition as compile_condition
from shared.security.conditions import roots_of as roots_of
from shared.security.repositories import PolicyRepository
from shared.store.writes import Write

log = logging.getLogger(__name__)
# pycasbin prints its model at INFO for every enforcer it builds; this module builds one
# per reload and per conditional decision plan.
logging.getLogger("casbin").setLevel(logging.WARNING)

EFFECTS = ("allow", "deny")
_RESOURCE = re.compile(r"^(\*|[a-z][a-z0-9_-]*(:[A-Za-z0-9_.*/-]+)?)$")
_ACTION = re.compile(r"^(\*|[a-z][a-z0-9_]*)$")
_SUBJECT = re.compile(r"^(\*|[a-z][a-z0-9_-]*|user:[A-Za-z0-9_.@-]+)$")


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
    fields: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False)

    @classmethod
    def from_values(cls, values: list[str]) -> Line:
        sub, obj, act, cond, eft = values[:5]
        return cls(sub, obj, act, cond, eft, roots_of(cond), fields_of(cond))

    @property
    def values(self) -> list[str]:
        return [self.sub, self.obj, self.act, self.cond, self.eft]

    @property
    def conditional(self) -> bool:
        return self.cond != ALWAYS


def compile_rule(rule: Rule, where: str = "rule") -> list[Line]:
    """Check a rule and turn it into Casbin lines. ``ConditionError`` says what is wrong
    and its ``field`` which part (``rules.2.condition``)."""
    if rule.effect not in EFFECTS:
        raise ConditionError(
            f"{where}.effect: effect must be Allow or Deny, not {rule.effect!r}", f"{where}.effect"
        )
    if not _RESOURCE.match(rule.resource):
        raise ConditionError(
            f"{where}.resource: {rule.resource!r} is not a name, 'name:pattern' (e.g. servers:*) or *",
            f"{where}.resource",
        )
    if not rule.actions:
        raise ConditionError(f"{where}.action: name at least one action", f"{where}.action")
    for act in rule.actions:
        if not _ACTION.match(act):
            raise ConditionError(f"{where}.action: {act!r} is not an action name or *", f"{where}.action")
    for sub in rule.subjects:
        if not _SUBJECT.match(sub):
            raise ConditionError(
                f"{where}.roles: {sub!r} is not a role name, user:<name> or *", f"{where}.roles"
            )
    try:
        cond = compile_condition(rule.condition)
    except ConditionError as exc:
        raise ConditionError(f"{where}.condition: {exc}", f"{where}.condition") from None
    return [
        Line(sub, rule.resource, act, cond, rule.effect, roots_of(cond), fields_of(cond))
        for sub in rule.subjects
        for act in rule.actions
    ]


def compile_rules(rules: Iterable[Rule]) -> list[Line]:
    lines: list[Line] = []
    for i, rule in enumerate(rules):
        lines.extend(compile_rule(rule, f"rules.{i}"))
    return lines


def current_line(values: list[str]) -> Line:
    """A stored line with its condition compiled by this release. A condition this
    release refuses fails closed: an Allow never applies, a Deny always does."""
    sub, obj, act, cond, eft = values[:5]
    try:
        cond = recompile(cond)
    except ConditionError as exc:
        log.warning(
            "a stored policy condition is no longer accepted; the line fails closed",
            extra={"condition": display(cond), "effect": eft, "error": str(exc)},
        )
        cond = NEVER if eft == "allow" else ALWAYS
    return Line.from_values([sub, obj, act, cond, eft])


# rules_fingerprint() of the default policies earlier releases shipped: a data directory
# whose "default" document still holds one of them is given this release's at start.
PREVIOUS_DEFAULT_FINGERPRINTS = frozenset(
    {
        "680e2402398be360516f6c65df948b9186e20815b1f4b2ad98142e8cae4dfe0d",  # before issue 8
        "99865c0228a04b38e46c71a961775704b905ec3f7548f1d64e38937f10a378b2",  # before tokens and ext:*
    }
)
_SEMVER_TAIL = re.compile(r"^(.*?)(\d+)$")


def rules_fingerprint(rules: Iterable[Rule]) -> str:
    """A digest of rules as documents, to recognise a policy nobody has edited."""
    canonical = json.dumps([r.to_doc() for r in rules], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def next_version(version: str) -> str:
    """``1.0.0`` -> ``1.0.1``; anything else gets ``.1`` appended."""
    match = _SEMVER_TAIL.match(version)
    if match is None:
        return f"{version}.1"
    return f"{match.group(1)}{int(match.group(2)) + 1}"


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
    (and ``operation.*`` facts) the applicable conditions read and an enforcer holding
    only the lines that can apply (Casbin's cost grows per line)."""

    decision: bool | None
    roots: frozenset[str] = frozenset()
    enforcer: Any = field(default=None, compare=False, repr=False)
    operation_fields: frozenset[str] = frozenset()
    evaluator: ParsedLines | None = field(default=None, compare=False, repr=False)


class ParsedLines:
    """Casbin's ``enforce`` over one enforcer's lines, each line's matcher parsed once.

    With an ``eval()`` matcher pycasbin rewrites and parses the whole matcher again for
    every line on every call (~50 µs a line); a batch is decided once per distinct set
    of operation facts, thousands of times for a batch of different programs. This does
    pycasbin's own rewriting (``escape_assertion``, ``replace_eval``, ``_get_expression``)
    once per line and then pycasbin's loop with the model's effector, so it answers as
    ``enforcer.enforce`` does (``tests/shared/security/test_policy.py`` compares the two)."""

    def __init__(self, enforcer: casbin.AsyncEnforcer) -> None:
        model = enforcer.get_model()
        functions = enforcer.fm.get_functions()
        matcher = model["m"]["m"].value
        p_tokens = model["p"]["p"].tokens
        rule_names = casbin_util.get_eval_value(matcher)
        self.r_tokens = model["r"]["r"].tokens
        self.effector = enforcer.eft
        self.lines: list[tuple[dict[str, str], Any]] = []
        for values in model["p"]["p"].policy:
            p_params = dict(zip(p_tokens, values, strict=True))
            rules = [casbin_util.escape_assertion(p_params[name]) for name in rule_names]
            expression = casbin_util.replace_eval(matcher, rules) if rules else matcher
            self.lines.append((p_params, enforcer._get_expression(expression, functions)))

    @classmethod
    def usable(cls, enforcer: casbin.AsyncEnforcer) -> bool:
        """Role links (``g``) and a matcher without ``eval()`` are left to Casbin itself."""
        model = enforcer.get_model()
        return "g" not in model.keys() and bool(casbin_util.has_eval(model["m"]["m"].value))

    def enforce(self, *rvals: Any) -> bool:
        r_params = dict(zip(self.r_tokens, rvals, strict=True))
        effects: set[int] = set()
        for p_params, expression in self.lines:
            result = expression.eval({**r_params, **p_params})
            if isinstance(result, bool):
                if not result:
                    effects.add(Effector.INDETERMINATE)
                    continue
            elif isinstance(result, float):
                if result == 0:
                    effects.add(Effector.INDETERMINATE)
                    continue
            else:
                raise RuntimeError("matcher result should be bool, int or float")
            eft = p_params.get("p_eft")
            if eft is None:
                effects.add(Effector.ALLOW)
            elif eft == "allow":
                effects.add(Effector.ALLOW)
            elif eft == "deny":
                effects.add(Effector.DENY)
            else:
                effects.add(Effector.INDETERMINATE)
            if self.effector.intermediate_effect(effects) != Effector.INDETERMINATE:
                break
        return bool(effect_to_bool(self.effector.final_effect(effects)))


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
        for name, function in FUNCTIONS.items():  # RE2 instead of Casbin's backtracking re
            enforcer.add_function(name, function)
        return enforcer

    async def load(self, repo: PolicyRepository) -> None:
        """Read every line from the store (through Casbin's adapter), compile each
        condition again with this release's compiler, and swap the result in."""
        revision = await repo.revision()
        enforcer = self._new_enforcer(StoreAdapter(repo))
        await enforcer.load_policy()
        self.load_lines([current_line(v) for v in enforcer.get_policy()], revision)

    def load_lines(self, lines: Iterable[Line], revision: int = 0) -> None:
        """Use these lines (a candidate policy set, or tests)."""
        enforcer = self._new_enforcer()
        for line in lines:
            enforcer.get_model().add_policy("p", "p", line.values)
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
            if ln.cond != NEVER  # a line that failed closed as an Allow
            and subject_match(subjects, ln.sub)
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
            operation_fields = frozenset(
                attr for ln in applicable for root, attr in ln.fields if root == "operation"
            )
            narrow = self._new_enforcer()
            for ln in applicable:
                narrow.get_model().add_policy("p", "p", ln.values)
            evaluator = ParsedLines(narrow) if ParsedLines.usable(narrow) else None
            plan = Plan(None, roots, narrow, operation_fields, evaluator)
        self._plans[key] = plan
        return plan

    def enforce(self, subjects: tuple[str, ...], resource: str, action: str, context: dict[str, Any]) -> bool:
        """Casbin's answer for a request with its condition context (every line)."""
        return _safely(self._enforcer, subjects, resource, action, context)

    def decide(self, subjects: tuple[str, ...], resource: str, action: str, context: dict[str, Any]) -> bool:
        """The decision for a request; a condition that raises denies it (and is logged)."""
        plan = self.plan(subjects, resource, action)
        if plan.decision is not None:
            return plan.decision
        return _safely(plan.evaluator or plan.enforcer, subjects, resource, action, context)

    def conditions_for(self, subjects: tuple[str, ...], resource: str, action: str) -> list[str]:
        """The conditions of allow lines that would grant this, for a helpful refusal."""
        return sorted(
            {
                display(ln.cond)
                for ln in self._lines
                if ln.conditional
                and ln.cond != NEVER
                and ln.eft == "allow"
                and subject_match(subjects, ln.sub)
                and resource_match(resource, ln.obj)
                and action_match(action, ln.act)
            }
        )


def _safely(
    enforcer: casbin.AsyncEnforcer | ParsedLines,
    subjects: tuple[str, ...],
    resource: str,
    action: str,
    context: dict[str, Any],
) -> bool:
    # Save-time checks make this rare (a fact longer than a pattern function reads, a
    # stored line from an older release): the request is denied, never answered 500.
    try:
        return bool(enforcer.enforce(subjects, resource, action, as_facts(context)))
    except Exception as exc:
        log.warning(
            "a policy condition failed; the request is denied",
            extra={"resource": resource, "action": action, "error": f"{type(exc).__name__}: {exc}"},
        )
        return False


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
