"""The condition language of policy rules: compiling, checking and the facts it reads.

A condition (``batch.environment == 'prod' && !user.mfa``) is parsed with
Python's ``ast``, checked against a whitelist of names, node types and
functions, and compiled into the expression Casbin's ``eval()`` hands to
simpleeval — Python's own ``eval`` is never used. Three things make the
compiled form safe to hand to Casbin:

- **String literals are encoded** as ``lit('<hex of UTF-8>')``. pycasbin
  rewrites ``&&``, ``||`` and ``!`` everywhere in the expression
  (``CoreEnforcer._get_expression``) and ``p.``/``r.`` in every ``eval()``
  rule (``util.escape_assertion``), string literals included, so
  ``'/tasks/a!b'`` would become ``'/tasks/a not b'``. Hex digits are left
  alone by both.
- **Pattern functions run in linear time**: ``regexMatch`` and ``globMatch``
  use RE2 (``google-re2``), whose patterns are compiled when the policy is
  saved (a pattern RE2 cannot run is refused then), and no pattern function
  reads more than :data:`MAX_MATCH_INPUT` characters of a fact.
- **Every condition is evaluated at save time** against sample contexts
  (:func:`sample_contexts`: typical and edge values of every fact it reads,
  ``null`` where a fact may be absent); one that raises, or answers anything
  but true or false, is refused with the reason. Whatever still raises at
  request time denies the request (see :meth:`shared.security.policy.PolicyEngine.decide`).

Facts that identify something a person types (``batch.environment``,
``operation.type``, ``operation.provider``) are normalised: NFKC, format
characters dropped, trimmed and case-folded; string literals compared with
them are normalised the same way when the condition is compiled, so
``batch.environment == 'Prod'`` matches ``" PROD"``.
"""

from __future__ import annotations

import ast
import functools
import ipaddress
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import re2

# What a condition may read: root -> attributes.
CONTEXT_FIELDS: dict[str, frozenset[str]] = {
    "user": frozenset({"id", "username", "role", "roles", "mfa"}),
    "request": frozenset({"ip", "method", "path", "service"}),
    "time": frozenset({"hour", "minute", "weekday", "date"}),
    "batch": frozenset({"environment", "check_mode", "name"}),
    "operation": frozenset({"type", "provider", "program", "program_name", "env_keys", "program_allowed"}),
}
# Facts compared case-insensitively: normalised in the context, literals normalised at compile time.
FOLDED_FACTS = frozenset({("batch", "environment"), ("operation", "type"), ("operation", "provider")})
# The functions a condition may call, each (fact, 'pattern'): the pattern a string literal.
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
LITERAL_FUNCTION = "lit"
MAX_CONDITION_LENGTH = 500
# The most of one fact a pattern function reads: longer input makes the condition fail,
# which denies the request (RE2 is linear, this bounds the constant).
MAX_MATCH_INPUT = 4096
RE2_MAX_MEM_BYTES = 8 << 20
ALWAYS = "True"
NEVER = "False"
_ROOTS_USED = re.compile(rf"\b{CONTEXT_NAME}\.(\w+)")
_FIELDS_USED = re.compile(rf"\b{CONTEXT_NAME}\.(\w+)\.(\w+)")
_CASE_INSENSITIVE = "(?i)"
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
_STRINGS = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


class ConditionError(ValueError):
    """A condition that is not in the language, or fails on a sample (the message says
    why; ``field``, when known, names the part of the policy: ``rules.2.condition``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- normalisation -------------------------------------------------------------------


def fold(value: Any) -> Any:
    """A typed identifier as policies compare it: NFKC, format characters (zero-width
    spaces …) dropped, trimmed, case-folded. Anything but a string is returned as is."""
    if not isinstance(value, str):
        return value
    if len(value) > 256:
        return _fold(value)
    return _fold_cached(value)


@functools.lru_cache(maxsize=4096)
def _fold_cached(value: str) -> str:
    return _fold(value)


def _fold(value: str) -> str:
    text = unicodedata.normalize("NFKC", value)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip().casefold()


# -- compiling -------------------------------------------------------------------------


def _normalise_operators(source: str) -> str:
    """``&&``/``||``/``!`` to Python's words, leaving string literals alone."""
    parts = _STRINGS.split(source)
    for i in range(0, len(parts), 2):
        text = parts[i].replace("&&", " and ").replace("||", " or ")
        parts[i] = re.sub(r"!(?!=)", " not ", text)
    return "".join(parts)


