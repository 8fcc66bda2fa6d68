"""Request models of the orchestrator API (seed 004), validated before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import cached_property, partial
from typing import Annotated, Any, Literal, NamedTuple

import orjson
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError

from orchestrator.command_runner import MAX_CWD_CHARS, MAX_ENV_KEYS, env_key_problem, env_value_problem
from orchestrator.states import TaskStatus, WorkflowStatus
from shared.web.routing import (
    ANY,
    BOOL,
    DATETIME,
    INT,
    NAMED_SCHEMAS,
    NUM,
    OBJECT,
    STR,
    JsonSchema,
    Model,
    PageQuery,
    absent_not_null,
    array,
    choice,
    named,
    nullable,
    obj,
)

SUPPORTED_STORAGE_BACKENDS = ("surrealdb",)
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
MAX_OPERATIONS = 10_000


class OperationType(StrEnum):
    SERVER_BATCH = "server_batch"
    TASKSERV_BATCH = "taskserv_batch"
    CLUSTER_BATCH = "cluster_batch"
    COMMAND = "command"


_COMMAND = OperationType.COMMAND  # a module constant: an enum attribute costs ~0.2 µs a look-up


class RetryPolicy(Model):
    """Attempts and exponential backoff between them."""

    max_attempts: int = Field(3, ge=1, le=100)
    initial_delay_s: float = Field(1.0, ge=0, le=3600)
    max_delay_s: float = Field(60.0, ge=0, le=86_400)
    multiplier: float = Field(2.0, ge=1, le=10)

    def delay_s(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` (attempts count from 1)."""
        return float(min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (attempt - 1)))


class Simulate(Model):
    """Knobs of the simulated cloud (``local`` provider): latency and injected failures."""

    latency_s: float = Field(0.05, ge=0, le=3600)
    fail_attempts: int = Field(0, ge=0, le=100)
    fail_always: bool = False
    fail_rollback: bool = False
    progress_steps: int = Field(4, ge=1, le=100)


class DependencyRef(Model):
    id: str = Field(pattern=ID_PATTERN)
    kind: Literal["hard", "soft"] = "hard"


class Dependency(NamedTuple):
    """A dependency as the graph and the task rows use it: a plain tuple, as a batch of
    5,000 operations has 10,000 of them (a model each cost a submission ~90 ms)."""

    id: str
    kind: Literal["hard", "soft"]


# ``tuple.__new__`` bound to the class: a third of the cost of calling the class.
_NEW_DEPENDENCY: Callable[[tuple[str, str]], Dependency] = partial(tuple.__new__, Dependency)


class ServerConfig(Model):
    name: str = Field(min_length=1, max_length=128)
    plan: str | None = None
    zone: str | None = None
    image: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


def _refs_of(deps: list[str | DependencyRef] | None) -> tuple[Dependency, ...]:
    """Dependencies as references, each named once (a hard mention wins over soft)."""
    if not deps:
        return ()
    refs: dict[str, Dependency] = {}
    for d in deps:
        if type(d) is str:  # validated by the field's pattern
            refs[d] = _NEW_DEPENDENCY((d, "hard"))
        else:
            ref = d if isinstance(d, DependencyRef) else DependencyRef(id=d)  # raises if invalid
            if ref.kind == "hard" or ref.id not in refs:
                refs[ref.id] = Dependency(ref.id, ref.kind)
    return tuple(refs.values())


