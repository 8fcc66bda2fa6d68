"""schemathesis against both services' ``/openapi.json``: zero 5xx, zero mismatches.

Both services run on real ports on one ``mem://`` store (tests/contract/live.py)
with authentication on; the admin's token comes from the real login journey
(password, MFA enrolment, backup code). Phases, in this order on one pair of
servers:

1. ``admin``: every operation with the admin's token, except the destructive
   ones and opening a live stream (an open stream never ends; its answer is
   checked by ``test_live_streams_answer_as_documented``);
2. ``anonymous``: every operation, streams included, without a token;
3. ``destructive``: logout, MFA disable/reset, password change, user and policy
   changes and deletion (the admin's own id among the targets), last, since they
   can end the admin's session or rights.

Checks: not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, response_headers_conformance and
negative_data_rejection (the document is not looser than the server), on
positive and negative data. ``positive_data_acceptance`` is not used: rules no
schema can say (unique names, existing ids, the common-passwords list) refuse
valid-looking data by design.

The default run uses a few examples per operation and mode; ``-m slow`` runs
many more: ``python3 -m pytest -m slow tests/contract``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.contract.fuzzing import Report, fuzz
from tests.contract.live import LiveServices, live_services, login_admin

FAST_EXAMPLES = 6
SLOW_EXAMPLES = 100
STREAMS = ("/events", "/ws", "/ext/events_demo/subscribe")  # open streams never end
DESTRUCTIVE = {
    ("POST", "/auth/logout"),
    ("POST", "/auth/mfa/disable"),
    ("POST", "/users/{id}/mfa/reset"),
    ("POST", "/users/me/password"),
    ("PUT", "/users/{id}"),
    ("DELETE", "/users/{id}"),
    ("POST", "/policies"),
    ("PUT", "/policies/{id}"),
    ("DELETE", "/policies/{id}"),
}


@dataclass
class Target:
    services: LiveServices
    token: str
    known: dict[str, dict[str, list[str]]]  # service → path prefix → real ids
    nul_refused: bool


def _post(url: str, token: str, body: dict[str, object]) -> dict[str, object]:
    resp = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code in (200, 201, 202), resp.text
    data: dict[str, object] = resp.json()
    return data


def _seed(services: LiveServices, token: str) -> dict[str, dict[str, list[str]]]:
    """Real objects for the fuzzer to find: a batch and its task, a checkpoint, a user,
    a policy, a webhook with a delivery."""
    orch, cc = services.orch_url, services.cc_url
    batch = _post(
        f"{orch}/batch/execute",
        token,
        {"name": "seed", "operations": [{"id": "seed", "type": "server_batch", "provider": "noop"}]},
    )["data"]
    assert isinstance(batch, dict)
    batch_id, task_id = str(batch["batch_id"]), str(batch["operations"][0]["task_id"])
    checkpoint = str(_post(f"{orch}/rollback/checkpoints", token, {"name": "seed"})["data"])
    user = _post(
        f"{cc}/users",
        token,
        {"username": "fuzz-victim", "password": "victim-password-1", "roles": ["viewer"]},
    )["data"]
    assert isinstance(user, dict)
    policy = _post(
        f"{cc}/policies",
        token,
        {"name": "seed", "rules": [{"effect": "Allow", "resource": "tasks", "action": "read"}]},
    )["data"]
    assert isinstance(policy, dict)
    webhook = _post(f"{cc}/webhooks", token, {"url": "https://hooks.example.com/fuzz", "events": ["task.*"]})[
        "data"
    ]
    assert isinstance(webhook, dict)
    delivery = _post(f"{cc}/webhooks/{webhook['id']}/test", token, {})["data"]
    assert isinstance(delivery, dict)
    me = requests.get(f"{cc}/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    admin_id = str(me.json()["data"]["id"])
    return {
        "orch": {
            "/batch/operations": [batch_id],
            "/state/workflows": [batch_id],
            "/tasks": [task_id],
            "/rollback/checkpoints": [checkpoint],
            "/rollback/restore": [checkpoint],
        },
        "cc": {
            "/users": [str(user["id"])],
            "/policies": [str(policy["id"])],
            "/webhooks": [str(webhook["id"])],
            f"/webhooks/{webhook['id']}/deliveries": [str(delivery["id"])],
        },
        "cc-destructive": {"/users": [str(user["id"]), admin_id], "/policies": [str(policy["id"])]},
    }


def _nul_is_refused(services: LiveServices, token: str) -> bool:
    """Whether the services refuse NUL centrally (issue 8, item 2: another change set).
    Asked with a query parameter, which stores nothing. Until they do, the embedded
    store cannot return a NUL it took, so NUL strings are left out of the fuzzing."""
    resp = requests.get(
        f"{services.orch_url}/tasks",
        params={"workflow_id": "a\x00b"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return resp.status_code in (400, 422)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with live_services(data_dir) as services:
        token = login_admin(services.cc_url)
        known = _seed(services, token)
        yield Target(services, token, known, _nul_is_refused(services, token))


def _main(method: str, path: str) -> bool:
    return (method, path) not in DESTRUCTIVE and not path.startswith(STREAMS)


def _anyone(method: str, path: str) -> bool:
    return True


def _destructive(method: str, path: str) -> bool:
    return (method, path) in DESTRUCTIVE


def _assert_clean(report: Report) -> None:
    assert report.requests > 0
    assert not report.failures, report.summary()
    assert not any(status >= 500 for status in report.statuses), report.summary()


def _phase(target: Target, phase: str, examples: int) -> Report:
    report = Report()
    services = target.services
    allow_nul = target.nul_refused
    for service, url in (("orch", services.orch_url), ("cc", services.cc_url)):
        if phase == "admin":
            fuzz(
                url,
                token=target.token,
                examples=examples,
                include=_main,
                known_ids=target.known[service],
                report=report,
                allow_nul=allow_nul,
            )
        elif phase == "anonymous":
            fuzz(url, token=None, examples=examples, include=_anyone, report=report, allow_nul=allow_nul)
        elif service == "cc":
            fuzz(
                url,
                token=target.token,
                examples=examples,
                include=_destructive,
                known_ids=target.known["cc-destructive"],
                report=report,
                allow_nul=allow_nul,
            )
    return report


@pytest.mark.timeout(300)
def test_fuzz_with_the_admin_token(target: Target) -> None:
    _assert_clean(_phase(target, "admin", FAST_EXAMPLES))


@pytest.mark.timeout(300)
def test_live_streams_answer_as_documented(target: Target) -> None:
    """The success answers the fuzzer cannot wait for: SSE opens as text/event-stream,
    the WebSocket upgrade is a 101."""
    for url in (target.services.orch_url, target.services.cc_url):
        doc = requests.get(f"{url}/openapi.json", timeout=30).json()
        sse = doc["paths"]["/events"]["get"]["responses"]["200"]["content"]
        with requests.get(
            f"{url}/events", headers={"Authorization": f"Bearer {target.token}"}, stream=True, timeout=30
        ) as resp:
            assert resp.status_code == 200
            assert resp.headers["Content-Type"].split(";")[0] in sse
        assert "101" in doc["paths"]["/ws"]["get"]["responses"]
        upgrade = requests.get(
            f"{url}/ws",
            headers={
                "Authorization": f"Bearer {target.token}",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            stream=True,
            timeout=30,
        )
        assert upgrade.status_code == 101
        upgrade.close()


@pytest.mark.timeout(300)
def test_fuzz_without_a_token(target: Target) -> None:
    _assert_clean(_phase(target, "anonymous", max(2, FAST_EXAMPLES // 2)))


@pytest.mark.timeout(300)
def test_fuzz_destructive_routes_last(target: Target) -> None:
    _assert_clean(_phase(target, "destructive", FAST_EXAMPLES))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_slow_fuzz_every_phase(tmp_path: Path) -> None:
    with live_services(tmp_path) as services:
        token = login_admin(services.cc_url)
        target = Target(services, token, _seed(services, token), _nul_is_refused(services, token))
        for phase in ("admin", "anonymous", "destructive"):
            _assert_clean(_phase(target, phase, SLOW_EXAMPLES))
