"""Discovery from the three sources, in a stable order, reading manifests only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.extensions.discovery import BUILTIN, ENTRY_POINT, ENV_DIR, discover
from tests.helpers.extensions import PING, manifest, write_extension, write_single_file

BUILTINS = ["events_demo", "mcp_http", "observability", "webui"]
ROOT = Path(__file__).resolve().parents[3]


def test_builtins_then_paths_in_order(tmp_path: Path) -> None:
    many = tmp_path / "many"
    write_extension(many, "beta")
    write_extension(many, "alpha", folder="z_alpha")  # ordered by folder name
    single = write_single_file(tmp_path / "single", "solo")
    one = write_extension(tmp_path / "one", "gamma")
    by_manifest = write_extension(tmp_path / "mf", "delta") / "extension.json"
    found, sources = discover([str(many), str(single), str(one), str(by_manifest)])
    own = [c for c in found if c.source != ENTRY_POINT]
    assert [c.key for c in own] == [*BUILTINS, "beta", "alpha", "solo", "gamma", "delta"]
    assert [c.source for c in own] == [BUILTIN] * 4 + [ENV_DIR] * 5
    assert sources == [BUILTIN, ENV_DIR, ENTRY_POINT]
    assert all(c.problem is None and c.manifest is not None for c in own)
    again, _ = discover([str(many), str(single), str(one), str(by_manifest)])
    assert [c.key for c in again] == [c.key for c in found]


def test_discovery_runs_no_extension_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\n" + PING
    write_extension(tmp_path / "exts", "sneaky", code)
    single = write_single_file(tmp_path / "single", "solo", code)
    found, _ = discover([str(tmp_path / "exts"), str(single)])
    assert {"sneaky", "solo"} <= {c.key for c in found}
    assert not marker.exists()


def test_bad_manifests_are_candidates_with_their_problem(tmp_path: Path) -> None:
    bad = tmp_path / "exts"
    (bad / "no_name").mkdir(parents=True)
    (bad / "no_name" / "extension.json").write_text(json.dumps({"id": "no_name", "version": "1"}))
    (bad / "junk").mkdir()
    (bad / "junk" / "extension.json").write_text("{not json")
    write_extension(bad, "extra_key", unknown=1)
    write_extension(bad, "bad_grant", grants=["ROOT"])
    (tmp_path / "nomanifest.py").write_text("x = 1\n")
    found, _ = discover([str(bad), str(tmp_path / "nomanifest.py"), str(tmp_path / "missing")])
    problems = {c.key: c.problem or "" for c in found if c.source == ENV_DIR}
    assert "name: Field required" in problems["no_name"]
    assert "not valid JSON" in problems["junk"]
    assert "unknown: Extra inputs are not permitted" in problems["extra_key"]
    assert "grants.0" in problems["bad_grant"]
    assert "no MANIFEST" in problems["nomanifest"]
    assert "no such extension directory" in problems["missing"]


ENTRY_POINT_SCRIPT = """
import asyncio, json
from aiohttp.test_utils import TestClient, TestServer
from orchestrator.app import create_app
from shared.settings import load_settings

async def main():
    settings = load_settings(db_url="mem://", auth_enabled=False, data_dir={data!r},
                             command_work_root={work!r},
                             extensions={{"packaged": {{"grants": ["ROUTES"]}}}})
    async with TestClient(TestServer(create_app(settings))) as client:
        ping = await client.get("/ext/packaged/ping")
        status = await (await client.get("/ext/status")).json()
        print(json.dumps({{"ping": ping.status, "body": await ping.json(), "status": status}}))

asyncio.run(main())
"""


def test_an_installed_distribution_with_an_entry_point(tmp_path: Path) -> None:
    """A real distribution (a dist-info with entry_points.txt) on the path of a new process."""
    site = tmp_path / "site"
    package = site / "packaged_ext"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "extension.json").write_text(json.dumps(manifest("packaged")))
    (package / "extension.py").write_text(textwrap.dedent(PING))
    info = site / "packaged_ext-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: packaged-ext\nVersion: 1.0.0\n")
    (info / "entry_points.txt").write_text(
        "[provisioning.extensions]\npackaged = packaged_ext.extension:get_extension\n"
    )
    script = ENTRY_POINT_SCRIPT.format(data=str(tmp_path / "data"), work=str(tmp_path / "work"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ping"] == 200 and result["body"]["data"] == {"pong": "packaged"}
    entry = result["status"]["extensions"]["packaged"]
    assert entry["state"] == "loaded" and entry["source"] == ENTRY_POINT
    assert "entry_point" in result["status"]["discovery_sources"]