class OperationSpec(Model):
    """One operation of a batch; provider-specific fields sit beside the common ones."""

    # What `_command_needs_run` enforces, said in the schema: a command has a `run` argv.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"type": {"const": "command"}}, "required": ["type"]},
            "then": {"properties": {"run": {"type": "array"}}, "required": ["run"]},
        },
    )

    id: str = Field(pattern=ID_PATTERN, description="unique within the batch")
    type: OperationType
    provider: str | None = Field(None, min_length=1, max_length=64)
    dependencies: list[Annotated[str, Field(pattern=ID_PATTERN)] | DependencyRef] = Field(
        default_factory=list, max_length=1000, description="operation ids, or {id, kind} references"
    )
    timeout: float | None = Field(None, gt=0, le=86_400, description="seconds")
    retry: RetryPolicy | None = None
    on_failure: Literal["fail", "continue", "rollback"] = "fail"
    description: str | None = Field(None, max_length=1000)
    # server_batch / taskserv_batch / cluster_batch
    server_configs: list[ServerConfig] | None = Field(None, max_length=1000)
    taskservs: list[str] | None = Field(None, max_length=1000)
    servers: list[str] | None = Field(None, max_length=1000)
    cluster_type: str | None = None
    clusters: list[str] | None = Field(None, max_length=1000)
    infra: str | None = None
    settings: str | None = None
    operation: Literal["create", "delete", "update"] = "create"
    simulate: Simulate | None = None
    # command
    run: list[str] | None = Field(None, min_length=1, max_length=1000)
    undo: list[str] | None = Field(None, min_length=1, max_length=1000)
    env: dict[str, str] | None = Field(
        None,
        max_length=MAX_ENV_KEYS,
        description="extra environment variables; keys that change how programs are loaded "
        "or executed (LD_*, PYTHON*, PATH, BASH_ENV, …) are refused",
    )
    cwd: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_CWD_CHARS,
        description="working directory: relative to the command work root, or an absolute "
        "path inside it (symlinks resolved)",
    )
    params: dict[str, Any] | None = None

    @field_validator("env")
    @classmethod
    def _safe_env(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        """Each refused key or value is reported at ``env.<key>``."""
        if not value:
            return value
        errors: list[InitErrorDetails] = []
        for key, val in value.items():
            problem = env_key_problem(key) or env_value_problem(val)
            if problem:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("env_refused", "{reason}", {"reason": problem}),
                        loc=(key,),
                        input=key,  # never echo a value: it may be a secret
                    )
                )
        if errors:
            raise ValidationError.from_exception_data("env", errors)
        return value

    @field_validator("cwd")
    @classmethod
    def _plain_cwd(cls, value: str | None) -> str | None:
        if value is not None and any(ord(c) < 0x20 for c in value):
            raise ValueError("cwd cannot contain control characters")
        return value

    @model_validator(mode="after")
    def _command_needs_run(self) -> OperationSpec:
        if self.type is OperationType.COMMAND and not self.run:
            raise ValueError("a command operation needs `run`: the argv to execute")
        # What ``dependency_refs`` caches, worked out here: this validator runs for each
        # operation anyway, and a first access through the property costs its lock.
        self.__dict__["dependency_refs"] = _refs_of(self.dependencies)
        return self

    @cached_property
    def dependency_refs(self) -> tuple[Dependency, ...]:
        """Dependencies as references, each named once (a hard mention wins over soft).
        Computed once, when the operation is validated: the graph and the task rows ask."""
        return _refs_of(self.dependencies)

    @property
    def undo_argv(self) -> list[str] | None:
        """The argv that undoes a ``command`` operation (``None``: none, or another type)."""
        return self.undo if self.type is _COMMAND else None

    @property
    def provider_name(self) -> str:
        if self.provider:
            return self.provider
        return "command" if self.type is _COMMAND else "local"


