"""Provider registry: built-ins, the configured provider map, entry-point plug-ins."""

from __future__ import annotations

from importlib.metadata import EntryPoint

from orchestrator.app import create_app
from orchestrator.models import OperationSpec
from orchestrator.providers import OperationContext, OperationResult, ProviderEnv
from orchestrator.providers import registry as registry_module
from orchestrator.providers.registry import ProviderRegistry
from shared.settings import load_settings
from tests.helpers.batches import submit, wait_batch


class EchoProvider:
    """A third-party provider as a plug-in would ship it."""

    name = "echo"

    def __init__(self, env: ProviderEnv) -> None:
        self.env = env

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        return "echo", [spec.id]

    def check(self, spec: OperationSpec, provider: str) -> str:
        return f"echo {spec.id}"

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output=f"echo {ctx.name} via {ctx.provider}", results={"plugin": True})

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        return OperationResult(output="un-echo")


def test_builtins_and_the_default_map(store):
    reg = ProviderRegistry(ProviderEnv(load_settings(), store), load_settings().provider_map)
    assert {"local", "command", "noop"} <= set(reg.providers)
    assert reg.resolve_name("upcloud") == "local"
    assert reg.resolve_name("aws") == "local"
    assert reg.resolve_name("nonesuch") is None


def test_entry_point_plugins_load_and_can_be_mapped(store, monkeypatch):
    ep = EntryPoint(
        name="echo",
        value="tests.orchestrator.test_providers:EchoProvider",
        group=registry_module.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep])
    reg = ProviderRegistry(ProviderEnv(load_settings(), store), {"hetzner": "echo"})
    assert isinstance(reg.providers["echo"], EchoProvider)
    assert reg.resolve_name("hetzner") == "echo"
    assert "hetzner" in reg.known_names()


def test_a_broken_plugin_is_skipped(store, monkeypatch):
    ep = EntryPoint(
        name="broken", value="tests.orchestrator.no_such_module:Nope", group=registry_module.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep])
    reg = ProviderRegistry(ProviderEnv(load_settings(), store), {})
    assert "broken" not in reg.providers
    assert "local" in reg.providers


async def test_a_batch_runs_on_a_plugin_through_the_provider_map(aiohttp_client, settings, monkeypatch):
    from orchestrator.app import create_app

    ep = EntryPoint(
        name="echo",
        value="tests.orchestrator.test_providers:EchoProvider",
        group=registry_module.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [ep])
    settings = settings.model_copy(update={"provider_map": {**settings.provider_map, "hetzner": "echo"}})
    client = await aiohttp_client(create_app(settings))
    data = await submit(
        client,
        {"name": "plug", "operations": [{"id": "hello", "type": "server_batch", "provider": "hetzner"}]},
    )
    done = await wait_batch(client, data["batch_id"])
    assert done["operations"][0]["output"] == "echo hello via hetzner"
    assert done["operations"][0]["results"] == {"plugin": True}


# -- local: the simulated cloud's inventory ----------------------------------------------


async def test_local_inventory_is_committed_with_the_outcome_and_survives_a_restart(aiohttp_client, settings):
    """The inventory a batch makes is written in the commit of each operation's Completed
    transition: after the service stops and starts again on the same data directory it
    is all there, and a deleting operation's removal too."""
    on_disk = settings.model_copy(update={"db_url": "", "data_dir": settings.data_dir / "data"})
    client = await aiohttp_client(create_app(on_disk))
    body = {
        "name": "inventory",
        "parallel_limit": 5,
        "operations": [
            {
                "id": f"s{i}",
                "type": "server_batch",
                "provider": "upcloud",
                "servers": [f"web-{i}"],
                "simulate": {"latency_s": 0},
            }
            for i in range(20)
        ]
        + [
            {
                "id": "drop",
                "type": "server_batch",
                "provider": "aws",
                "operation": "delete",
                "servers": ["web-3"],
                "dependencies": ["s3"],
                "simulate": {"latency_s": 0},
            },
            {
                "id": "broken",
                "type": "server_batch",
                "provider": "upcloud",
                "servers": ["never"],
                "on_failure": "continue",
                "simulate": {"latency_s": 0, "fail_always": True},
                "retry": {"max_attempts": 1},
            },
        ],
    }
    bid = (await submit(client, body))["batch_id"]
    done = await wait_batch(client, bid)
    assert done["status"] == "Failed"
    assert done["counts"]["Completed"] == 21 and done["counts"]["Failed"] == 1
    expected = {f"web-{i}" for i in range(20)} - {"web-3"}
    before = (await (await client.get("/state/inventory")).json())["data"]
    assert {r["name"] for r in before} == expected
    await client.close()  # stops the engine and closes the store

    again = await aiohttp_client(create_app(on_disk))
    after = (await (await again.get("/state/inventory")).json())["data"]
    assert after == before
    assert {r["task_id"] for r in after} <= {o["task_id"] for o in done["operations"]}
