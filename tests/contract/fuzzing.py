"""Run schemathesis against a live service and collect every failure (see test_fuzz.py).

Each operation of an ``/openapi.json`` is fuzzed with hypothesis, positive and
negative data, with the operation's generated path ids and, half the time, the
ids of real objects seeded beforehand (so 200 answers are checked too, not only
404s). A failing check is recorded and the run goes on, so one run reports every
distinct failure instead of shrinking the first one.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi._hypothesis import _draw_negated_locations
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
REQUEST_TIMEOUT_S = 20.0


@dataclass
class Report:
    """What a fuzz run sent, what came back, and what failed (deduplicated)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    operations: list[str] = field(default_factory=list)

    def add_failure(self, label: str, exc: BaseException) -> None:
        text = str(exc)
        parts = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
        for part in parts:
            title = str(getattr(part, "title", "") or type(part).__name__)
            self.failures.setdefault((label, title[:200]), text[:3000])

    def summary(self) -> str:
        lines = [
            f"{self.requests} requests over {len(self.operations)} operations; "
            f"statuses {dict(sorted(self.statuses.items()))}; {len(self.failures)} distinct failures"
        ]
        for (label, title), text in sorted(self.failures.items()):
            lines.append(f"--- {label}: {title}\n{text}")
        return "\n".join(lines)


def load(base_url: str) -> Any:
    """The service's own document, as served."""
    doc = requests.get(f"{base_url}/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
    return schemathesis.openapi.from_dict(doc)


def fuzz(
    base_url: str,
    *,
    token: str | None,
    examples: int,
    include: Callable[[str, str], bool],
    known_ids: dict[str, list[str]] | None = None,
    report: Report | None = None,
    seed: int = 8,
    allow_nul: bool = True,
) -> Report:
    """Fuzz every operation ``include(method, path)`` selects; returns the report."""
    report = report or Report()
    schema = load(base_url)
    # The token is ours to send (or not): negative data must not "remove" a header we add.
    schema.config.generation.update(allow_x00=allow_nul, with_security_parameters=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        method, path = operation.method.upper(), operation.path
        if not include(method, path):
            continue
        report.operations.append(f"{method} {path}")
        for mode in MODES:
            strategy = _strategy(operation, mode, _ids_for(path, known_ids or {}))
            if strategy is None:
                continue  # nothing this mode can send
            _run(strategy, operation.label, base_url, headers, session, examples, report, seed)
    session.close()
    return report


def _ids_for(path: str, known: dict[str, list[str]]) -> list[dict[str, str]]:
    """Real path parameters for this path, from the seeded objects."""
    out: list[dict[str, str]] = []
    for prefix, ids in known.items():
        if path.startswith(prefix + "/{id}"):
            for value in ids:
                params = {"id": value}
                if "{delivery_id}" in path and known.get(f"{prefix}/{value}/deliveries"):
                    params["delivery_id"] = known[f"{prefix}/{value}/deliveries"][0]
                out.append(params)
    return out


def _strategy(operation: Any, mode: GenerationMode, known: Iterable[dict[str, str]]) -> Any:
    """Cases of generated path ids and of the seeded ones; in negative mode only the branches
    with something to break (None where there is none: the run would send nothing)."""
    branches = [None, *known]
    if mode == GenerationMode.NEGATIVE:
        branches = [p for p in branches if _negatable(operation, p)]
    strategies = [operation.as_strategy(generation_mode=mode, path_parameters=p) for p in branches]
    if not strategies:
        return None
    return st.one_of(*strategies) if len(strategies) > 1 else strategies[0]


class _Drew(Exception):
    """Raised by :func:`_never` when schemathesis draws: there was something to break."""


def _never(_: Any) -> Any:
    raise _Drew


def _negatable(operation: Any, path_parameters: dict[str, str] | None) -> bool:
    """Whether schemathesis can break any part of this operation's requests (its own rule).

    Where it cannot (a string path id and nothing else, or only the seeded ids), every
    negative case is rejected: hypothesis then draws ~1,000 cases in vain before giving up
    (Unsatisfiable), 80 % of the fuzzers' time and not one request. The rule picks no
    location, without drawing, exactly when there is none to pick."""
    explicit = {
        ParameterLocation.PATH: path_parameters,
        ParameterLocation.HEADER: None,
        ParameterLocation.COOKIE: None,
        ParameterLocation.QUERY: None,
    }
    try:
        picked = _draw_negated_locations(
            _never, operation, GenerationMode.NEGATIVE, explicit=explicit, body_is_generated=True
        )
    except _Drew:
        return True  # it draws only from a non-empty list of locations to break
    return picked is not None


def _run(
    strategy: Any,
    label: str,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
    examples: int,
    report: Report,
    seed: int,
) -> None:
    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.seed(seed)
    @given(case=strategy)
    def run(case: Any) -> None:
        try:
            response = case.call(
                base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as exc:
            report.add_failure(label, exc)
            return
        report.requests += 1
        report.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup: recorded; the run goes on
            report.add_failure(label, exc)

    random.seed(seed)
    with warnings.catch_warnings():
        # schemathesis's strategies draw from `random` (a deprecation hypothesis warns of).
        warnings.simplefilter("ignore", hypothesis.errors.HypothesisDeprecationWarning)
        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            pass  # no negative data exists for an operation without inputs