class BatchRequest(Model):
    """``POST /batch/execute``."""

    name: str = Field(min_length=1, max_length=200)
    version: str = Field("1.0.0", max_length=64)
    description: str | None = Field(None, max_length=2000)
    environment: str | None = Field(None, max_length=64)
    storage_backend: str = "surrealdb"
    parallel_limit: int = Field(5, ge=1, le=1000)
    rollback_enabled: bool = False
    check_mode: bool = False
    operations: list[OperationSpec] = Field(min_length=1, max_length=MAX_OPERATIONS)
    # The operations as JSON text, once known: as the request body held them (see
    # :meth:`keep_received`), or dumped from the models.
    _operations_json: str | None = PrivateAttr(None)

    def keep_received(self, operations: Any) -> None:
        """Keep the request body's ``operations`` (parsed and checked: the JSON these
        models were validated from) as the text the workflow row records. Dumping 5,000
        models again cost a submission ~30 ms; the received document, re-validated as
        resume and rollback do, gives the same operations (explicit nulls and defaults
        aside, which validation fills in alike)."""
        if type(operations) is list and len(operations) == len(self.operations):
            self._operations_json = orjson.dumps(operations).decode()

    @property
    def operations_json(self) -> str:
        """The operations as the workflow row records them (JSON text)."""
        if self._operations_json is None:
            self._operations_json = _OPERATIONS.dump_json(self.operations, exclude_none=True).decode()
        return self._operations_json

    @field_validator("storage_backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in SUPPORTED_STORAGE_BACKENDS:
            raise ValueError(
                f"storage backend {value!r} is not supported; supported: "
                + ", ".join(SUPPORTED_STORAGE_BACKENDS)
            )
        return value


_OPERATIONS = TypeAdapter(list[OperationSpec])


class WorkflowCommon(Model):
    infra: str = Field(min_length=1, max_length=128)
    settings: str | None = Field(None, max_length=512)
    check_mode: bool = False
    wait: bool = True
    provider: str | None = Field(None, min_length=1, max_length=64)
    simulate: Simulate | None = None


class ServerWorkflowRequest(WorkflowCommon):
    """``POST /workflows/servers/create``."""

    servers: list[ServerConfig] | None = None


class TaskservWorkflowRequest(WorkflowCommon):
    """``POST /workflows/taskserv/create``."""

    operation: Literal["create", "delete", "update"] = "create"
    taskserv: str = Field(min_length=1, max_length=128)


class ClusterWorkflowRequest(WorkflowCommon):
    """``POST /workflows/cluster/create``."""

    operation: Literal["create", "delete", "update"] = "create"
    cluster_type: str = Field(min_length=1, max_length=128)


_TASK_STATUS = choice([str(s) for s in TaskStatus], "status")
_WORKFLOW_STATUS = choice([str(s) for s in WorkflowStatus], "status")
TaskStatusName = Annotated[str, _TASK_STATUS[0], _TASK_STATUS[1]]
WorkflowStatusName = Annotated[str, _WORKFLOW_STATUS[0], _WORKFLOW_STATUS[1]]


class TaskQuery(PageQuery):
    status: TaskStatusName | None = None
    workflow_id: str | None = Field(None, min_length=1, max_length=128)


class BatchListQuery(PageQuery):
    status: WorkflowStatusName | None = None
    view: Annotated[str, *choice(["full", "summary"], "view")] = Field(
        "full",
        description="summary: counts only; full: also the operations of batches of at most 100, "
        "at most 100 operations over the page (later batches: counts only)",
    )


INVENTORY_KINDS = ("server", "taskserv", "cluster", "resource")  # what providers/local.py makes


class InventoryQuery(PageQuery):
    """``GET /state/inventory``: a page, filtered by kind (counted), provider or workflow
    (no counter follows those: no total)."""

    kind: Annotated[str, *choice(INVENTORY_KINDS, "kind")] | None = None
    provider: str | None = Field(None, min_length=1, max_length=64, description="as the batch named it")
    workflow_id: str | None = Field(
        None, min_length=1, max_length=128, description="the batch that wrote it last"
    )


class CheckpointRequest(Model):
    """``POST /rollback/checkpoints``."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    workflow_id: str | None = Field(None, min_length=1, max_length=128)


class RollbackRequest(Model):
    """``POST /rollback/execute``: by checkpoint, or by operation ids."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["checkpoint_id"]}, {"required": ["operation_ids"]}]},
    )

    checkpoint_id: Annotated[str, Field(min_length=1, max_length=128)] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=absent_not_null
    )
    operation_ids: (
        Annotated[
            list[Annotated[str, Field(min_length=1, max_length=128)]],
            Field(min_length=1, max_length=MAX_OPERATIONS),
        ]
        | SkipJsonSchema[None]
    ) = Field(None, json_schema_extra=absent_not_null)
    workflow_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="with operation_ids: the batch whose operation ids (names) they are; with "
        "checkpoint_id: undo only this batch's operations (otherwise every batch's)",
    )

    @field_validator("checkpoint_id", "operation_ids", mode="before")
    @classmethod
    def _present_is_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("omit the field instead of sending null")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> RollbackRequest:
        if (self.checkpoint_id is None) == (self.operation_ids is None):
            raise ValueError("give exactly one of checkpoint_id or operation_ids")
        return self


# -- response schemas: what each route answers in the envelope's ``data`` -------------------

