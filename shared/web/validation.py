"""Request validation: hostile input refused once, before any route, policy or audit
record sees it, then the body and query checked against the route's models
(400 malformed, 413 too large, 415 not JSON, 422 naming each bad field).
A model's validators get the application as pydantic's validation context
(``info.context``), for checks against what is registered with it (the
webhook event names of its bus, for instance).

Refused everywhere: NUL and other C0 control characters (tab, CR and LF are
text), lone UTF-16 surrogates, integers outside signed 64 bits, non-finite
numbers, strings past ``max_string_chars`` and JSON nested deeper than
``max_json_depth`` (:func:`check_json`, :func:`parse_json`). The embedded store
keeps a NUL but can never return it, so one such byte stored would break every
later read.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from shared.errors import (
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.web.keys import SETTINGS as SETTINGS_KEY

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


log = logging.getLogger(__name__)


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append({"field": loc, "message": err["msg"], "type": err["type"]})
    return out


def validation_failed(exc: ValidationError, where: str) -> ValidationFailed:
    fields = _field_errors(exc)
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:10])
    return ValidationFailed(f"invalid {where}: {summary}", details={"fields": fields})


# -- hostile input -----------------------------------------------------------------

MAX_JSON_DEPTH = 64  # defaults of the settings ``max_json_depth`` and ``max_string_chars``
MAX_STRING_CHARS = 65_536
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_FIELD_ERRORS = 20  # per response: a hostile document may hold millions of bad values
# C0 controls except tab, LF and CR; lone UTF-16 surrogates (JSON "\ud800", or bytes that
# are not UTF-8 in a header, which aiohttp keeps as surrogate escapes).
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")
_INT_DIGITS = 32  # a longer integer is out of range anyway; never convert it (4,300 digits raise)


@dataclass(frozen=True)
class InputLimits:
    """The bounds :func:`check_json` applies (from settings, or the defaults)."""

    max_depth: int = MAX_JSON_DEPTH
    max_string_chars: int = MAX_STRING_CHARS


DEFAULT_LIMITS = InputLimits()


class _Unrepresentable:
    """A JSON number the walk refuses (kept as text so the parser never converts it)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _Unrepresentable:
    return _Unrepresentable(text) if len(text) > _INT_DIGITS else int(text)


def _parse_constant(text: str) -> _Unrepresentable:
    return _Unrepresentable(text)  # NaN, Infinity, -Infinity: not JSON at all


def text_problem(value: str, max_chars: int | None = None) -> str | None:
    """Why a string may not be taken in, or ``None`` when it may."""
    if max_chars is not None and len(value) > max_chars:
        return f"is longer than {max_chars} characters"
    bad = _BAD_CHAR.search(value)
    if bad is None:
        return None
    char = bad.group()
    if char == "\x00":
        return "contains a NUL character"
    if "\ud800" <= char <= "\udfff":
        return "contains a lone UTF-16 surrogate (not text)"
    return f"contains the control character U+{ord(char):04X}"


def clean_text(text: str, max_chars: int) -> str:
    """Text from outside (a webhook consumer's answer, a peer's error) as it may be kept:
    C0 controls other than tab, CR and LF and lone surrogates become U+FFFD, and it is cut
    to ``max_chars`` (an ellipsis marks the cut)."""
    if len(text) > max_chars:
        text = text[: max(0, max_chars - 1)] + "…"
    return _BAD_CHAR.sub("\ufffd", text)


def _field(where: str, key: str | int) -> str:
    if isinstance(key, str):
        # A hostile key must not smuggle what it is refused for into the error.
        key = key.encode("unicode_escape").decode("ascii") if _BAD_CHAR.search(key) else key
        key = key if len(key) <= 64 else key[:64] + "…"
    return f"{where}.{key}" if where else str(key)


