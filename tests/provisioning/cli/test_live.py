"""Following a batch: how events change the view (summary batches without their
operations included), and a watch that outlives a restart of the server, reconnecting
with ``since`` and finishing with the batch's outcome."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from provisioning.cli.config import Credentials
from provisioning.cli.live import BatchView, final_lines
from tests.helpers.live_server import CuttableProxy, LiveServer, free_port, live_server, start_watch


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"id": 1, "event_type": kind, "data": data, "metadata": {}}


def test_events_move_operations_and_count_them() -> None:
    view = BatchView(
        {
            "batch_id": "b",
            "status": "Running",
            "operations": [
                {"id": "a", "task_id": "t-a", "status": "Pending", "progress": 0.0},
                {"id": "b", "task_id": "t-b", "status": "Pending", "progress": 0.0},
            ],
        }
    )
    lines = view.apply(
        event("TaskStatusChanged", operation_id="a", status="Running", attempt=1, progress=0.0)
    )
    assert len(lines) == 1 and re.search(r" a\s+Running\s+attempt 1\s+0\.0%$", lines[0])
    assert view.ops["a"]["started_at"]
    assert view.apply(event("OperationProgress", operation_id="a", progress=50.0, message="half")) == []
    assert view.ops["a"]["message"] == "half" and view.progress() == 25.0
    # The same status again (an event also covered by the REST view) prints nothing.
    assert view.apply(event("TaskStatusChanged", operation_id="a", status="Running", attempt=1)) == []
    done = view.apply(
        event("TaskStatusChanged", operation_id="a", status="Completed", attempt=1, output="ok")
    )
    assert "Completed" in done[0] and view.ops["a"]["progress"] == 100.0 and view.finished == ["a"]
    # A restore names the task, not the operation.
    view.apply(event("TaskStatusChanged", task_id="t-b", status="Failed", error="boom"))
    assert view.ops["b"]["status"] == "Failed"
    assert view.counts() == {"Completed": 1, "Failed": 1}
    assert not view.done
    view.apply(event("BatchStatusChanged", batch_id="b", status="Failed", error="b: boom", rollback={"x": 1}))
    assert view.done
    assert final_lines(view.batch) == [
        "batch b: Failed [........................]   0.0%",
        "error: b: boom",
        'rollback: {"x": 1}',
    ]
    assert view.apply(event("BatchStatusChanged", batch_id="other", status="Completed")) == []


def test_a_big_batch_listed_without_its_operations_uses_its_counts() -> None:
    view = BatchView(
        {
            "batch_id": "big",
            "status": "Running",
            "progress": 40.0,
            "total_operations": 5000,
            "counts": {"Completed": 2000, "Running": 50, "Pending": 2950},
        }
    )
    assert view.total == 5000 and view.progress() == 40.0
    assert view.counts() == {"Completed": 2000, "Running": 50, "Pending": 2950}
    view.apply(event("TaskStatusChanged", operation_id="op-17", status="Running"))
    view.apply(event("TaskStatusChanged", operation_id="op-17", status="Completed"))
    assert view.counts() == {"Completed": 2001, "Running": 50, "Pending": 2949}
    assert view.summary().startswith("5000/5000 operations: ")
    assert [op["id"] for op in view.rows()] == ["op-17"]


def test_a_dropped_stream_is_resumed_without_losing_an_event(
    server: LiveServer, logged_in: dict[str, str], tmp_path: Path
) -> None:
    """The network drops every connection mid-batch: the watch reconnects with
    ``since=<last event id>`` and prints every transition once, in order."""
    batch = {
        "name": "through_a_cut",
        "operations": [
            {"id": f"op{n}", "type": "server_batch", "simulate": {"latency_s": 0.4}}
            | ({"dependencies": [f"op{n - 1}"]} if n else {})
            for n in range(5)
        ],
    }
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    proxy = CuttableProxy(server.orch_url)
    try:
        env = {**logged_in, "PROVISIONING_ORCHESTRATOR_URL": proxy.url}
        watch, seen = start_watch(env, path)
        assert watch.stdout is not None
        for cut_after in ("op1 ", "op3 "):
            while not re.search(rf"{cut_after}\s+Running", seen):
                line = watch.stdout.readline()
                assert line, seen
                seen += line
            proxy.cut()
        out, err = watch.communicate(timeout=60)
    finally:
        proxy.close()
    printed = seen + out
    assert watch.returncode == 0, printed + err
    assert proxy.cuts == 2
    changes = [tuple(ln.split()[1:3]) for ln in printed.splitlines() if re.match(r"\d\d:\d\d:\d\d ", ln)]
    expected = [(f"op{n}", s) for n in range(5) for s in ("Running", "Completed")]
    # Every transition after the first operation (which may have moved before the watch
    # joined), in order, each once: nothing was lost while the network was down.
    assert set(expected[2:]) <= set(changes), changes
    assert changes == sorted(changes, key=expected.index), changes
    assert len(changes) == len(set(changes)), changes


@pytest.mark.slow
def test_a_watch_outlives_a_restart_of_the_server(tmp_path: Path) -> None:
    """The orchestrator stops mid-batch and starts again on the same data: the watch
    waits, reconnects with ``since``, and ends with the resumed batch's outcome.

    Slow (two starts of a file-backed store, ~25 s):
    ``python3 -m pytest -m slow tests/provisioning/cli/test_live.py``."""
    ports = (free_port(), free_port())
    batch = {
        "name": "across_a_restart",
        "operations": [
            {"id": "first", "type": "server_batch", "simulate": {"latency_s": 1.0}},
            {
                "id": "second",
                "type": "server_batch",
                "dependencies": ["first"],
                "simulate": {"latency_s": 1.0},
            },
            {
                "id": "third",
                "type": "server_batch",
                "dependencies": ["second"],
                "simulate": {"latency_s": 0.5},
            },
        ],
    }
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    with live_server(tmp_path, db_url="", ports=ports) as server:
        admin = server.admin()
        home = tmp_path / "config"
        env = server.env(home)
        Credentials(home / "provisioning" / "credentials.json").put(
            "default", {"server": server.cc_url, "orchestrator": server.orch_url, **admin}
        )
        env.pop("PROVISIONING_URL")
        env.pop("PROVISIONING_ORCHESTRATOR_URL")
        watch, seen = start_watch(env, path)
        assert watch.stdout is not None
        while "first" not in seen or "Running" not in seen:
            line = watch.stdout.readline()
            assert line, seen
            seen += line
    # Stopped (SIGTERM) while "first" runs; started again on the same data directory.
    time.sleep(0.5)
    with live_server(tmp_path, db_url="", ports=ports):
        out, err = watch.communicate(timeout=90)
    printed = seen + out
    assert watch.returncode == 0, printed + err
    bid = re.search(r"batch (\S+) submitted", printed).group(1)  # type: ignore[union-attr]
    assert re.search(r" third\s+Completed", printed), printed
    assert printed.rstrip().endswith(f"batch {bid}: Completed [########################] 100.0%")
    assert "Traceback" not in err


def test_an_event_older_than_the_snapshot_is_not_applied() -> None:
    """A batch document can show an operation ahead of the stream (it comes from the
    engine's memory): the stream's older changes of it print nothing and move nothing."""
    view = BatchView(
        {
            "batch_id": "b",
            "status": "Running",
            "operations": [{"id": "a", "task_id": "t-a", "status": "Completed", "progress": 100.0}],
        }
    )
    assert view.apply(event("TaskStatusChanged", operation_id="a", status="Running", attempt=1)) == []
    assert view.apply(event("TaskStatusChanged", operation_id="a", status="Completed")) == []
    assert view.ops["a"]["status"] == "Completed" and view.counts() == {"Completed": 1}
    assert len(view.apply(event("TaskStatusChanged", operation_id="a", status="RollingBack"))) == 1