def encode_literal(text: str) -> ast.expr:
    return ast.Call(ast.Name(LITERAL_FUNCTION, ast.Load()), [ast.Constant(text.encode().hex())], [])


def literal(hex_text: str) -> str:
    """``lit()`` of a compiled condition: the string literal it stands for."""
    return _decode(hex_text)


@functools.lru_cache(maxsize=4096)
def _decode(hex_text: str) -> str:
    return bytes.fromhex(hex_text).decode()


def _fact(node: ast.AST) -> tuple[str, str] | None:
    """``(root, attr)`` if ``node`` is a compiled fact ``r_ctx.root.attr``."""
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == CONTEXT_NAME
    ):
        return node.value.attr, node.attr
    return None


class _Compiler(ast.NodeTransformer):
    """Source tree -> compiled tree (facts under ``r_ctx``, literals encoded)."""

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
        ctx = ast.Attribute(ast.Name(CONTEXT_NAME, ast.Load()), root.id, ast.Load())
        return ast.copy_location(ast.Attribute(ctx, node.attr, ast.Load()), node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, str):
            return ast.copy_location(encode_literal(node.value), node)
        if not isinstance(node.value, int | float | bool | type(None)):
            raise ConditionError(f"literal {node.value!r} is not allowed")
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        operands = [node.left, *node.comparators]
        if any(_source_fact(o) in FOLDED_FACTS for o in operands):
            # the fact is normalised, so the literals it is compared with are too
            operands = [_fold_literals(o) for o in operands]
            node.left, node.comparators = operands[0], operands[1:]
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not isinstance(node.func, ast.Name) or node.func.id not in CONDITION_FUNCTIONS:
            raise ConditionError(
                "only these functions may be called: " + ", ".join(sorted(CONDITION_FUNCTIONS))
            )
        name = node.func.id
        if node.keywords or len(node.args) != 2:
            raise ConditionError(f"{name} takes two positional arguments: {name}(<fact>, '<pattern>')")
        subject, pattern = node.args
        if not isinstance(pattern, ast.Constant) or not isinstance(pattern.value, str):
            raise ConditionError(f"the second argument of {name} is a string literal (the pattern)")
        text = pattern.value
        if _source_fact(subject) in FOLDED_FACTS:
            if name == "regexMatch" and not text.startswith(_CASE_INSENSITIVE):
                text = _CASE_INSENSITIVE + text
            elif name in ("keyMatch", "globMatch"):
                text = text.casefold()
        check_pattern(name, text)
        node.args = [self.visit(subject), ast.copy_location(encode_literal(text), pattern)]
        return node


def _source_fact(node: ast.AST) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id, node.attr
    return None


def _fold_literals(node: ast.expr) -> ast.expr:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return ast.copy_location(ast.Constant(fold(node.value)), node)
    if isinstance(node, ast.List | ast.Tuple):
        node.elts = [_fold_literals(e) for e in node.elts]
    return node


