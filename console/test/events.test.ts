import { describe, expect, it } from "vitest";
import { applyEvent, applyEvents, batchFromApi, countByStatus, rollbackPlan, type StreamEvent } from "../src/lib/events";

const batch = () =>
  batchFromApi({
    batch_id: "wf1",
    name: "multi",
    status: "Running",
    operations: [
      {
        id: "net",
        task_id: "t-net",
        type: "server_batch",
        provider: "upcloud",
        status: "Completed",
        progress: 100,
        attempt: 1,
        dependencies: [],
        completed_at: "2026-01-01T00:00:01Z",
      },
      { id: "srv", task_id: "t-srv", type: "server_batch", provider: "upcloud", status: "Running", progress: 10, attempt: 1, dependencies: ["net"] },
      { id: "db", task_id: "t-db", type: "taskserv_batch", provider: "aws", status: "Pending", progress: 0, attempt: 0, dependencies: [{ id: "srv" }] },
    ],
  });

let nextId = 100;
const ev = (event_type: string, data: Record<string, unknown>, id = ++nextId): StreamEvent => ({ id, event_type, data, metadata: {} });

describe("batchFromApi", () => {
  it("reads operations, dependencies in either form, and task ids", () => {
    const s = batch();
    expect(s.order).toEqual(["net", "srv", "db"]);
    expect(s.ops.db.dependencies).toEqual(["srv"]);
    expect(s.byTask["t-srv"]).toBe("srv");
    expect(countByStatus(s)).toEqual({ Completed: 1, Running: 1, Pending: 1 });
  });

  it("uses counts when the API gave a summary without operations", () => {
    const s = batchFromApi({ batch_id: "x", name: "big", status: "Running", counts: { Completed: 4000, Pending: 1000 }, total_operations: 5000 });
    expect(countByStatus(s)).toEqual({ Completed: 4000, Pending: 1000 });
    expect(s.totalOperations).toBe(5000);
  });
});

describe("applyEvent", () => {
  it("moves an operation on TaskStatusChanged, found by task id", () => {
    const s = applyEvent(batch(), ev("TaskStatusChanged", { task_id: "t-srv", workflow_id: "wf1", status: "Completed", attempt: 1, output: "created", error: null }));
    expect(s.ops.srv.status).toBe("Completed");
    expect(s.ops.srv.progress).toBe(100);
    expect(s.ops.srv.output).toBe("created");
  });

  it("takes the status from metadata when data lacks it (a restore)", () => {
    const e: StreamEvent = { id: 900, event_type: "TaskStatusChanged", data: { task_id: "t-net" }, metadata: { status: "Cancelled", workflow_id: "wf1" } };
    expect(applyEvent(batch(), e).ops.net.status).toBe("Cancelled");
  });

  it("records progress and its message", () => {
    const s = applyEvent(batch(), ev("OperationProgress", { task_id: "t-srv", operation_id: "srv", workflow_id: "wf1", progress: 55, message: "booting" }));
    expect(s.ops.srv.progress).toBe(55);
    expect(s.ops.srv.message).toBe("booting");
  });

  it("follows the batch's status and its rollback", () => {
    let s = applyEvent(batch(), ev("RollbackStarted", { rollback_id: "rb1", workflow_id: "wf1" }));
    expect(s.liveRollback?.running).toBe(true);
    s = applyEvent(s, ev("RollbackCompleted", { rollback_id: "rb1", workflow_ids: ["wf1"], operations_executed: 2, operations_failed: 0 }));
    expect(s.liveRollback).toEqual({ running: false, rollbackId: "rb1", executed: 2, failed: 0 });
    s = applyEvent(s, ev("BatchStatusChanged", { batch_id: "wf1", status: "Failed", error: "db failed", rollback: { operations_executed: 2 } }));
    expect(s.status).toBe("Failed");
    expect(s.error).toBe("db failed");
    expect(s.rollback).toEqual({ operations_executed: 2 });
  });

  it("ignores other batches' events and replays of events already applied", () => {
    const s0 = batch();
    const other = applyEvent(s0, ev("BatchStatusChanged", { batch_id: "other", status: "Failed" }));
    expect(other.status).toBe("Running");
    const once = applyEvent(s0, ev("TaskStatusChanged", { task_id: "t-srv", status: "Completed" }, 5000));
    const replayed = applyEvent(once, ev("TaskStatusChanged", { task_id: "t-srv", status: "Running" }, 4999));
    expect(replayed.ops.srv.status).toBe("Completed");
    expect(replayed).toBe(once);
  });

  it("is pure: the previous state is unchanged", () => {
    const s0 = batch();
    applyEvent(s0, ev("TaskStatusChanged", { task_id: "t-db", status: "Running" }));
    expect(s0.ops.db.status).toBe("Pending");
  });
});

describe("rollbackPlan", () => {
  it("takes completed dependents too and orders dependents first", () => {
    let s = batch();
    s = applyEvent(s, ev("TaskStatusChanged", { task_id: "t-srv", status: "Completed", completed_at: "2026-01-01T00:00:02Z" }));
    s = applyEvent(s, ev("TaskStatusChanged", { task_id: "t-db", status: "Completed", completed_at: "2026-01-01T00:00:03Z" }));
    expect(rollbackPlan(s, ["net"])).toEqual(["db", "srv", "net"]);
    expect(rollbackPlan(s, ["srv"])).toEqual(["db", "srv"]);
  });

  it("leaves out what is not completed", () => {
    expect(rollbackPlan(batch(), ["net"])).toEqual(["net"]);
    expect(rollbackPlan(batch(), ["db"])).toEqual([]);
  });
});

describe("applyEvents", () => {
  it("folds a burst in order with one copy, leaving the given state unchanged", () => {
    const s0 = batch();
    const s1 = applyEvents(s0, [
      ev("TaskStatusChanged", { task_id: "t-srv", status: "Completed" }),
      ev("TaskStatusChanged", { task_id: "t-db", status: "Running" }),
      ev("OperationProgress", { task_id: "t-db", progress: 40, message: "installing" }),
      ev("TaskStatusChanged", { task_id: "t-db", status: "Completed" }),
    ]);
    expect(countByStatus(s1)).toEqual({ Completed: 3 });
    expect(s1.ops.db.message).toBeNull();
    expect(countByStatus(s0)).toEqual({ Completed: 1, Running: 1, Pending: 1 });
    expect(s1.lastEventId).toBe(nextId);
  });

  it("applies 10,000 events of a 5,000-operation batch", () => {
    const operations = Array.from({ length: 5000 }, (_, i) => ({ id: `op${i}`, task_id: `t${i}`, status: "Pending", dependencies: [] }));
    const s0 = batchFromApi({ batch_id: "big", name: "big", status: "Running", operations });
    const events: StreamEvent[] = [];
    let id = 1;
    for (let i = 0; i < 5000; i++) events.push({ id: id++, event_type: "TaskStatusChanged", data: { task_id: `t${i}`, status: "Running" } });
    for (let i = 0; i < 5000; i++) events.push({ id: id++, event_type: "TaskStatusChanged", data: { task_id: `t${i}`, status: "Completed" } });
    expect(countByStatus(applyEvents(s0, events))).toEqual({ Completed: 5000 });
  });
});
