"""The shared API conventions seen from outside, on the orchestrator app: the envelope,
X-Request-ID, Accept versioning, OpenAPI, /metrics and the public /health."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.app import create_app
from shared.errors import Forbidden, Unauthorized
from shared.security.auth import Principal
from shared.settings import load_settings
from tests.helpers.batches import batch, op, submit, wait_batch

V1 = "application/vnd.provisioning.v1+json"
V2 = "application/vnd.provisioning.v2+json"


async def expect_envelope_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    doc = await resp.json()
    assert doc["success"] is False
    assert isinstance(doc["error"], str) and doc["error"]
    assert "data" not in doc
    if code is not None:
        assert doc["code"] == code
    return doc


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: Any) -> tuple[str, dict[Any, float]]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    return text, samples(text)


# -- envelope ---------------------------------------------------------------------------


async def test_success_envelope(orch):
    resp = await orch.get("/health")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {"success": True, "data": "Orchestrator is healthy"}


async def test_unknown_path_is_404_envelope(orch):
    doc = await expect_envelope_error(await orch.get("/no/such/thing"), 404, "not_found")
    assert "/no/such/thing" in doc["error"]


async def test_wrong_method_is_405_envelope(orch):
    doc = await expect_envelope_error(await orch.post("/health"), 405)
    assert "POST" in doc["error"] and "/health" in doc["error"]
    doc = await expect_envelope_error(await orch.delete("/batch/execute"), 405)
    assert "DELETE" in doc["error"]
    doc = await expect_envelope_error(await orch.put("/tasks"), 405)


async def test_resource_404_envelope(orch):
    await expect_envelope_error(await orch.get(f"/tasks/{uuid.uuid4()}"), 404, "not_found")


async def test_validation_errors_name_fields(orch):
    doc = await expect_envelope_error(
        await orch.post("/batch/execute", json={"name": "x", "operations": [{"id": "a"}]}),
        422,
        "validation_failed",
    )
    fields = doc["details"]["fields"]
    assert all({"field", "message"} <= set(f) for f in fields)
    assert "operations.0.type" in {f["field"] for f in fields}


async def test_malformed_json_is_400_envelope(orch):
    resp = await orch.post(
        "/rollback/checkpoints", data=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    await expect_envelope_error(resp, 400, "bad_request")


# -- X-Request-ID ------------------------------------------------------------------------


async def test_request_id_is_echoed(orch):
    resp = await orch.get("/health", headers={"X-Request-ID": "trace-abc_123.4"})
    assert resp.headers["X-Request-ID"] == "trace-abc_123.4"


async def test_request_id_is_echoed_on_errors(orch):
    resp = await orch.get("/tasks/nope", headers={"X-Request-ID": "err-42"})
    assert resp.status == 404
    assert resp.headers["X-Request-ID"] == "err-42"
    resp = await orch.get("/missing", headers={"X-Request-ID": "err-43"})
    assert resp.status == 404
    assert resp.headers["X-Request-ID"] == "err-43"
    resp = await orch.post("/batch/execute", json={}, headers={"X-Request-ID": "err-44"})
    assert resp.status == 422
    assert resp.headers["X-Request-ID"] == "err-44"


async def test_request_id_is_generated_when_missing(orch):
    first = (await orch.get("/health")).headers["X-Request-ID"]
    second = (await orch.get("/health")).headers["X-Request-ID"]
    uuid.UUID(first)
    uuid.UUID(second)
    assert first != second


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "new\tline"])
async def test_unsafe_request_id_is_replaced(orch, bad):
    resp = await orch.get("/health", headers={"X-Request-ID": bad})
    got = resp.headers["X-Request-ID"]
    assert got != bad
    uuid.UUID(got)


# -- versioning --------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [V1, "application/json", "*/*", f"{V1}, application/json"])
async def test_v1_and_plain_json_are_accepted(orch, accept):
    resp = await orch.get("/tasks", headers={"Accept": accept})
    assert resp.status == 200
    assert (await resp.json())["success"] is True


async def test_other_versions_are_406(orch):
    doc = await expect_envelope_error(await orch.get("/tasks", headers={"Accept": V2}), 406, "not_acceptable")
    assert "v2" in doc["error"] and "v1" in doc["error"]
    assert doc["details"]["supported"] == ["v1"]


async def test_406_happens_before_anything_is_done(orch):
    resp = await orch.post("/batch/execute", json=batch(op("a")), headers={"Accept": V2})
    await expect_envelope_error(resp, 406)
    listing = await orch.get("/batch/operations")
    assert (await listing.json())["data"] == []


# -- OpenAPI ------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for v in node.values():
            found.extend(_refs(v))
        return found
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def openapi(client: Any) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_openapi_is_3_1(orch):
    doc = await openapi(orch)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"]
    assert doc["info"]["version"]


async def test_openapi_lists_every_route(orch):
    doc = await openapi(orch)
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in orch.app.router.routes()
        if r.method not in ("HEAD", "OPTIONS", "*") and r.resource is not None
    }
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    seed = {
        ("get", "/health"),
        ("get", "/tasks"),
        ("get", "/tasks/{id}"),
        ("post", "/workflows/servers/create"),
        ("post", "/workflows/taskserv/create"),
        ("post", "/workflows/cluster/create"),
        ("post", "/batch/execute"),
        ("get", "/batch/operations"),
        ("get", "/batch/operations/{id}"),
        ("post", "/batch/operations/{id}/cancel"),
        ("get", "/state/workflows/{id}/progress"),
        ("get", "/state/workflows/{id}/snapshots"),
        ("get", "/state/system/metrics"),
        ("get", "/state/system/health"),
        ("get", "/state/statistics"),
        ("post", "/rollback/checkpoints"),
        ("get", "/rollback/checkpoints"),
        ("get", "/rollback/checkpoints/{id}"),
        ("post", "/rollback/execute"),
        ("post", "/rollback/restore/{id}"),
        ("get", "/rollback/statistics"),
        ("get", "/metrics"),
    }
    assert seed <= documented


async def test_openapi_request_schemas(orch):
    doc = await openapi(orch)
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    bodies = {
        ("post", "/batch/execute"): {"name", "operations", "parallel_limit", "storage_backend"},
        ("post", "/workflows/servers/create"): {"infra", "settings", "check_mode", "wait"},
        ("post", "/workflows/taskserv/create"): {"taskserv", "operation", "infra"},
        ("post", "/workflows/cluster/create"): {"cluster_type", "operation", "infra"},
        ("post", "/rollback/checkpoints"): {"name", "description"},
        ("post", "/rollback/execute"): {"checkpoint_id", "operation_ids"},
    }
    for (method, path), props in bodies.items():
        op_doc = doc["paths"][path][method]
        ref = op_doc["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert props <= set(schema["properties"]), (path, set(schema["properties"]))
    batch_schema = schemas[
        doc["paths"]["/batch/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "$ref"
        ].rsplit("/", 1)[1]
    ]
    assert {"name", "operations"} <= set(batch_schema["required"])
    # GET routes have no body; list routes document their query parameters
    assert "requestBody" not in doc["paths"]["/tasks"]["get"]
    params = {p["name"]: p for p in doc["paths"]["/tasks"]["get"]["parameters"]}
    assert {"status", "limit", "offset"} <= set(params)
    assert all(p["in"] == "query" for p in params.values())
    assert params["limit"]["schema"]["maximum"] == 1000
    path_params = doc["paths"]["/tasks/{id}"]["get"]["parameters"]
    assert path_params == [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]


async def test_openapi_marks_public_routes(orch):
    doc = await openapi(orch)
    for path in ("/health", "/metrics", "/openapi.json"):
        assert doc["paths"][path]["get"]["security"] == []
    assert "security" not in doc["paths"]["/tasks"]["get"]
    assert doc["security"] == [{"bearer": []}]
    assert "Error" in doc["components"]["schemas"]


async def test_openapi_is_json_serialisable_and_stable(orch):
    first = await openapi(orch)
    second = await openapi(orch)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


# -- /metrics ----------------------------------------------------------------------------


async def test_metrics_count_requests_by_route_template(orch):
    _, before = await scrape(orch)
    for _ in range(3):
        assert (await orch.get("/tasks/some-unknown-id")).status == 404
    assert (await orch.get("/not/a/route")).status == 404
    text, after = await scrape(orch)
    assert "# TYPE http_requests_total counter" in text
    labels = {"service": "orchestrator", "route": "/tasks/{id}", "method": "GET", "status": "404"}
    assert (
        sample(after, "http_requests_total", **labels) - sample(before, "http_requests_total", **labels) == 3
    )
    assert "some-unknown-id" not in text  # ids never become label values
    unmatched = {"service": "orchestrator", "route": "unmatched", "method": "GET", "status": "404"}
    assert (
        sample(after, "http_requests_total", **unmatched) - sample(before, "http_requests_total", **unmatched)
        == 1
    )
    latency = {"service": "orchestrator", "route": "/tasks/{id}", "method": "GET"}
    assert (
        sample(after, "http_request_duration_seconds_count", **latency)
        - sample(before, "http_request_duration_seconds_count", **latency)
        == 3
    )


async def test_metrics_expose_task_counts_and_durations_after_a_batch(orch):
    _, before = await scrape(orch)
    data = await submit(
        orch,
        batch(
            op("a"),
            op("b", ["a"]),
            op("c"),
            op("bad", simulate={"fail_always": True}, retry={"max_attempts": 1}, on_failure="continue"),
        ),
    )
    done = await wait_batch(orch, data["batch_id"])
    assert done["status"] == "Failed"
    text, after = await scrape(orch)
    assert "# TYPE orchestrator_tasks_total counter" in text
    assert "# TYPE orchestrator_task_duration_seconds histogram" in text
    assert (
        sample(after, "orchestrator_tasks_total", status="completed")
        - sample(before, "orchestrator_tasks_total", status="completed")
        == 3
    )
    assert (
        sample(after, "orchestrator_tasks_total", status="failed")
        - sample(before, "orchestrator_tasks_total", status="failed")
        == 1
    )
    assert (
        sample(after, "orchestrator_task_duration_seconds_count")
        - sample(before, "orchestrator_task_duration_seconds_count")
        == 4
    )
    assert sample(after, "orchestrator_task_duration_seconds_bucket", le="+Inf") == sample(
        after, "orchestrator_task_duration_seconds_count"
    )
    assert re.search(r'^orchestrator_task_duration_seconds_bucket\{le="10\.0"\} ', text, re.M)
    submitted = {"service": "orchestrator", "route": "/batch/execute", "method": "POST", "status": "201"}
    assert (
        sample(after, "http_requests_total", **submitted) - sample(before, "http_requests_total", **submitted)
        == 1
    )


# -- public routes and the auth hook --------------------------------------------------------


class DenyEveryone:
    """An auth backend that refuses every caller."""

    async def authenticate(self, request: web.Request) -> Principal:
        raise Unauthorized("no credentials")

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        raise Forbidden("never")


class ReadOnly:
    """Everyone is a viewer: reading is allowed, nothing else."""

    async def authenticate(self, request: web.Request) -> Principal:
        return Principal(user_id="u1", username="viewer", roles=("viewer",))

    async def authorize(self, principal: Principal, resource: str, action: str, request: web.Request) -> None:
        if action != "read":
            raise Forbidden(f"missing permission {resource}:{action}")


async def test_health_metrics_and_openapi_are_public(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings, auth=DenyEveryone()))
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"success": True, "data": "Orchestrator is healthy"}
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/openapi.json")).status == 200


async def test_other_routes_go_through_the_auth_hook(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings, auth=DenyEveryone()))
    for method, path in [
        ("GET", "/tasks"),
        ("GET", "/batch/operations"),
        ("POST", "/batch/execute"),
        ("GET", "/state/system/health"),
        ("GET", "/rollback/statistics"),
        ("POST", "/workflows/servers/create"),
    ]:
        resp = await client.request(method, path, json={})
        doc = await expect_envelope_error(resp, 401, "unauthorized")
        assert doc["error"] == "no credentials"


async def test_auth_hook_sees_resource_and_action(aiohttp_client, settings):
    client = await aiohttp_client(create_app(settings, auth=ReadOnly()))
    assert (await client.get("/tasks")).status == 200
    doc = await expect_envelope_error(
        await client.post("/batch/execute", json=batch(op("a"))), 403, "forbidden"
    )
    assert "batch:execute" in doc["error"]
    doc = await expect_envelope_error(await client.post("/rollback/checkpoints", json={"name": "x"}), 403)
    assert "rollback:create" in doc["error"]
    assert (await (await client.get("/batch/operations")).json())["data"] == []


async def test_oversized_body_is_413_envelope_with_request_id(aiohttp_client, tmp_path):
    settings = load_settings(db_url="mem://", data_dir=tmp_path, auth_enabled=False, max_body_bytes=1024)
    client = await aiohttp_client(create_app(settings))
    body = json.dumps({"name": "x" * 2000, "operations": []})
    resp = await client.post(
        "/batch/execute", data=body, headers={"Content-Type": "application/json", "X-Request-ID": "big-1"}
    )
    doc = await expect_envelope_error(resp, 413, "payload_too_large")
    assert "1024" in doc["error"]
    assert resp.headers["X-Request-ID"] == "big-1"