class _Decompiler(ast.NodeTransformer):
    """Compiled tree -> source tree (``r_ctx.root.attr`` -> ``root.attr``, ``lit()`` -> text),
    so a stored line compiled by an older release is recompiled by this one."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        fact = _fact(node)
        if fact is not None:
            return ast.copy_location(ast.Attribute(ast.Name(fact[0], ast.Load()), fact[1], ast.Load()), node)
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if (
            isinstance(node.func, ast.Name)
            and node.func.id == LITERAL_FUNCTION
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            try:
                return ast.copy_location(ast.Constant(_decode(node.args[0].value)), node)
            except ValueError:
                raise ConditionError("a lit() literal that is not hex-encoded UTF-8") from None
        return self.generic_visit(node)


@functools.lru_cache(maxsize=1024)
def compile_condition(source: str | None) -> str:
    """The Casbin ``eval()`` expression for a condition (``True`` for none), checked
    against the sample contexts; ``ConditionError`` says what is wrong."""
    if source is None or not source.strip():
        return ALWAYS
    if len(source) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_CONDITION_LENGTH} characters")
    try:
        tree = ast.parse(_normalise_operators(source).strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"not an expression: {exc.msg}") from None
    compiled = ast.unparse(_Compiler().visit(tree))
    check_on_samples(compiled)
    return compiled


@functools.lru_cache(maxsize=1024)
def recompile(compiled: str) -> str:
    """A stored compiled condition, compiled again by this release (idempotent)."""
    if compiled in (ALWAYS, NEVER):
        return compiled
    try:
        tree = ast.parse(compiled, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"not an expression: {exc.msg}") from None
    source = ast.unparse(_Decompiler().visit(tree))
    return compile_condition(source)


def display(compiled: str) -> str:
    """A compiled condition as a person writes it (for refusals and logs)."""
    if compiled in (ALWAYS, NEVER):
        return compiled
    try:
        return ast.unparse(_Decompiler().visit(ast.parse(compiled, mode="eval")))
    except (SyntaxError, ConditionError):
        return compiled


def roots_of(compiled: str) -> frozenset[str]:
    """Which context parts (user, request, time, batch, operation) a compiled condition reads."""
    return frozenset(_ROOTS_USED.findall(compiled))


def fields_of(compiled: str) -> frozenset[tuple[str, str]]:
    """Which facts ``(root, attr)`` a compiled condition reads."""
    return frozenset(_FIELDS_USED.findall(compiled))


# -- the functions conditions call --------------------------------------------------------


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would write every refused pattern to stderr
    options.max_mem = RE2_MAX_MEM_BYTES
    return options


@functools.lru_cache(maxsize=512)
def _regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _re2_options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ConditionError(f"regular expression {pattern!r} is not supported by RE2: {reason}") from None


def glob_to_regex(pattern: str) -> str:
    """A glob as an RE2 pattern for the whole string: ``*`` any run but ``/``, ``**`` any
    run, ``?`` one character but ``/``, ``[abc]``/``[!abc]`` classes, ``{a,b}`` alternatives,
    ``\\`` escapes the next character."""
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                while i < len(pattern) and pattern[i] == "*":
                    i += 1
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                raise ConditionError(f"glob {pattern!r}: '[' without ']'")
            body = pattern[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            body = body.replace("\\", "\\\\").replace("]", "\\]")
            out.append(("[^" if negate else "[") + body + "]")
            i = end + 1
            continue
        elif ch == "{":
            depth += 1
            out.append("(?:")
        elif ch == "}" and depth:
            depth -= 1
            out.append(")")
        elif ch == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    if depth:
        raise ConditionError(f"glob {pattern!r}: '{{' without '}}'")
    return "(?s:" + "".join(out) + r")\z"


def _subject(name: str, value: Any) -> str | None:
    if value is None:
        return None  # an absent fact matches no pattern
    if not isinstance(value, str):
        raise TypeError(f"{name} reads a text fact, not {type(value).__name__}")
    if len(value) > MAX_MATCH_INPUT:
        raise ValueError(f"{name}: the fact is longer than {MAX_MATCH_INPUT} characters")
    return value


def regex_match(value: Any, pattern: str) -> bool:
    """Casbin's ``regexMatch`` (a match at the start, like ``re.match``), in RE2."""
    text = _subject("regexMatch", value)
    return text is not None and _regex(pattern).match(text) is not None


def glob_match(value: Any, pattern: str) -> bool:
    text = _subject("globMatch", value)
    return text is not None and _regex(glob_to_regex(pattern)).match(text) is not None


def key_match(value: Any, pattern: str) -> bool:
    """Casbin's ``keyMatch``: ``/foo/*`` covers ``/foo/bar``; without ``*``, equality."""
    text = _subject("keyMatch", value)
    if text is None:
        return False
    star = pattern.find("*")
    if star == -1:
        return text == pattern
    return text[:star] == pattern[:star]


@functools.lru_cache(maxsize=256)
def _network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        raise ConditionError(f"ipMatch: {pattern!r} is not an address or a CIDR block") from None


def ip_match(value: Any, pattern: str) -> bool:
    """``ipMatch(request.ip, '10.0.0.0/8')``; something that is not an address matches nothing."""
    text = _subject("ipMatch", value)
    if text is None:
        return False
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address in _network(pattern)


def check_pattern(function: str, pattern: str) -> None:
    """Refuse, at compile time, a pattern its function cannot use."""
    if function == "regexMatch":
        _regex(pattern)
    elif function == "globMatch":
        _regex(glob_to_regex(pattern))
    elif function == "ipMatch":
        _network(pattern)


