"""The fast paths of ``POST /batch/execute`` give what the slow ones gave.

The workflow row records the operations as the request body held them (not dumped
from the models again): resume, rollback and catch-up re-validate that text, and get
the operations that were submitted. Dependencies are plain ``(id, kind)`` tuples; the
graph is searched for a cycle only when an operation depends on a later one; the
snapshot at submission is built without a pass over the tasks. A hostile body is
still refused naming the field, however deep in a big batch it hides."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.dag import validate as validate_graph
from orchestrator.keys import ENGINE
from orchestrator.models import BatchRequest, Dependency, OperationSpec
from orchestrator.repository import Repository
from orchestrator.runtime import WorkflowState
from orchestrator.snapshots import Snapshots
from orchestrator.states import WorkflowStatus
from shared.errors import ValidationFailed
from shared.store.writes import Insert
from shared.web.keys import STORE
from tests.helpers.batches import batch, submit, wait_batch
from tests.helpers.orchestrator_api import expect_error, fields_of, post_batch

# Every kind of field an operation has, with explicit nulls and defaults spelled out.
VARIED: list[dict[str, Any]] = [
    {"id": "root", "type": "server_batch", "provider": "noop", "description": None, "timeout": 5},
    {
        "id": "servers",
        "type": "server_batch",
        "provider": "noop",
        "dependencies": ["root", {"id": "root", "kind": "soft"}],
        "server_configs": [{"name": "web-01", "plan": "1xCPU", "labels": {"tier": "web"}}],
        "retry": {"max_attempts": 2, "initial_delay_s": 0},
        "on_failure": "continue",
        "params": {"nested": {"list": [1, 2.5, None, True, "é"]}},
        "simulate": None,
    },
    {
        "id": "svc",
        "type": "taskserv_batch",
        "provider": "noop",
        "dependencies": [{"id": "servers"}, {"id": "root", "kind": "soft"}],
        "taskservs": ["kubernetes"],
        "operation": "update",
        "infra": "prod",
        "settings": None,
    },
    {"id": "echo", "type": "command", "run": ["true"], "undo": ["true"], "env": {"GREETING": "hi"}},
]


async def _workflow_row(orch: Any, wid: str) -> dict[str, Any]:
    """The workflow's row with its operations as recorded (in its ``workflow_spec``)."""
    rows = await Repository(orch.app[STORE]).workflow_rows([wid])
    assert rows, wid
    row: dict[str, Any] = rows[0]
    return row


async def test_the_recorded_operations_are_the_submitted_ones(orch: Any) -> None:
    body = batch(*VARIED, parallel_limit=2)
    data = await submit(orch, body)
    await wait_batch(orch, data["batch_id"])
    row = await _workflow_row(orch, data["batch_id"])
    assert '"description":null' in row["operations_json"]  # the body's text, not a dump
    recorded = [OperationSpec.model_validate(o) for o in json.loads(row["operations_json"])]
    submitted = BatchRequest.model_validate_json(json.dumps(body), strict=True).operations
    assert recorded == submitted
    # and the same as the text dumped from the models (what was recorded before)
    dumped = BatchRequest.model_validate_json(json.dumps(body), strict=True).operations_json
    assert [OperationSpec.model_validate(o) for o in json.loads(dumped)] == recorded
    # catch-up rebuilds the task rows from that text
    rebuilt = orch.app[ENGINE].task_rows_of(row)
    assert [r["name"] for r in rebuilt] == [o["id"] for o in VARIED]
    assert rebuilt[2]["dependency_names"] == ["servers", "root"]


def test_a_batch_built_in_python_records_its_dumped_operations() -> None:
    b = BatchRequest(name="b", operations=[OperationSpec(id="a", type="command", run=["true"])])
    assert json.loads(b.operations_json)[0]["run"] == ["true"]
    assert [OperationSpec.model_validate(o) for o in json.loads(b.operations_json)] == b.operations
    b.keep_received([{"id": "a"}, {"id": "b"}])  # not what it was validated from: ignored
    assert json.loads(b.operations_json)[0]["run"] == ["true"]


def test_dependencies_are_named_once_a_hard_mention_winning() -> None:
    spec = OperationSpec.model_validate(
        {
            "id": "x",
            "type": "server_batch",
            "dependencies": [{"id": "a", "kind": "soft"}, "b", "a", {"id": "b", "kind": "soft"}, {"id": "c"}],
        }
    )
    assert spec.dependency_refs == (Dependency("a", "hard"), Dependency("b", "hard"), Dependency("c", "hard"))
    soft = OperationSpec.model_validate(
        {"id": "y", "type": "server_batch", "dependencies": [{"id": "a", "kind": "soft"}]}
    )
    assert soft.dependency_refs == (Dependency("a", "soft"),)
    assert OperationSpec(id="z", type="server_batch").dependency_refs == ()


