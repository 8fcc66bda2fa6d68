"""Every validator of both services fed random documents: a valid result or a 400/422.

The models are the ones the routes validate with (taken from the route tables,
so a new route is covered without editing this file), parsed the way
``read_body`` and ``read_query`` parse them; documents that pass go on through
the checks the handlers run next (the batch graph, the workflow builders, policy
rules, webhook URLs and events, stream kinds, audit filters). Strings carry NUL
and other control characters, lone surrogates and bidi marks; numbers are huge;
nesting is deep. Nothing may escape but pydantic's ``ValidationError`` (the
422 ``read_body`` makes of it) or one of our errors whose status is 400 or 422.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from control_center.app import build_api as control_center_api
from control_center.audit_api import _filters
from control_center.models import AuditQuery, CreatePolicy, UpdatePolicy
from control_center.policies import rules_from
from control_center.webhooks_api import WebhookCreate, WebhookUpdate
from orchestrator.api.batch import cluster_batch, servers_batch, taskserv_batch
from orchestrator.app import build_api as orchestrator_api
from orchestrator.dag import validate as validate_graph
from orchestrator.models import (
    BatchRequest,
    ClusterWorkflowRequest,
    ServerWorkflowRequest,
    TaskservWorkflowRequest,
)
from provisioning.server import VOCABULARIES, product_bus
from shared.errors import ProvisioningError
from shared.events.streams import requested_kinds
from shared.settings import DEFAULT_PROVIDER_MAP, load_settings
from shared.web.keys import BUS
from shared.webhooks.catalogue import Catalogue
from shared.webhooks.urlguard import parse_target

FAST_EXAMPLES = 60
SLOW_EXAMPLES = 1500


def _route_models() -> list[tuple[str, type[BaseModel]]]:
    """(where, model) for every body and query model of both services' routes."""
    found: dict[type[BaseModel], str] = {}
    for service, build in (("orchestrator", orchestrator_api), ("control-center", control_center_api)):
        for spec in build().specs:
            for kind, model in (("body", spec.body), ("query", spec.query)):
                if model is not None and model not in found:
                    found[model] = f"{kind}:{service}:{model.__name__}"
    return sorted(((where, model) for model, where in found.items()), key=lambda x: x[0])


MODELS = _route_models()
# What read_body and read_query give the models' validators: the app, whose bus knows
# the services' vocabularies (the webhook event names).
APP = web.Application()
APP[BUS] = product_bus(load_settings(db_url="mem://"))


def _check_batch(batch: BatchRequest) -> None:
    for op in batch.operations:
        op.dependency_refs  # noqa: B018  (computed from the dependencies: must not raise)
    validate_graph(batch, lambda name: name in DEFAULT_PROVIDER_MAP)


def _rules(body: CreatePolicy | UpdatePolicy) -> None:
    if body.rules is not None:
        rules_from([r.model_dump() for r in body.rules])


def _webhook(body: WebhookCreate | WebhookUpdate) -> None:
    if body.url is not None:
        parse_target(body.url, allow_private=False)
    if body.events is not None:
        Catalogue(APP[BUS].registry).validate(body.events)


def _stream(query: Any) -> None:
    for vocabulary in VOCABULARIES:
        try:
            requested_kinds(query.events, vocabulary.kind_names)
        except ProvisioningError as exc:
            assert exc.status == 422


# What the handler does with a valid document before anything is stored.
NEXT_STEPS: dict[str, Callable[[Any], None]] = {
    "BatchRequest": _check_batch,
    "ServerWorkflowRequest": lambda body: _check_batch(servers_batch(body)),
    "TaskservWorkflowRequest": lambda body: _check_batch(taskserv_batch(body)),
    "ClusterWorkflowRequest": lambda body: _check_batch(cluster_batch(body)),
    "CreatePolicy": _rules,
    "UpdatePolicy": _rules,
    "WebhookCreate": _webhook,
    "WebhookUpdate": _webhook,
    "EventStreamQuery": _stream,
    "AuditQuery": _filters,
}
assert {ServerWorkflowRequest, TaskservWorkflowRequest, ClusterWorkflowRequest, AuditQuery} <= {
    m for _, m in MODELS
}

# -- strategies ----------------------------------------------------------------------------

NASTY = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "evil\u0000",
        "\x01\x1b[31m\x7f",
        "\ud800",
        "x\udfffy",
        "\u202eabc",
        "\ufeff",
        " " * 12,
        "9" * 5000,
        "${jndi:ldap://x}",
        "../../etc/passwd",
        "' OR 1=1 --",
        "task,gossip",
        "2026-01-01T00:00:00Z",
    ]
)
TEXT_CHARS = st.characters(exclude_categories=["Cs"])
CHARS = st.one_of(TEXT_CHARS, st.sampled_from("\x00\x01\x08\x1f\x7f\u2028\u202e"))
# A lone surrogate makes the whole document invalid JSON for pydantic's parser, so they
# come only now and then (NASTY) rather than inside any string.
STRINGS = st.one_of(NASTY, st.text(CHARS, max_size=40))
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 4294967296, 1e308, -0.0, 0.5]),
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)


def _fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _json_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
        max_leaves=25,
    )


def _deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"operations": value}
    return value


def _pattern_of(metadata: list[Any]) -> str | None:
    for item in metadata:
        pattern = getattr(item, "pattern", None)
        if isinstance(pattern, str):
            return pattern
    return None