# The functions every enforcer gets (Casbin's own regexMatch and globMatch use Python's
# backtracking ``re``; these replace them).
FUNCTIONS: dict[str, Any] = {
    "regexMatch": regex_match,
    "globMatch": glob_match,
    "keyMatch": key_match,
    "ipMatch": ip_match,
    LITERAL_FUNCTION: literal,
}


# -- sample contexts ------------------------------------------------------------------------


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


# Each fact's values for checking a condition at save time: the first is typical, the rest
# are edges (absent facts as None). Every fact a condition reads takes each of its values.
SAMPLES: dict[tuple[str, str], tuple[Any, ...]] = {
    ("user", "id"): ("0f3c2a", ""),
    ("user", "username"): ("alice", ""),
    ("user", "role"): (RoleSet(("operator",)), RoleSet(())),
    ("user", "roles"): (["operator"], []),
    ("user", "mfa"): (True, False),
    ("request", "ip"): ("10.1.2.3", "::1", "unknown"),
    ("request", "method"): ("POST", "GET"),
    ("request", "path"): ("/batch/execute", "/", "/tasks/a!b"),
    ("request", "service"): ("orchestrator", "control-center"),
    ("time", "hour"): (12, 0, 23),
    ("time", "minute"): (30, 0, 59),
    ("time", "weekday"): (2, 0, 6),
    ("time", "date"): ("2026-01-07",),
    ("batch", "environment"): ("prod", None, ""),
    ("batch", "check_mode"): (False, True),
    ("batch", "name"): ("nightly", None, ""),
    ("operation", "type"): ("command", None, "server_batch"),
    ("operation", "provider"): ("command", None, "local"),
    ("operation", "program"): ("terraform", None, "/usr/bin/env"),
    ("operation", "program_name"): ("terraform", None, "env"),
    ("operation", "env_keys"): (["AWS_PROFILE"], []),
    ("operation", "program_allowed"): (False, True),
}
# Facts that are None when the request does not carry them.
ABSENT: dict[tuple[str, str], Any] = {
    ("batch", "environment"): None,
    ("batch", "name"): None,
    ("batch", "check_mode"): False,
    ("operation", "type"): None,
    ("operation", "provider"): None,
    ("operation", "program"): None,
    ("operation", "program_name"): None,
    ("operation", "env_keys"): [],
    ("operation", "program_allowed"): False,
}


def as_facts(context: Mapping[str, Any]) -> SimpleNamespace:
    """A condition context as Casbin's evaluator reads it best. simpleeval checks every
    value an expression touches for forbidden content, recursing into dicts and lists;
    ``r_ctx`` as nested dicts would be walked whole at every ``r_ctx.root.fact``, as
    namespaces only the fact read is."""
    return SimpleNamespace(
        **{
            root: SimpleNamespace(**part) if isinstance(part, dict) else part
            for root, part in context.items()
        }
    )


def _context(values: Mapping[tuple[str, str], Any]) -> dict[str, Any]:
    context: dict[str, dict[str, Any]] = {root: {} for root in CONTEXT_FIELDS}
    for (root, attr), value in values.items():
        context[root][attr] = value
    return context


