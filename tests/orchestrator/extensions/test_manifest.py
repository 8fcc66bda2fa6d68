"""The manifest: its published JSON Schema (committed, served, generated from the model),
and what it refuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.extensions.discovery import BUILTIN_DIR
from orchestrator.extensions.manifest import SCHEMA_FILE, ManifestError, manifest_schema, parse_manifest
from tests.helpers.extensions import orchestrator

GOOD = {"id": "hello", "name": "Hello", "version": "1.0.0"}


def test_the_committed_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == manifest_schema()


def test_builtin_manifests_validate_against_the_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    manifests = sorted(BUILTIN_DIR.glob("*/extension.json"))
    assert [p.parent.name for p in manifests] == ["events_demo", "mcp_http", "observability", "webui"]
    for path in manifests:
        jsonschema.validate(json.loads(path.read_text()), schema)
        assert parse_manifest(json.loads(path.read_text()), str(path)).id == path.parent.name


async def test_the_schema_is_served(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await orchestrator(aiohttp_client, tmp_path, [])
    resp = await client.get("/ext/schema/extension.json")
    assert resp.status == 200 and await resp.json() == manifest_schema()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "Hello"}, "id"),
        ({"id": "status"}, "id"),  # the framework's own route
        ({"id": "a" * 41}, "id"),
        ({"name": ""}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"version": "one"}, "version"),
        ({"module": "../escape"}, "module"),
        ({"grants": ["ROOT"]}, "grants.0"),
        ({"eager": "yes"}, "eager"),
        ({"requires_api": ">=one"}, "requires_api"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_manifests_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ManifestError) as refused:
        parse_manifest({**GOOD, **change}, "extension.json")
    assert f"extension.json: {field}" in str(refused.value)
    jsonschema_refuses = {**GOOD, **change}
    if field not in ("id",) or change["id"] != "status":  # the reserved ids are the model's own rule
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(jsonschema_refuses, manifest_schema())


def test_the_api_fence() -> None:
    assert parse_manifest({**GOOD, "requires_api": ">=1,<2"}, "m").api_problem() is None
    problem = parse_manifest({**GOOD, "requires_api": ">=2"}, "m").api_problem()
    assert problem == "requires extension API '>=2'; this release offers API 1"
    assert parse_manifest({**GOOD, "requires_api": "<1"}, "m").api_problem() is not None