def _typed(annotation: Any, metadata: list[Any], depth: int, strict: bool) -> st.SearchStrategy[Any]:
    """Values of the annotated type (so validation gets deep); unless ``strict``, mixed
    with anything at all."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _typed(args[0], [*metadata, *args[1:]], depth, strict)
    if origin in (Union, types.UnionType):
        return st.one_of(*(_typed(a, metadata, depth, strict) for a in args))
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        item = _typed(args[0], [], depth, strict) if args else LEAVES
        return st.lists(item, min_size=1 if strict else 0, max_size=4)
    if origin is dict:
        return st.dictionaries(STRINGS, STRINGS if strict else LEAVES, max_size=4)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _shaped(annotation, depth + 1, strict) if depth < 4 else st.just({})
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from([m.value for m in annotation])
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(1, 50) if strict else NUMBERS
    if annotation is float:
        return st.floats(1, 10) if strict else NUMBERS
    if annotation is str:
        pattern = _pattern_of(metadata)
        if pattern is not None:
            # Python's `$` also matches before a final newline; the models' engine does not.
            regex = st.from_regex(pattern.removeprefix("^").removesuffix("$"), fullmatch=True)
            return regex if strict else st.one_of(regex, STRINGS)
        return st.text(TEXT_CHARS, min_size=1, max_size=12) if strict else STRINGS
    return LEAVES


def _shaped(
    model: type[BaseModel], depth: int = 0, strict: bool = False
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's fields: ``strict``, every required field present and each
    typed; otherwise any subset, each typed or anything."""
    anything = _json_values(st.one_of(st.sampled_from(_fields(model)), STRINGS))
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        typed = _typed(info.annotation, list(info.metadata), depth, strict)
        key = info.alias or name
        if strict and info.is_required():
            required[key] = typed
        elif strict:  # the default is always valid; the typed value mostly
            optional[key] = st.one_of(typed, st.just(info.get_default(call_default_factory=True)))
        else:
            optional[key] = st.one_of(typed, anything)
    return st.fixed_dictionaries(required, optional=optional)


def _documents(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    names = _fields(model)
    values = _json_values(st.one_of(st.sampled_from(names), STRINGS))
    deep = st.sampled_from([10, 100, 1000]).map(lambda d: {names[0]: _deep(d)})
    strict = _shaped(model, strict=True)
    return st.one_of(strict, strict, strict, _shaped(model), values, deep)


def _query_documents(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    names = _fields(model)
    scalar = st.one_of(STRINGS, NUMBERS.map(str), st.sampled_from(["true", "false", "null", "1", "-1"]))
    value = st.one_of(scalar, st.lists(scalar, min_size=2, max_size=3))
    return st.dictionaries(st.one_of(st.sampled_from(names), STRINGS), value, max_size=6)


# -- the property ------------------------------------------------------------------------------


def _outcome(model: type[BaseModel], parse: Callable[[], BaseModel]) -> None:
    try:
        value = parse()
    except ValidationError:
        return  # read_body/read_query answer 422 naming the fields
    step = NEXT_STEPS.get(model.__name__)
    if step is None:
        return
    try:
        step(value)
    except ProvisioningError as exc:
        assert exc.status in (400, 422), f"{model.__name__}: {exc.status} {exc.message}"


def _body(model: type[BaseModel], doc: Any) -> None:
    try:
        raw = json.dumps(doc)
    except (ValueError, RecursionError):
        return  # not JSON text at all: nothing a client could send
    _outcome(model, lambda: model.model_validate_json(raw, strict=True, context=APP))


def _query(model: type[BaseModel], params: dict[str, Any]) -> None:
    _outcome(model, lambda: model.model_validate(params, context=APP))


def _property(where: str, model: type[BaseModel], examples: int) -> None:
    settings_ = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    if where.startswith("body:"):

        @settings_
        @given(doc=_documents(model))
        def body_property(doc: Any) -> None:
            _body(model, doc)

        body_property()
    else:

        @settings_
        @given(params=_query_documents(model))
        def query_property(params: dict[str, Any]) -> None:
            _query(model, params)

        query_property()


@pytest.mark.parametrize(("where", "model"), MODELS, ids=[w for w, _ in MODELS])
def test_validators_give_a_result_or_a_4xx(where: str, model: type[BaseModel]) -> None:
    _property(where, model, FAST_EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("where", "model"), MODELS, ids=[w for w, _ in MODELS])
def test_validators_give_a_result_or_a_4xx_slow(where: str, model: type[BaseModel]) -> None:
    _property(where, model, SLOW_EXAMPLES)


def test_known_inputs_that_once_escaped() -> None:
    """The documents the fuzzers turned into 500s, through the same path."""
    bad_dependency = {
        "name": "b",
        "operations": [{"id": "a", "type": "server_batch", "dependencies": ["x y"]}],
    }
    _body(BatchRequest, bad_dependency)
    _body(TaskservWorkflowRequest, {"infra": "i", "taskserv": "my svc", "check_mode": True})
    _body(ClusterWorkflowRequest, {"infra": "i", "cluster_type": "k8s prod"})
    _body(ServerWorkflowRequest, {"infra": "x" * 128})
    _body(WebhookCreate, {"url": "HTTpS://.\u0005\u0006L|", "events": ["*"]})
    with pytest.raises(ValidationError):
        BatchRequest.model_validate_json(json.dumps(bad_dependency), strict=True)