def check_json(doc: Any, where: str = "", limits: InputLimits = DEFAULT_LIMITS) -> None:
    """Refuse what must never be taken in from a parsed JSON document.

    400 (:class:`BadRequest`) when it nests deeper than ``limits.max_depth``; 422
    (:class:`ValidationFailed`) naming each bad value (``operations.3.name``; object
    keys included) for NUL, other C0 controls except tab/CR/LF, lone surrogates,
    strings longer than ``limits.max_string_chars``, integers outside signed 64 bits
    and non-finite numbers. ``where`` prefixes the field names (``query``, ``message``).
    """
    if _clean(doc, limits):
        return
    problems: list[dict[str, Any]] = []
    _walk(doc, where, 1, limits, problems)
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationFailed(f"invalid {where or 'request body'}: {summary}", details={"fields": problems})


def _clean(doc: Any, limits: InputLimits) -> bool:
    """Whether :func:`_walk` would find nothing to refuse in ``doc``: one tight pass, level
    by level, that only says yes or no (no field names are built; strings are checked
    together at the end). The walk that names each problem runs only on a no. A
    5,000-operation batch costs this ~3 ms; the walk ~50 ms."""
    strings: list[str] = []
    level: list[Any] = [doc]
    depth = 0
    while level:
        depth += 1  # of the containers in ``level``
        deeper: list[Any] = []
        for value in level:
            kind = type(value)
            if kind is dict:
                if depth > limits.max_depth:
                    return False
                strings.extend(value)  # keys (str: JSON has no other)
                items = value.values()
            elif kind is list:
                if depth > limits.max_depth:
                    return False
                items = value
            elif kind is str:  # the document itself
                strings.append(value)
                continue
            else:
                items = (value,)
            for item in items:
                kind = type(item)
                if kind is str:
                    strings.append(item)
                elif kind is dict or kind is list:
                    deeper.append(item)
                elif kind is int:
                    if not INT64_MIN <= item <= INT64_MAX:
                        return False
                elif kind is float:
                    if not math.isfinite(item):
                        return False
                elif kind is not bool and item is not None:
                    return False  # anything else (_Unrepresentable): the walk decides
        level = deeper
    if not strings:
        return True
    if max(map(len, strings)) > limits.max_string_chars:
        return False
    # Joining makes no character of the pattern appear or vanish (LF is text).
    return _BAD_CHAR.search("\n".join(strings)) is None


