/**
 * The batch page's state and the pure reducer the live stream drives.
 *
 * A batch is loaded once over REST ({@link batchFromApi}); after that every event from
 * the orchestrator's `/ws` is folded in by {@link applyEvent}. Events older than what the
 * state already holds (a replay after reconnecting with `since`) are ignored by id, so a
 * resumed stream never applies a transition twice.
 */

export interface StreamEvent {
  id: number;
  event_type: string;
  timestamp?: string;
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

export interface OpState {
  id: string;
  taskId: string;
  type: string;
  provider: string;
  status: string;
  progress: number;
  attempt: number;
  dependencies: string[];
  message: string | null;
  output: string | null;
  error: string | null;
  startedAt: string | null;
  completedAt: string | null;
}

export interface RollbackInfo {
  running: boolean;
  rollbackId: string | null;
  executed: number | null;
  failed: number | null;
}

export interface BatchState {
  batchId: string;
  name: string;
  status: string;
  error: string | null;
  createdAt: string | null;
  completedAt: string | null;
  rollbackEnabled: boolean;
  rollback: unknown;
  order: string[];
  ops: Record<string, OpState>;
  byTask: Record<string, string>;
  lastEventId: number;
  liveRollback: RollbackInfo | null;
  /** Operations the batch has, when the API answered a summary without them. */
  totalOperations: number | null;
  counts: Record<string, number> | null;
}

type Json = Record<string, unknown>;

const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
const num = (v: unknown, d = 0): number => (typeof v === "number" && Number.isFinite(v) ? v : d);

function depIds(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.map((d) => (typeof d === "string" ? d : d && typeof d === "object" ? str((d as Json).id) : null)).filter((d): d is string => d !== null);
}

export function opFromApi(o: Json): OpState {
  return {
    id: String(o.id),
    taskId: String(o.task_id ?? o.id),
    type: str(o.type) ?? "",
    provider: str(o.provider) ?? "",
    status: str(o.status) ?? "Pending",
    progress: num(o.progress),
    attempt: num(o.attempt),
    dependencies: depIds(o.dependencies),
    message: str(o.message),
    output: str(o.output),
    error: str(o.error),
    startedAt: str(o.started_at),
    completedAt: str(o.completed_at),
  };
}

/** The state of `GET /batch/operations/{id}`'s answer. */
export function batchFromApi(b: Json, lastEventId = 0): BatchState {
  const ops: Record<string, OpState> = {};
  const byTask: Record<string, string> = {};
  const order: string[] = [];
  for (const raw of Array.isArray(b.operations) ? (b.operations as Json[]) : []) {
    const op = opFromApi(raw);
    ops[op.id] = op;
    byTask[op.taskId] = op.id;
    order.push(op.id);
  }
  const counts = b.counts && typeof b.counts === "object" ? (b.counts as Record<string, number>) : null;
  return {
    batchId: String(b.batch_id),
    name: str(b.name) ?? String(b.batch_id),
    status: str(b.status) ?? "Running",
    error: str(b.error),
    createdAt: str(b.created_at),
    completedAt: str(b.completed_at),
    rollbackEnabled: b.rollback_enabled === true,
    rollback: b.rollback ?? null,
    order,
    ops,
    byTask,
    lastEventId,
    liveRollback: null,
    totalOperations: typeof b.total_operations === "number" ? b.total_operations : null,
    counts,
  };
}

function field(ev: StreamEvent, name: string): unknown {
  return ev.data[name] ?? ev.metadata?.[name];
}

function belongs(state: BatchState, ev: StreamEvent): boolean {
  const wid = field(ev, "workflow_id") ?? field(ev, "batch_id");
  if (wid === state.batchId) return true;
  const wids = ev.data.workflow_ids;
  return Array.isArray(wids) && wids.includes(state.batchId);
}

/** Patch one operation in place: `state.ops` is the copy {@link applyEvents} made. */
function patchOp(state: BatchState, ev: StreamEvent, patch: (op: OpState) => OpState): BatchState {
  const taskId = str(field(ev, "task_id"));
  const opId = (taskId && state.byTask[taskId]) || str(field(ev, "operation_id"));
  if (!opId || !state.ops[opId]) return state;
  state.ops[opId] = patch(state.ops[opId]);
  return state;
}

/** Fold one event into a batch's state; events for other batches and replays are ignored. */
export function applyEvent(state: BatchState, ev: StreamEvent): BatchState {
  return applyEvents(state, [ev]);
}

/**
 * Fold events, in order, into a batch's state (pure: the given state is not changed).
 * The operations map is copied once per call, not per event, so a burst of thousands of
 * events from a big batch costs one copy.
 */
export function applyEvents(state: BatchState, events: StreamEvent[]): BatchState {
  const fresh = events.filter((ev) => typeof ev.id !== "number" || ev.id > state.lastEventId);
  if (!fresh.length) return state;
  let next: BatchState = { ...state, ops: { ...state.ops } };
  for (const ev of fresh) next = step(next, ev);
  return next;
}

function step(state: BatchState, ev: StreamEvent): BatchState {
  if (typeof ev.id === "number" && ev.id <= state.lastEventId) return state;
  const next = { ...state, lastEventId: typeof ev.id === "number" ? ev.id : state.lastEventId };
  if (!belongs(state, ev) && ev.event_type !== "TaskStatusChanged") return next;
  switch (ev.event_type) {
    case "TaskStatusChanged":
      return patchOp(next, ev, (op) => {
        const status = str(field(ev, "status")) ?? op.status;
        const d = ev.data;
        return {
          ...op,
          status,
          attempt: num(d.attempt, op.attempt),
          progress: status === "Completed" ? 100 : num(d.progress, op.progress),
          error: "error" in d ? str(d.error) : op.error,
          output: "output" in d ? str(d.output) : op.output,
          startedAt: str(d.started_at) ?? op.startedAt,
          completedAt: str(d.completed_at) ?? op.completedAt,
          message: status === "Running" ? op.message : null,
        };
      });
    case "OperationProgress":
      return patchOp(next, ev, (op) => ({
        ...op,
        progress: num(ev.data.progress, op.progress),
        message: str(ev.data.message) ?? op.message,
      }));
    case "BatchStatusChanged": {
      const status = str(field(ev, "status")) ?? next.status;
      return {
        ...next,
        status,
        error: "error" in ev.data ? str(ev.data.error) : next.error,
        rollback: ev.data.rollback ?? next.rollback,
        completedAt: str(ev.data.completed_at) ?? next.completedAt,
      };
    }
    case "RollbackStarted":
      return {
        ...next,
        liveRollback: { running: true, rollbackId: str(ev.data.rollback_id), executed: null, failed: null },
      };
    case "RollbackCompleted":
      return {
        ...next,
        liveRollback: {
          running: false,
          rollbackId: str(ev.data.rollback_id),
          executed: typeof ev.data.operations_executed === "number" ? ev.data.operations_executed : null,
          failed: typeof ev.data.operations_failed === "number" ? ev.data.operations_failed : null,
        },
      };
    default:
      return next;
  }
}

/** Operations by status. */
export function countByStatus(state: BatchState): Record<string, number> {
  if (state.order.length === 0 && state.counts) return { ...state.counts };
  const counts: Record<string, number> = {};
  for (const id of state.order) {
    const s = state.ops[id].status;
    counts[s] = (counts[s] ?? 0) + 1;
  }
  return counts;
}

/**
 * What a rollback of `selected` would undo and in which order, as the orchestrator does it:
 * the selected operations and every completed dependent of theirs, dependents first.
 */
export function rollbackPlan(state: BatchState, selected: string[]): string[] {
  const dependents: Record<string, string[]> = {};
  for (const id of state.order) {
    for (const dep of state.ops[id].dependencies) (dependents[dep] ??= []).push(id);
  }
  const chosen = new Set<string>();
  const stack = [...selected];
  while (stack.length) {
    const id = stack.pop() as string;
    if (chosen.has(id) || !state.ops[id]) continue;
    if (state.ops[id].status !== "Completed") continue;
    chosen.add(id);
    stack.push(...(dependents[id] ?? []));
  }
  // Dependents first: deepest layer first, latest completion first within a layer.
  const depth = depths(state.order.map((id) => ({ id, dependencies: state.ops[id].dependencies })));
  return [...chosen].sort((a, b) => {
    const d = (depth.get(b) ?? 0) - (depth.get(a) ?? 0);
    if (d !== 0) return d;
    return (state.ops[b].completedAt ?? "").localeCompare(state.ops[a].completedAt ?? "");
  });
}

/**
 * Longest-path depth of every node (0 for roots), by Kahn's algorithm (no recursion, so a
 * 5,000-long chain is fine). Nodes on a cycle, never freed, go one layer past the deepest
 * dependency already placed, so a cycle can still be drawn.
 */
export function depths(nodes: { id: string; dependencies: string[] }[]): Map<string, number> {
  const known = new Set(nodes.map((n) => n.id));
  const deps = new Map(nodes.map((n) => [n.id, [...new Set(n.dependencies)].filter((d) => d !== n.id && known.has(d))]));
  const dependents = new Map<string, string[]>();
  const waiting = new Map<string, number>();
  for (const [id, ds] of deps) {
    waiting.set(id, ds.length);
    for (const d of ds) {
      const list = dependents.get(d);
      if (list) list.push(id);
      else dependents.set(d, [id]);
    }
  }
  const depth = new Map<string, number>();
  const queue = nodes.filter((n) => waiting.get(n.id) === 0).map((n) => n.id);
  for (const id of queue) depth.set(id, 0);
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    const d = depth.get(id) ?? 0;
    for (const next of dependents.get(id) ?? []) {
      depth.set(next, Math.max(depth.get(next) ?? 0, d + 1));
      const left = (waiting.get(next) ?? 0) - 1;
      waiting.set(next, left);
      if (left === 0) queue.push(next);
    }
  }
  for (const n of nodes) {
    if (waiting.get(n.id) === 0) continue;
    let d = 0;
    for (const dep of deps.get(n.id) ?? []) if (waiting.get(dep) === 0) d = Math.max(d, (depth.get(dep) ?? 0) + 1);
    depth.set(n.id, d);
  }
  return depth;
}
