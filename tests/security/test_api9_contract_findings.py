"""API9 (inventory management): the contract errors the fuzzers found, each replayed.

Each test sends the request that answered 500/503 or disagreed with the
OpenAPI document, and checks both sides: what the server answers now, and that
the document served at ``/openapi.json`` says the same.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers.services import Services, bearer

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")


async def document(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


def conforms(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> bool:
    """Whether ``instance`` is valid against a schema of the document (refs resolved)."""
    root = {**schema, "components": doc["components"]}
    return jsonschema.Draft202012Validator(root).is_valid(instance)


def body_schema(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path][method]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    return schema


def param_schema(doc: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    for param in doc["paths"][path][method]["parameters"]:
        if param["name"] == name:
            schema: dict[str, Any] = param["schema"]
            return schema
    raise AssertionError(f"{method} {path} documents no parameter {name}")


def fields_of(doc: dict[str, Any]) -> list[str]:
    return [f["field"] for f in doc.get("details", {}).get("fields", [])]


# -- 500 and 503 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "op_id"),
    [
        ("/workflows/taskserv/create", {"infra": "i", "taskserv": "my svc"}, "create_my_svc"),
        ("/workflows/cluster/create", {"infra": "i", "cluster_type": "k8s prod"}, "create_k8s_prod"),
    ],
)
async def test_workflow_names_with_spaces_derive_a_valid_operation_id(
    services: Services, path: str, body: dict[str, Any], op_id: str
) -> None:
    admin = bearer(await services.admin())
    resp = await services.orch.post(path, json={**body, "check_mode": True}, headers=admin)
    doc = await resp.json()
    assert resp.status == 200, doc  # was 500: the derived id failed its own pattern
    assert [op["id"] for op in doc["data"]["plan"]["operations"]] == [op_id]
    resp = await services.orch.post(path, json=body, headers=admin)
    assert resp.status == 201, await resp.text()


async def test_a_long_infra_name_is_not_a_server_error(services: Services) -> None:
    admin = bearer(await services.admin())
    resp = await services.orch.post(
        "/workflows/servers/create", json={"infra": "x" * 128, "check_mode": True}, headers=admin
    )
    assert resp.status == 200, await resp.text()


async def test_dependencies_that_are_not_ids_are_refused_by_the_model(services: Services) -> None:
    admin = bearer(await services.admin())
    batch = {"name": "b", "operations": [{"id": "a", "type": "server_batch", "dependencies": ["not an id"]}]}
    resp = await services.orch.post("/batch/execute", json=batch, headers=admin)
    doc = await resp.json()
    assert resp.status == 422, doc  # was 500 from inside the engine
    assert any(f.startswith("operations.0.dependencies.0") for f in fields_of(doc)), doc
    assert not conforms(
        await document(services.orch),
        body_schema(await document(services.orch), "post", "/batch/execute"),
        batch,
    )


async def test_offsets_are_bounded_on_every_list(services: Services) -> None:
    admin = bearer(await services.admin())
    for client in (services.orch, services.cc):
        doc = await document(client)
        lists = [
            p
            for p, ops in doc["paths"].items()
            if any(x["name"] == "offset" for x in ops.get("get", {}).get("parameters", []))
        ]
        assert lists
        for path in lists:
            if "{" in path:
                continue
            resp = await client.get(f"{path}?offset=4294967296", headers=admin)
            body = await resp.json()
            assert resp.status == 422, (path, body)  # was 503 from the store
            assert fields_of(body) == ["offset"], body
            assert param_schema(doc, "get", path, "offset")["maximum"] == 10_000_000
            resp = await client.get(f"{path}?offset=10000000", headers=admin)
            assert resp.status == 200, (path, await resp.text())


async def test_a_checkpoint_for_an_empty_workflow_id_is_a_422(services: Services) -> None:
    admin = bearer(await services.admin())
    body = {"name": "x", "workflow_id": ""}
    resp = await services.orch.post("/rollback/checkpoints", json=body, headers=admin)
    doc = await resp.json()
    assert resp.status == 422, doc  # was 503
    assert fields_of(doc) == ["workflow_id"]
    spec = await document(services.orch)
    assert not conforms(spec, body_schema(spec, "post", "/rollback/checkpoints"), body)


# -- what the document says about statuses and media types ------------------------------


async def test_check_mode_answers_are_documented(services: Services) -> None:
    spec = await document(services.orch)
    for path in ("/batch/execute", "/workflows/servers/create", "/workflows/taskserv/create"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "201"} <= set(responses), path


async def test_a_plain_get_of_the_websocket_is_a_documented_400(services: Services) -> None:
    for client in (services.orch, services.cc):
        resp = await client.get("/ws")
        assert resp.status == 400
        responses = (await document(client))["paths"]["/ws"]["get"]["responses"]
        assert "101" in responses and "400" in responses and "200" not in responses


async def test_405_names_the_allowed_methods(services: Services) -> None:
    resp = await services.orch.delete("/tasks")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET"
    resp = await services.cc.patch("/users")
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) == {"GET", "POST"}


async def test_every_response_has_a_schema_and_every_route_its_errors(services: Services) -> None:
    for client in (services.orch, services.cc):
        spec = await document(client)
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                responses = op["responses"]
                assert "default" not in responses, (method, path)
                for status, response in responses.items():
                    if status == "101":
                        continue
                    content = response["content"]
                    assert content and all("schema" in m for m in content.values()), (method, path, status)
                if op.get("security") != []:
                    assert {"401", "403"} <= set(responses), (method, path)
                if "requestBody" in op:
                    assert {"413", "415", "422"} <= set(responses), (method, path)


async def test_media_types_of_metrics_exports_and_streams_are_documented(services: Services) -> None:
    orch, cc = await document(services.orch), await document(services.cc)
    assert "text/plain" in orch["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in orch["paths"]["/events"]["get"]["responses"]["200"]["content"]
    exports = cc["paths"]["/audit/logs"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "application/x-ndjson", "text/csv"} <= set(exports)


# -- the document is as strict as the server -----------------------------------------------


async def test_an_empty_status_filter_is_refused_and_documented_as_an_enum(services: Services) -> None:
    admin = bearer(await services.admin())
    for path in ("/tasks", "/batch/operations"):
        resp = await services.orch.get(f"{path}?status=", headers=admin)
        assert resp.status == 422, path
        schema = param_schema(await document(services.orch), "get", path, "status")
        assert "" not in schema["enum"] and "Completed" in schema["enum"]


async def test_unknown_event_kinds_are_outside_the_documented_pattern(services: Services) -> None:
    spec = await document(services.orch)
    schema = param_schema(spec, "get", "/events", "events")
    assert conforms(spec, schema, "task,batch")
    assert not conforms(spec, schema, "task,gossip")
    assert not conforms(spec, schema, "security")  # a control-center kind


@pytest.mark.parametrize(
    ("service", "path", "body"),
    [
        ("cc", "/auth/refresh", {}),
        ("cc", "/auth/refresh", {"refresh_token": "a", "token": "b"}),
        ("orch", "/rollback/execute", {}),
        ("orch", "/rollback/execute", {"checkpoint_id": None, "operation_ids": ["a"]}),
        ("orch", "/batch/execute", {"name": "b", "operations": [{"id": "a", "type": "command"}]}),
        ("cc", "/webhooks", {"url": "ftp://example.com/hook", "events": ["*"]}),
        ("cc", "/webhooks", {"url": "https://example.com/hook", "events": ["task.unknown"]}),
        (
            "cc",
            "/policies",
            {"name": "p", "rules": [{"effect": "Allow", "resource": "Bad Resource", "action": "read"}]},
        ),
        ("cc", "/policies", {"name": "p", "rules": [{"effect": "Allow", "resource": "tasks", "action": []}]}),
        ("cc", "/users", {"username": "shorty", "password": "short", "roles": ["viewer"]}),
    ],
)
async def test_bodies_the_server_refuses_are_refused_by_the_document(
    services: Services, service: str, path: str, body: dict[str, Any]
) -> None:
    client = services.cc if service == "cc" else services.orch
    resp = await client.post(path, json=body, headers=bearer(await services.admin()))
    assert resp.status == 422, (path, body, await resp.text())
    spec = await document(client)
    assert not conforms(spec, body_schema(spec, "post", path), body), (path, body)


async def test_password_min_length_follows_the_setting(services: Services) -> None:
    spec = await document(services.cc)
    schemas = spec["components"]["schemas"]
    assert schemas["CreateUser"]["properties"]["password"]["minLength"] == 12
    assert schemas["PasswordChange"]["properties"]["new_password"]["minLength"] == 12


async def test_an_update_without_a_body_is_documented_as_optional(services: Services) -> None:
    admin = bearer(await services.admin())
    user_id, _ = await services.user("bodyless", "viewer", admin_token=await services.admin())
    resp = await services.cc.put(f"/users/{user_id}", headers=admin)
    assert resp.status == 200, await resp.text()
    spec = await document(services.cc)
    assert spec["paths"]["/users/{id}"]["put"]["requestBody"]["required"] is False
    assert spec["paths"]["/users"]["post"]["requestBody"]["required"] is True


@pytest.mark.parametrize("value", ["0.5", "1700000000", "2026-01-01", "2026-01-01T00:00:00"])
async def test_audit_dates_are_rfc3339_only(services: Services, value: str) -> None:
    admin = bearer(await services.admin())
    resp = await services.cc.get("/audit/logs", params={"to": value}, headers=admin)
    assert resp.status == 422, (value, await resp.text())  # "0.5" was read as a Unix time
    resp = await services.cc.get("/audit/logs", params={"to": "2026-01-01T00:00:00Z"}, headers=admin)
    assert resp.status == 200
    spec = await document(services.cc)
    schema = param_schema(spec, "get", "/audit/logs", "to")
    assert schema["format"] == "date-time" and not conforms(spec, schema, value)


async def test_a_webhook_host_dns_cannot_encode_is_a_422(services: Services) -> None:
    admin = bearer(await services.admin())
    body = {"url": "HTTpS://.\u0005\u0006L|", "events": ["*"]}
    resp = await services.cc.post("/webhooks", json=body, headers=admin)
    doc = await resp.json()
    assert resp.status == 422, doc  # was 500: UnicodeError from the IDNA codec
    assert fields_of(doc) == ["url"]


async def test_a_journal_position_beyond_64_bits_is_a_422(services: Services) -> None:
    admin = bearer(await services.admin())
    resp = await services.orch.post(
        "/batch/execute",
        json={"name": "b", "operations": [{"id": "a", "type": "server_batch", "provider": "noop"}]},
        headers=admin,
    )
    batch_id = (await resp.json())["data"]["batch_id"]
    path = f"/state/workflows/{batch_id}/state"
    resp = await services.orch.get(path, params={"seq": str(10**25)}, headers=admin)
    doc = await resp.json()
    assert resp.status == 422, doc  # was 503: the store cannot take the integer
    assert fields_of(doc) == ["seq"]
    resp = await services.orch.get(path, params={"seq": str(2**63 - 1)}, headers=admin)
    assert resp.status == 200, await resp.text()
    spec = await document(services.orch)
    assert param_schema(spec, "get", "/state/workflows/{id}/state", "seq")["maximum"] == 2**63 - 1


async def test_a_body_of_whitespace_is_not_json(services: Services) -> None:
    user_id, _ = await services.user("spacey", "viewer", admin_token=await services.admin())
    headers = {**bearer(await services.admin()), "Content-Type": "application/json"}
    resp = await services.cc.put(f"/users/{user_id}", data=b"\n", headers=headers)
    assert resp.status == 400, await resp.text()  # was 200: read as {}
    resp = await services.cc.put(f"/users/{user_id}", data=b"", headers=headers)
    assert resp.status == 200, await resp.text()  # no body at all: the documented optional body