def _walk(value: Any, path: str, depth: int, limits: InputLimits, problems: list[dict[str, Any]]) -> None:
    """Depth-first over a parsed document; it never recurses past ``limits.max_depth``."""
    if len(problems) >= MAX_FIELD_ERRORS:
        return
    if isinstance(value, str):
        problem = text_problem(value, limits.max_string_chars)
        if problem is not None:
            problems.append(_problem(path, problem, "string_unsafe"))
    elif isinstance(value, dict | list):
        if depth > limits.max_depth:
            raise BadRequest(
                f"JSON is nested deeper than {limits.max_depth} levels",
                details={"max_depth": limits.max_depth, "field": path or "(body)"},
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            here = _field(path, key)
            if isinstance(key, str):
                problem = text_problem(key, limits.max_string_chars)
                if problem is not None:
                    problems.append({"field": here, "message": f"key {problem}", "type": "key_unsafe"})
            _walk(item, here, depth + 1, limits, problems)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            problems.append(_problem(path, "integer is outside signed 64 bits", "int_range"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            problems.append(_problem(path, "number is not finite", "float_range"))
    elif isinstance(value, _Unrepresentable):
        problems.append(_problem(path, "number is outside signed 64 bits or not finite", "number_range"))


def _problem(path: str, message: str, kind: str) -> dict[str, Any]:
    return {"field": path or "(body)", "message": message, "type": kind}


def parse_json(raw: bytes | str, where: str = "", limits: InputLimits = DEFAULT_LIMITS) -> Any:
    """Parse JSON from outside and :func:`check_json` it: never a ``RecursionError``.

    400 for what is not JSON or nests too deep, 422 naming each unsafe value."""
    try:
        doc = json.loads(raw, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise BadRequest(
            f"JSON is nested deeper than {limits.max_depth} levels", details={"max_depth": limits.max_depth}
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{where or 'request body'} is not valid JSON: {exc}") from None
    check_json(doc, where, limits)
    return doc


def input_limits(request: web.Request) -> InputLimits:
    """This app's limits (the defaults for an app built without settings)."""
    settings = request.app.get(SETTINGS_KEY)
    if settings is None:
        return DEFAULT_LIMITS
    return InputLimits(settings.max_json_depth, settings.max_string_chars)


def check_request_line(request: web.Request) -> None:
    """Path parameters and header values (400) and query parameters (422), before any
    route, policy or audit record sees them."""
    for name, value in request.match_info.items():
        problem = text_problem(value)
        if problem is not None:
            raise BadRequest(
                f"path parameter {name} {problem}",
                details={"fields": [{"field": f"path.{name}", "message": problem, "type": "string_unsafe"}]},
            )
    problem = text_problem(request.path)
    if problem is not None:  # an unmatched path is quoted in its 404 and in the access log
        raise BadRequest(
            f"the path {problem}",
            details={"fields": [{"field": "path", "message": problem, "type": "string_unsafe"}]},
        )
    for name, value in request.headers.items():
        problem = text_problem(value)
        if problem is not None:
            field_name = f"header.{name.lower()}"
            raise BadRequest(
                f"header {name} {problem}",
                details={"fields": [{"field": field_name, "message": problem, "type": "string_unsafe"}]},
            )
    _check_query(request)


def _check_query(request: web.Request) -> None:
    limits = input_limits(request)
    problems: list[dict[str, Any]] = []
    for key, value in request.query.items():
        here = _field("query", key)
        for text, what in ((key, "name"), (value, "value")):
            problem = text_problem(text, limits.max_string_chars)
            if problem is not None and len(problems) < MAX_FIELD_ERRORS:
                problems.append({"field": here, "message": f"{what} {problem}", "type": "string_unsafe"})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise ValidationFailed(f"invalid query parameters: {summary}", details={"fields": problems})


# The parsed, checked body of a request, once read (the middleware reads it for every
# route that declares a body, before the policy and audit layers run).
JSON_BODY = web.RequestKey("json_body", tuple[bytes, Any])


async def json_body(request: web.Request) -> tuple[bytes, Any]:
    """The raw body and its parsed, checked JSON: 415/413/400/422 for what is refused."""
    cached: tuple[bytes, Any] | None = request.get(JSON_BODY)
    if cached is not None:
        return cached
    ctype = request.content_type
    if (
        request.can_read_body
        and ctype not in ("application/json", "application/octet-stream", "")
        and not ctype.endswith("+json")
    ):
        raise UnsupportedMediaType(f"send the body as application/json, not {ctype}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"request body is larger than the limit of {request.client_max_size} bytes",
            details={"limit_bytes": request.client_max_size},
        ) from exc
    if not raw:  # no body: as {} (whitespace alone is not JSON, and is a 400)
        raw = b"{}"
    doc = parse_json(raw, "", input_limits(request))
    request[JSON_BODY] = (raw, doc)
    return raw, doc


async def read_body(request: web.Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 415/400 for what is not JSON, 422 naming bad fields."""
    raw, doc = await json_body(request)
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        # Strict JSON validation: "5" is not an integer and true is not 1.
        return model.model_validate_json(raw, strict=True, context=request.app)
    except ValidationError as exc:
        raise validation_failed(exc, "request body") from exc


def read_query(request: web.Request, model: type[M]) -> M:
    """Validate query parameters against a model (422 naming each bad one)."""
    _check_query(request)
    values: dict[str, Any] = {}
    for key in request.query:
        got = request.query.getall(key)
        values[key] = got[0] if len(got) == 1 else got
    known = set(model.model_fields)
    values = {k: v for k, v in values.items() if k in known or k not in _IGNORED_QUERY}
    try:
        return model.model_validate(values, context=request.app)
    except ValidationError as exc:
        raise validation_failed(exc, "query parameters") from exc


_IGNORED_QUERY = {"token", "_"}