TASK_STATUS: JsonSchema = {"enum": [str(s) for s in TaskStatus]}
WORKFLOW_STATUS: JsonSchema = {"enum": [str(s) for s in WorkflowStatus]}
UNDO_ARGV: JsonSchema = {
    **nullable(array(STR)),
    "description": "a command operation's undo argv as submitted (null: none, or another type)",
}
TASK_VIEW = named(
    "Task",
    obj(
        {
            "id": STR,
            "name": STR,
            "command": nullable(STR),
            "args": array(STR),
            "dependencies": array(ANY),
            "status": TASK_STATUS,
            "created_at": nullable(DATETIME),
            "started_at": nullable(DATETIME),
            "completed_at": nullable(DATETIME),
            "output": ANY,
            "error": ANY,
            "workflow_id": nullable(STR),
            "type": nullable(STR),
            "provider": nullable(STR),
            "attempt": INT,
            "max_attempts": nullable(INT),
            "progress": NUM,
            "message": ANY,
            "results": ANY,
            "undo": UNDO_ARGV,
        }
    ),
)
OPERATION_VIEW = named(
    "BatchOperation",
    obj(
        {
            "id": STR,
            "task_id": STR,
            "type": nullable(STR),
            "provider": nullable(STR),
            "status": TASK_STATUS,
            "progress": NUM,
            "attempt": INT,
            "dependencies": array(STR),
            "started_at": nullable(DATETIME),
            "completed_at": nullable(DATETIME),
            "results": ANY,
            "output": ANY,
            "error": ANY,
            "command": nullable(STR),
            "args": array(STR),
            "undo": UNDO_ARGV,
        }
    ),
)
BATCH_VIEW_PROPERTIES: dict[str, JsonSchema] = {
    "batch_id": STR,
    "name": STR,
    "version": nullable(STR),
    "kind": STR,
    "status": WORKFLOW_STATUS,
    "created_at": nullable(DATETIME),
    "started_at": nullable(DATETIME),
    "completed_at": nullable(DATETIME),
    "parallel_limit": nullable(INT),
    "rollback_enabled": nullable(BOOL),
    "progress": NUM,
    "error": ANY,
    "rollback": ANY,
    "checkpoint_id": nullable(STR),
    "operations": array(OPERATION_VIEW),
}
BATCH_VIEW = named("Batch", obj(BATCH_VIEW_PROPERTIES))
# GET /batch/operations/{id}: the batch above, plus its operations counted by status,
# whole or cut down to the top-level fields asked for (``view``, ``fields``).
BATCH_DOCUMENT_PROPERTIES: dict[str, JsonSchema] = {
    **{k: v for k, v in BATCH_VIEW_PROPERTIES.items() if k != "operations"},
    "counts": obj({status.value: INT for status in TaskStatus}),
    "total_operations": INT,
    "operations": BATCH_VIEW_PROPERTIES["operations"],
}
BATCH_DOCUMENT_FIELDS = tuple(BATCH_DOCUMENT_PROPERTIES)
BATCH_SUMMARY_FIELDS = tuple(f for f in BATCH_DOCUMENT_FIELDS if f != "operations")
BATCH_DOCUMENT = named(
    "BatchDocument",
    obj(BATCH_DOCUMENT_PROPERTIES, optional=[f for f in BATCH_DOCUMENT_FIELDS if f != "batch_id"]),
)
# A batch as GET /batch/operations lists it: the batch's fields, its operations
# counted by status, and ``operations`` only for a small batch in the full view.
BATCH_LIST_ITEM = named(
    "BatchListItem",
    obj(
        {
            **NAMED_SCHEMAS["Batch"]["properties"],
            "counts": {"type": "object", "additionalProperties": INT, "description": "operations by status"},
            "total_operations": INT,
        },
        optional=("operations",),
    ),
)
MAX_FIELDS_CHARS = 512


class BatchDocumentQuery(Model):
    """``GET /batch/operations/{id}``: the whole document, its summary (counts by status,
    no operation list) or a chosen set of its top-level fields."""

    view: Annotated[str, *choice(("full", "summary"), "view")] = Field(
        "full", description="`summary`: every field but `operations`"
    )
    fields: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_FIELDS_CHARS,
        description="comma-separated top-level fields to return (`batch_id` always is): "
        + ", ".join(BATCH_DOCUMENT_FIELDS),
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        allowed = BATCH_SUMMARY_FIELDS if info.data.get("view") == "summary" else BATCH_DOCUMENT_FIELDS
        unknown = [f for f in value.split(",") if f.strip() not in allowed]
        if unknown:
            shown = ", ".join(repr(f[:64]) for f in unknown[:5])
            raise ValueError(f"unknown field(s) {shown}; use any of {', '.join(allowed)}")
        return value

    @property
    def selected(self) -> tuple[str, ...]:
        """The fields to return, in the document's order (``batch_id`` first, always)."""
        if self.fields is not None:
            wanted = {"batch_id", *(f.strip() for f in self.fields.split(","))}
            return tuple(f for f in BATCH_DOCUMENT_FIELDS if f in wanted)
        return BATCH_SUMMARY_FIELDS if self.view == "summary" else BATCH_DOCUMENT_FIELDS


