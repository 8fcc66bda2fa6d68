"""Both services' ``/openapi.json``, as served, are valid OpenAPI 3.1 documents."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_spec_validator import validate

from control_center.app import build_api as control_center_api
from orchestrator.app import build_api as orchestrator_api
from shared.web.openapi import error_statuses, openapi_document
from shared.web.routing import Api
from tests.helpers.services import Services


async def test_both_served_documents_validate(services: Services) -> None:
    for client in (services.orch, services.cc):
        resp = await client.get("/openapi.json")
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        validate(doc)  # raises, naming the place, on any error
        assert doc["openapi"] == "3.1.0"


@pytest.mark.parametrize("build", [orchestrator_api, control_center_api])
def test_every_route_is_in_the_document_with_its_statuses(build: Any) -> None:
    api: Api = build()
    doc = openapi_document(api, "t")
    validate(doc)
    for spec in api.specs:
        op = doc["paths"][spec.path][spec.method.lower()]
        documented = set(op["responses"])
        assert str(101 if spec.upgrade else spec.success_status) in documented
        assert {str(s) for s in error_statuses(spec)} <= documented
        assert len({o["operationId"] for p in doc["paths"].values() for o in p.values()}) == sum(
            len(p) for p in doc["paths"].values()
        )


def test_a_route_must_say_what_it_answers() -> None:
    api = Api()
    with pytest.raises(ValueError, match="declare what the route answers"):

        @api.route("GET", "/x", public=True)
        async def handler(request: Any) -> Any:
            raise AssertionError


def test_components_hold_every_reference() -> None:
    for build in (orchestrator_api, control_center_api):
        doc = openapi_document(build(), "t")
        text = str(doc)
        names = set(doc["components"]["schemas"])
        import re

        for ref in re.findall(r"#/components/schemas/([A-Za-z0-9_.-]+)", text):
            assert ref in names, ref
        assert "#/$defs/" not in text