def sample_contexts(facts: Iterable[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    """``(description, context)``: the typical context, each read fact at each edge value,
    and every absent fact absent at once."""
    typical = {key: values[0] for key, values in SAMPLES.items()}
    out = [("with typical values", _context(typical))]
    for key in sorted(facts):
        for value in SAMPLES.get(key, ())[1:]:
            out.append((f"when {key[0]}.{key[1]} is {_show(value)}", _context({**typical, key: value})))
    out.append(("when the request has no batch or operation facts", _context({**typical, **ABSENT})))
    return out


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, RoleSet):
        return repr(list(value))
    return repr(value)


def check_on_samples(compiled: str) -> None:
    """Evaluate a compiled condition on the sample contexts, as Casbin will (same
    rewriting, same evaluator); ``ConditionError`` names the sample that fails."""
    from casbin.core_enforcer import CoreEnforcer

    expression = CoreEnforcer._get_expression(compiled, dict(FUNCTIONS))
    for described, context in sample_contexts(fields_of(compiled)):
        try:
            result = expression.eval({CONTEXT_NAME: as_facts(context)})
        except ConditionError:
            raise
        except Exception as exc:
            raise ConditionError(f"fails {described}: {_reason(exc)}") from None
        if not isinstance(result, bool):
            raise ConditionError(f"answers {type(result).__name__} rather than true or false {described}")


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


# -- operation facts --------------------------------------------------------------------------

# The single-purpose workflow routes: each submits one operation of this type.
WORKFLOW_OPERATION_TYPES = {
    "/workflows/servers/create": "server_batch",
    "/workflows/taskserv/create": "taskserv_batch",
    "/workflows/cluster/create": "cluster_batch",
}
DEFAULT_WORKFLOW_PROVIDER = "local"
OPERATION_FIELDS = CONTEXT_FIELDS["operation"]


@dataclass(frozen=True)
class OperationFacts:
    """What ``operation.*`` reads for one operation (and which operation, for refusals).

    An operation that runs programs (``run``, ``undo``) gives one set of facts per
    program, so a condition on the program holds for everything it may run."""

    index: int | None
    op_id: str | None
    type: str | None = None
    provider: str | None = None
    program: str | None = None
    program_allowed: bool = False
    env_keys: tuple[str, ...] = ()
    argv_field: str | None = None

    def facts(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "provider": self.provider,
            "program": self.program,
            "program_name": posixpath.basename(self.program) if self.program is not None else None,
            "env_keys": list(self.env_keys),
            "program_allowed": self.program_allowed,
        }

    def key(self, read: frozenset[str]) -> tuple[Any, ...]:
        """The facts a condition reads, hashable: operations with equal keys decide alike."""
        facts = self.facts()
        return tuple(
            tuple(facts[name]) if isinstance(facts[name], list) else facts[name] for name in sorted(read)
        )

    def describe(self) -> str:
        what = f"operation {self.op_id!r}" if self.op_id is not None else "the operation"
        if self.index is not None:
            what += f" (operations[{self.index}])"
        parts = [f"type {self.type}" if self.type else None, f"provider {self.provider}"]
        if self.program is not None:
            parts.append(f"{self.argv_field} program {self.program!r}")
        return what + ": " + ", ".join(p for p in parts if p)


NO_OPERATION = OperationFacts(None, None)


def operations_of(doc: Any, path: str, allowed_programs: Iterable[str]) -> list[OperationFacts]:
    """The operations a submission body asks for, as facts, each distinct set once (the
    first operation that has it names it): every entry of ``operations``
    (``/batch/execute``), or the one a workflow route derives. Empty for a body that has
    neither (the handler refuses malformed ones)."""
    allowed = frozenset(allowed_programs)
    if not isinstance(doc, dict):
        return []
    if path in WORKFLOW_OPERATION_TYPES:
        provider = doc.get("provider")
        return [
            OperationFacts(
                None,
                None,
                type=WORKFLOW_OPERATION_TYPES[path],
                provider=fold(provider) if isinstance(provider, str) else DEFAULT_WORKFLOW_PROVIDER,
            )
        ]
    operations = doc.get("operations")
    if not isinstance(operations, list):
        return []
    out: list[OperationFacts] = []
    seen: set[tuple[Any, ...]] = set()
    for index, op in enumerate(operations):
        if not isinstance(op, dict):
            continue
        raw_type, raw_provider, env = op.get("type"), op.get("provider"), op.get("env")
        raw_type = raw_type if isinstance(raw_type, str) else None
        raw_provider = raw_provider if isinstance(raw_provider, str) and raw_provider else None
        env_keys = tuple(sorted(env)) if isinstance(env, dict) else ()
        programs: list[tuple[str | None, str | None]] = [
            (name, argv[0])
            for name in ("run", "undo")
            if isinstance(argv := op.get(name), list) and argv and isinstance(argv[0], str)
        ] or [(None, None)]
        for argv_field, program in programs:
            # cheap identity of the facts before any normalising: thousands of alike
            # operations cost one set lookup each
            key = (raw_type, raw_provider, program, env_keys)
            if key in seen:
                continue
            seen.add(key)
            op_type = fold(raw_type)
            raw_id = op.get("id")
            out.append(
                OperationFacts(
                    index,
                    raw_id[:128] if isinstance(raw_id, str) else None,
                    type=op_type,
                    # OperationSpec.provider_name
                    provider=fold(raw_provider) or ("command" if op_type == "command" else "local"),
                    program=program,
                    program_allowed=program is not None and program in allowed,
                    env_keys=env_keys,
                    argv_field=argv_field,
                )
            )
    return out