BATCH_SUBMITTED = named(
    "BatchSubmitted",
    obj(
        {
            "batch_id": STR,
            "status": STR,
            "checkpoint_id": nullable(STR),
            "operations": array(
                obj({"id": STR, "task_id": STR, "status": {"const": "Pending"}, "progress": NUM})
            ),
        }
    ),
)
PLAN = named(
    "CheckModePlan",
    obj(
        {
            "check_mode": {"const": True},
            "plan": obj(
                {
                    "name": STR,
                    "parallel_limit": INT,
                    "rollback_enabled": BOOL,
                    "generations": array(array(STR)),
                    "operations": array(
                        obj(
                            {
                                "id": STR,
                                "type": STR,
                                "provider": STR,
                                "implementation": STR,
                                "dependencies": array(obj({"id": STR, "kind": {"enum": ["hard", "soft"]}})),
                                "command": STR,
                                "args": array(STR),
                                "would": STR,
                            }
                        )
                    ),
                }
            ),
        }
    ),
)
WORKFLOW_ID: JsonSchema = {"type": "string", "description": "the workflow's (and its task's) id"}
PROGRESS = obj(
    {
        "workflow_id": STR,
        "status": WORKFLOW_STATUS,
        "progress": NUM,
        "current_step": STR,
        "total_steps": INT,
        "completed_steps": INT,
        "running_steps": INT,
        "estimated_time_remaining": nullable(NUM),
    }
)
SNAPSHOTS = array(obj({"snapshot_id": STR, "timestamp": ANY, "state": ANY, "details": ANY}))
STATE_AT = obj(
    {
        "workflow_id": STR,
        "journal_seq": INT,
        "status": nullable(WORKFLOW_STATUS),
        "counts": {"type": "object", "additionalProperties": INT},
        "operations": {
            "type": "object",
            "additionalProperties": obj({"task_id": STR, "status": TASK_STATUS, "attempt": INT}),
        },
    }
)
JOURNAL = array(
    obj(
        {
            "seq": INT,
            "at": ANY,
            "entity_kind": STR,
            "entity_id": STR,
            "name": STR,
            "from": nullable(STR),
            "to": STR,
            "attempt": nullable(INT),
            "note": ANY,
        }
    )
)
SYSTEM_METRICS = obj(
    {
        "total_workflows": INT,
        "active_workflows": INT,
        "completed_workflows": INT,
        "failed_workflows": INT,
        "cancelled_workflows": INT,
        "system_load": obj({"cpu_usage": NUM, "memory_usage": NUM, "disk_usage": NUM}),
    }
)
HEALTH_VALUE: JsonSchema = {"enum": ["Healthy", "Degraded", "Unhealthy"]}
SYSTEM_HEALTH = obj(
    {
        "overall_status": HEALTH_VALUE,
        "components": obj(
            {"storage": HEALTH_VALUE, "batch_coordinator": HEALTH_VALUE, "monitoring": HEALTH_VALUE}
        ),
        "last_check": DATETIME,
    }
)
_BY: JsonSchema = {"type": "object", "additionalProperties": INT}
STATE_STATISTICS = obj(
    {
        "total_workflows": INT,
        "active_snapshots": INT,
        "storage_usage": STR,
        "average_workflow_duration": NUM,
        "workflows_by_status": _BY,
        "workflows_by_kind": _BY,
        "total_tasks": INT,
        "tasks_by_status": _BY,
        "total_checkpoints": INT,
        "retention": obj(
            {
                "days": {**INT, "description": "PROVISIONING_RETENTION_DAYS; 0 keeps everything"},
                "pruned": {**_BY, "description": "rows removed so far, by table"},
            }
        ),
    }
)
INVENTORY = array(
    named(
        "InventoryResource",
        obj(
            {
                "id": {**STR, "description": "<kind>/<name>"},
                "kind": {"type": "string", "enum": list(INVENTORY_KINDS)},
                "name": STR,
                "provider": {**STR, "description": "the provider name the batch used"},
                "attributes": OBJECT,
                "task_id": STR,
                "workflow_id": STR,
                "state": STR,
                "simulated": {"const": True},
                "updated_at": DATETIME,
            },
            optional=("provider", "attributes", "task_id", "workflow_id", "state", "simulated", "updated_at"),
        ),
    )
)
CHECKPOINT_FIELDS: dict[str, JsonSchema] = {
    "id": STR,
    "name": STR,
    "description": nullable(STR),
    "created_at": ANY,
    "size": STR,
    "journal_seq": INT,
    "workflow_id": nullable(STR),
    "automatic": BOOL,
}
CHECKPOINT = named("Checkpoint", obj(CHECKPOINT_FIELDS))
CHECKPOINT_DETAIL = named("CheckpointDetail", obj({**CHECKPOINT_FIELDS, "operations_count": INT}))
ROLLBACK_RESULT: JsonSchema = {"type": "object", "description": "what was undone, per operation"}
ROLLBACK_STATISTICS = obj(
    {
        "total_checkpoints": INT,
        "total_rollbacks": INT,
        "success_rate": NUM,
        "average_rollback_time": NUM,
    }
)
