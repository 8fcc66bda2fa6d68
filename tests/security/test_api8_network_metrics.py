"""API8 (security misconfiguration): what /metrics shows, and to whom.

Both services used to expose the whole process registry, so a Prometheus
scraping both counted everything twice; and /metrics could not be closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.metrics import process_metrics_owner, set_process_metrics_owner
from tests.helpers.services import Services

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
Sample = tuple[str, tuple[tuple[str, str], ...]]


async def scrape(client: Any, headers: dict[str, str] | None = None) -> dict[Sample, float]:
    resp = await client.get("/metrics", headers=headers or {})
    assert resp.status == 200, await resp.text()
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def names(samples: dict[Sample, float]) -> set[str]:
    return {name for name, _ in samples}


@pytest.fixture
def owner() -> Iterator[None]:
    before = process_metrics_owner()
    yield
    set_process_metrics_owner(before)


async def test_each_service_exposes_only_its_own_samples(services: Services) -> None:
    admin = await services.admin()
    await services.orch.get("/tasks", headers={"Authorization": f"Bearer {admin}"})
    cc, orch = await scrape(services.cc), await scrape(services.orch)

    assert not set(cc) & set(orch), "a sample on both services is counted twice"
    for (name, labels), _ in cc.items():
        assert dict(labels).get("service") == "control_center", name
    assert any(dict(labels).get("service") == "orchestrator" for _, labels in orch)
    # Process-wide metrics on one port only: the orchestrator's.
    assert any(n.startswith("process_") for n in names(orch))
    assert any(n.startswith("python_") for n in names(orch))
    assert not any(n.startswith(("process_", "python_")) for n in names(cc))


async def test_without_an_orchestrator_the_control_center_carries_the_process_metrics(
    services: Services, owner: None
) -> None:
    set_process_metrics_owner("control_center")  # what `provisioning control-center` does
    cc, orch = await scrape(services.cc), await scrape(services.orch)
    assert any(n.startswith("process_") for n in names(cc))
    assert not any(n.startswith("process_") for n in names(orch))
    assert not set(cc) & set(orch)


async def test_metrics_are_public_by_default(services: Services) -> None:
    for client in (services.cc, services.orch):
        assert (await client.get("/metrics")).status == 200


@pytest.mark.parametrize("settings_overrides", [{"metrics_token": METRICS_TOKEN}])
async def test_a_metrics_token_closes_metrics_on_both_services(services: Services) -> None:
    services.secrets.add(METRICS_TOKEN)
    admin = await services.admin()
    refused = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {METRICS_TOKEN}"},
        {"Authorization": f"Bearer {METRICS_TOKEN}x"},
        {"Authorization": f"Bearer {admin}"},  # a user's token is not the metrics token
    ]
    for client in (services.cc, services.orch):
        for headers in refused:
            resp = await client.get("/metrics", headers=headers)
            doc = await resp.json()
            assert resp.status == 401, (headers, doc)
            assert doc["success"] is False and doc["code"] == "unauthorized"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        samples = await scrape(client, {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert samples