def _graph(ops: list[tuple[str, list[str]]]) -> BatchRequest:
    return BatchRequest(
        name="g", operations=[OperationSpec(id=i, type="server_batch", dependencies=d) for i, d in ops]
    )


def test_an_operation_may_depend_on_a_later_one() -> None:
    validate_graph(_graph([("b", ["a"]), ("a", []), ("c", ["b", "a"])]), lambda name: True)


def test_a_cycle_through_a_later_operation_is_named() -> None:
    with pytest.raises(ValidationFailed) as err:
        validate_graph(_graph([("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", [])]), lambda name: True)
    assert err.value.details["cycle"][0] == err.value.details["cycle"][-1]
    assert set(err.value.details["cycle"]) == {"a", "b", "c"}


def test_each_provider_name_is_resolved_once() -> None:
    asked: list[str] = []

    def known(name: str) -> bool:
        asked.append(name)
        return name != "nowhere"

    b = BatchRequest(
        name="p",
        operations=[
            OperationSpec(id=f"op{i}", type="server_batch", provider="nowhere" if i % 2 else "noop")
            for i in range(6)
        ],
    )
    with pytest.raises(ValidationFailed) as err:
        validate_graph(b, known)
    assert sorted(asked) == ["noop", "nowhere"]
    assert [f["field"] for f in err.value.details["fields"]] == [
        f"operations.{i}.provider" for i in (1, 3, 5)
    ]


async def test_the_submission_snapshot_is_the_one_a_full_pass_makes(orch: Any) -> None:
    tasks = orch.app[ENGINE].tasks
    b = _graph([(f"op{i}", [f"op{i - 1}"] if i else []) for i in range(20)])
    wf = WorkflowState(
        id="w",
        name="b",
        kind="batch",
        status=WorkflowStatus.RUNNING,
        parallel_limit=5,
        rollback_enabled=False,
    )
    for index, spec in enumerate(b.operations):
        wf.tasks[spec.id] = tasks.state(wf.id, f"t{index}", index, spec)
    snapshots = Snapshots()
    fast, slow = snapshots.submitted(wf, 7), snapshots.snapshot_write(wf, "submitted", 7, all_tasks=True)
    assert isinstance(fast, Insert) and isinstance(slow, Insert)
    assert fast.row["details"] == slow.row["details"]
    assert fast.counts == slow.counts
    for key in ("state", "seq", "workflow_id"):
        assert fast.row[key] == slow.row[key]


# -- hostile bodies still name the field ------------------------------------------------------


def _big(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"op{i}",
            "type": "server_batch",
            "provider": "noop",
            "dependencies": [f"op{i - 1}"] if i else [],
        }
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("where", "value", "field"),
    [
        ("id", "op\x00", "operations.1999.id"),
        ("dependencies", ["op1998", "\ud800"], "operations.1999.dependencies.1"),
        ("params", {"n": 2**64}, "operations.1999.params.n"),
        ("description", "x" * 70_000, "operations.1999.description"),
    ],
)
async def test_an_unsafe_value_deep_in_a_big_batch_is_422_naming_it(
    orch: Any, where: str, value: Any, field: str
) -> None:
    ops = _big(2000)
    ops[-1][where] = value
    resp = await orch.post(
        "/batch/execute",
        data=json.dumps({"name": "hostile", "operations": ops}),
        headers={"Content-Type": "application/json"},
    )
    doc = await expect_error(resp, 422)
    assert field in fields_of(doc)


async def test_a_bad_reference_deep_in_a_big_batch_is_422_naming_it(orch: Any) -> None:
    ops = _big(2000)
    ops[1500]["dependencies"] = ["op1499", "nowhere"]
    doc = await expect_error(await post_batch(orch, {"name": "bad", "operations": ops}), 422)
    assert fields_of(doc) == {"operations.1500.dependencies"}
    assert "nowhere" in doc["error"]


async def test_nesting_too_deep_inside_an_operation_is_400(orch: Any) -> None:
    ops = _big(10)
    ops[9]["params"] = json.loads("[" * 70 + "]" * 70)
    resp = await orch.post(
        "/batch/execute",
        data=json.dumps({"name": "deep", "operations": ops}),
        headers={"Content-Type": "application/json"},
    )
    await expect_error(resp, 400)
