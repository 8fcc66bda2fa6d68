"""What an extension says about itself: ``extension.json``, validated against a published
JSON Schema (:data:`MANIFEST_SCHEMA`, committed as ``schema/extension.json`` and served at
``GET /ext/schema/extension.json``), and the capabilities it may ask for.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

# The version of the extension API this release offers (``requires_api`` is checked against it).
API_VERSION = 1
# Ids the framework's own routes use under /ext/.
RESERVED_IDS = frozenset({"status", "schema"})
SCHEMA_FILE = Path(__file__).resolve().parent / "schema" / "extension.json"
SCHEMA_ID = "https://provisioning.dev/schemas/extension.json"
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d{1,6})\s*$")
_FENCE_CLAUSE = r"\s*(>=|<=|==|!=|>|<)\s*\d{1,6}\s*"


class Capability(StrEnum):
    """What an extension may be given; each is one handle of its context."""

    ROUTES = "ROUTES"  # HTTP (and WebSocket) routes under /ext/{id}/
    TOOLS = "TOOLS"  # tools in the shared registry, named ext.{id}.*
    EVENTS_PUB = "EVENTS_PUB"  # publish to named event streams
    EVENTS_SUB = "EVENTS_SUB"  # subscribe to named event streams
    BACKGROUND_TASKS = "BACKGROUND_TASKS"  # long-running tasks, stopped with the extension
    STATIC = "STATIC"  # a directory of files served under /ext/{id}/static/
    PROVIDERS = "PROVIDERS"  # orchestrator providers that batches can name


class ManifestError(ValueError):
    """A manifest that cannot be used, with every reason."""


def _version_fence(value: str) -> str:
    for clause in value.split(","):
        if not _CLAUSE.match(clause):
            raise ValueError(f"expected clauses like '>=1,<2' separated by commas, not {clause.strip()!r}")
    return value


def _not_reserved(value: str) -> str:
    if value in RESERVED_IDS:
        raise ValueError(f"{value!r} is reserved by the framework's own routes")
    return value


class Manifest(BaseModel):
    """``extension.json``."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Provisioning extension manifest")

    id: Annotated[
        str,
        Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="unique; the URL prefix /ext/{id}/"),
        AfterValidator(_not_reserved),
    ]
    name: str = Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x1f\x7f]+$")
    version: str = Field(pattern=r"^\d{1,6}(\.\d{1,6}){0,3}([-+][0-9A-Za-z.-]{1,40})?$")
    description: str = Field("", max_length=500, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")
    module: str = Field(
        "extension",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,60}(\.[A-Za-z_][A-Za-z0-9_]{0,60}){0,5}$",
        description="the Python module exposing get_extension(), beside extension.json",
    )
    enabled: bool = True
    grants: list[Capability] = Field(
        default_factory=list,
        max_length=len(Capability),
        description="capabilities requested (granted as such to built-ins; to others by settings)",
    )
    eager: bool = Field(False, description="load at start; otherwise on the first request")
    requires_api: Annotated[str, AfterValidator(_version_fence)] = Field(
        f">={API_VERSION},<{API_VERSION + 1}",
        max_length=40,
        pattern=rf"^{_FENCE_CLAUSE}(,{_FENCE_CLAUSE})*$",
        description="the extension API versions it works with, e.g. '>=1,<2'",
    )

    @property
    def requested(self) -> frozenset[Capability]:
        return frozenset(self.grants)

    def api_problem(self) -> str | None:
        """Why this release's extension API does not satisfy ``requires_api``, if it does not."""
        for clause in self.requires_api.split(","):
            match = _CLAUSE.match(clause)
            assert match is not None  # checked by the model
            op, number = match.group(1), int(match.group(2))
            ok = {
                ">=": API_VERSION >= number,
                "<=": API_VERSION <= number,
                "==": API_VERSION == number,
                "!=": API_VERSION != number,
                ">": API_VERSION > number,
                "<": API_VERSION < number,
            }[op]
            if not ok:
                return f"requires extension API {self.requires_api!r}; this release offers API {API_VERSION}"
        return None


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema of ``extension.json``, generated from :class:`Manifest`."""
    schema = Manifest.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def parse_manifest(data: Any, where: str) -> Manifest:
    """A manifest from parsed JSON; :class:`ManifestError` naming each bad field."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: the manifest must be a JSON object")
    try:  # strict, as JSON: "yes" is not a boolean, 1 is not a string
        return Manifest.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'manifest'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ManifestError(f"{where}: " + "; ".join(problems)) from None


def read_manifest(path: Path) -> Manifest:
    """``extension.json`` at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from None
    return parse_manifest(data, str(path))
