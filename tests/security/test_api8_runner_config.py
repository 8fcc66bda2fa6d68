"""API8 (security misconfiguration): what a ``command`` operation may ask for. ``env``
keys such as LD_PRELOAD and ``cwd: "/"`` were accepted, NUL printed by a command was
stored raw (and broke the store for good), and a server that is not root let its
same-uid commands read its environment (issue 8, findings 1 and 2)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.command_runner import ensure_work_root, runner_identity
from shared.settings import PACKAGE_ROOT
from tests.helpers.batches import submit, wait_batch


async def refused(client: Any, operation: dict[str, Any]) -> list[dict[str, Any]]:
    spec = {"id": "x", "type": "command", "run": ["true"], **operation}
    resp = await client.post("/batch/execute", json={"name": "attack", "operations": [spec]})
    doc = await resp.json()
    assert resp.status == 422, doc
    fields: list[dict[str, Any]] = doc["details"]["fields"]
    return fields


@pytest.mark.parametrize(
    ("key", "value"),
    [("LD_PRELOAD", "/tmp/evil.so"), ("PATH", "/tmp/evil-bin"), ("PYTHONPATH", "/tmp/evil-py")],
)
async def test_env_keys_that_change_loading_are_refused_naming_the_key(orch, key, value):
    fields = await refused(orch, {"env": {"HARMLESS": "1", key: value}})
    assert [f["field"] for f in fields] == [f"operations.0.env.{key}"]
    assert value not in str(fields)  # the value is never echoed back


async def test_env_keys_are_refused_in_check_mode_too(orch):
    resp = await orch.post(
        "/batch/execute",
        json={
            "name": "attack",
            "check_mode": True,
            "operations": [{"id": "x", "type": "command", "run": ["true"], "env": {"BASH_ENV": "/tmp/x"}}],
        },
    )
    assert resp.status == 422


async def test_cwd_at_the_filesystem_root_is_refused(orch):
    fields = await refused(orch, {"cwd": "/"})
    assert [f["field"] for f in fields] == ["operations.0.cwd"]
    assert "outside the command work root" in fields[0]["message"]


async def test_a_symlink_escaping_the_work_root_is_refused(orch, settings, work_root):
    ensure_work_root(settings, runner_identity(settings))
    (work_root / "innocent").symlink_to("/etc")
    fields = await refused(orch, {"cwd": "innocent"})
    assert [f["field"] for f in fields] == ["operations.0.cwd"]
    assert "'/etc'" in fields[0]["message"]
    fields = await refused(orch, {"cwd": str(work_root / "innocent" / "ssl")})
    assert [f["field"] for f in fields] == ["operations.0.cwd"]


async def test_nul_printed_by_a_command_is_not_stored_raw(orch):
    body = {
        "name": "nul",
        "operations": [
            {"id": "out", "type": "command", "run": ["printf", "evil\\000name\\001\\n"]},
            {"id": "err", "type": "command", "run": ["sh", "-c", "printf 'bad\\000' >&2; exit 1"]},
        ],
    }
    done = await wait_batch(orch, (await submit(orch, body))["batch_id"])
    ops = {o["id"]: o for o in done["operations"]}
    assert ops["out"]["output"] == "evil\ufffdname\ufffd\n"
    assert "bad\ufffd" in ops["err"]["error"]
    # The store still answers for every list that carries the output.
    assert (await orch.get("/batch/operations")).status == 200
    assert (await orch.get("/tasks")).status == 200


# A server that is not root cannot change the identity of its commands; being
# non-dumpable keeps its /proc files closed to them. Played here by a small program
# run as the (unprivileged) runner user: it calls the real make_undumpable, then runs
# the attack as its own child, with the same uid.
SERVER = """
import subprocess, sys
from orchestrator.command_runner import make_undumpable
if sys.argv[1] == "protected":
    assert make_undumpable()
argv = ["sh", "-c", "tr '\\\\0' '\\\\n' </proc/$PPID/environ"]
attack = subprocess.run(argv, capture_output=True, text=True)
print(attack.stdout + attack.stderr)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="plays a non-root server by starting one as the runner user")
@pytest.mark.parametrize("mode", ["protected", "control"])
def test_a_non_root_server_is_not_dumpable_so_its_commands_cannot_read_it(command_work_base, mode):
    runner = pwd.getpwnam("provisioning-runner")
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert python, "a python3 the runner user can run"
    # The real modules, copied where the runner can read them (the checkout may be under /root).
    code = command_work_base / f"code-{uuid.uuid4().hex}"
    for rel in (
        "orchestrator/__init__.py",
        "orchestrator/command_runner.py",
        "shared/__init__.py",
        "shared/settings.py",
    ):
        (code / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(PACKAGE_ROOT) / rel, code / rel)
    # Explicit modes: a file store opened earlier in this process set the umask to 077.
    for path in (code, *code.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    secret = "SERVER_SECRET=" + uuid.uuid4().hex
    done = subprocess.run(
        [python, "-c", SERVER, mode],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code), secret.split("=")[0]: secret.split("=")[1]},
        user=runner.pw_uid,
        group=runner.pw_gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    if mode == "protected":
        assert secret not in done.stdout
        assert "Permission denied" in done.stdout
    else:  # without it the same uid reads everything: the test can see an attack work
        assert secret in done.stdout
