/** One batch: its live DAG, node details, snapshots, journal and rollback; cancel, checkpoint, rollback. */

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useApp } from "../context";
import { applyEvents, batchFromApi, countByStatus, rollbackPlan, type BatchState, type StreamEvent } from "../lib/events";
import { commandText, undoOf, type TaskCommand } from "../lib/commands";
import { can } from "../lib/perms";
import { useLive } from "../live";
import { Dag } from "../components/Dag";
import { EXPAND_STEP } from "../lib/graph";
import { LiveBadge } from "../components/LiveBadge";
import { DataTable, Fetched, useAction } from "../components/data";
import { Counts, Dialog, ErrorBox, Loading, ProgressBar, StatusBadge, duration, when } from "../components/ui";
import { Link } from "../router";

const TABLE_PAGE = 200;
const FLUSH_MS = 150;

interface TaskDetail extends TaskCommand {
  max_attempts: number;
  created_at: string;
  results: unknown;
  message: string | null;
}

export function BatchPage({ id }: { id: string }) {
  const { api, me, announce } = useApp();
  const [state, setState] = useState<BatchState | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [chosen, setChosen] = useState<Set<string>>(new Set());
  const [expanded, setExpanded] = useState<Map<number, number>>(new Map());
  const [confirm, setConfirm] = useState<null | "cancel" | "rollback">(null);
  const [tab, setTab] = useState<"details" | "snapshots" | "journal" | "rollback">("details");
  const [tableLimit, setTableLimit] = useState(TABLE_PAGE);
  const [filter, setFilter] = useState("");
  const loading = useRef(false);
  const buffer = useRef<StreamEvent[] | null>([]);

  const load = useCallback(async () => {
    if (loading.current) return;
    loading.current = true;
    buffer.current = buffer.current ?? [];
    try {
      const b = await api.get<Record<string, unknown>>("orch", `/batch/operations/${encodeURIComponent(id)}`);
      setState(applyEvents(batchFromApi(b), buffer.current));
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      buffer.current = null;
      loading.current = false;
    }
  }, [api, id]);

  const kinds = ["task", "batch", ...(can(me, "rollback", "read") ? ["rollback"] : [])].join(",");
  // Events are folded in at most every FLUSH_MS, in one render: a 5,000-operation batch
  // sends two events per operation, and a render per event would stall the page.
  const pending = useRef<StreamEvent[]>([]);
  const flushTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const flush = useCallback(() => {
    flushTimer.current = null;
    const events = pending.current;
    pending.current = [];
    setState((s) => {
      if (!s) return s;
      const next = applyEvents(s, events);
      if (next.status !== s.status) announce(`Batch ${next.name} is now ${next.status}`);
      return next;
    });
  }, [announce]);
  useEffect(
    () => () => {
      if (flushTimer.current) clearTimeout(flushTimer.current);
    },
    [],
  );
  const onEvent = useCallback(
    (ev: StreamEvent) => {
      if (buffer.current) buffer.current.push(ev);
      else {
        pending.current.push(ev);
        flushTimer.current ??= setTimeout(flush, FLUSH_MS);
      }
    },
    [flush],
  );
  const first = useRef(true);
  const live = useLive({
    service: "orch",
    query: { events: kinds, workflow_id: id },
    onEvent,
    // Load over REST once the stream is subscribed, so no transition falls in between.
    onLive: () => {
      if (first.current) {
        first.current = false;
        void load();
      }
    },
    onGap: () => {
      buffer.current = [];
      void load();
    },
  });
  // If the stream cannot open (not allowed, unreachable), still show the batch.
  useEffect(() => {
    if (live.status === "closed" && first.current) {
      first.current = false;
      void load();
    }
  }, [live.status, load]);

  const action = useAction();
  const act = action.run;
  const ops = useMemo(() => (state ? state.order.map((o) => state.ops[o]) : []), [state]);
  const plan = useMemo(() => (state ? rollbackPlan(state, [...chosen]) : []), [state, chosen]);

  if (error && !state) return <ErrorBox error={error} title="This batch cannot be shown" />;
  if (!state) return <Loading what="the batch" />;

  const counts = countByStatus(state);
  const total = state.order.length || state.totalOperations || 0;
  const finished = (counts.Completed ?? 0) + (counts.Failed ?? 0) + (counts.Cancelled ?? 0) + (counts.RolledBack ?? 0);
  const progress = total ? ops.reduce((s, o) => s + (["Completed", "Failed", "Cancelled", "RolledBack"].includes(o.status) ? 100 : o.progress), 0) / total : 0;
  const running = state.status === "Running";
  const sel = selected ? state.ops[selected] : null;

  const cancel = () =>
    act(async () => {
      setConfirm(null);
      return String(await api.post<string>("orch", `/batch/operations/${encodeURIComponent(id)}/cancel`));
    });
  const checkpoint = () =>
    act(async () => {
      const cid = await api.post<string>("orch", "/rollback/checkpoints", {
        name: `manual ${state.name} ${new Date().toISOString()}`,
        description: `created from the batch page of ${state.name}`,
      });
      return `Checkpoint created: ${cid}`;
    });
  const rollback = () =>
    act(async () => {
      setConfirm(null);
      const r = await api.post<{ operations_executed: number; operations_failed: number }>("orch", "/rollback/execute", {
        operation_ids: [...chosen],
        workflow_id: id,
      });
      setChosen(new Set());
      return `Rollback finished: ${r.operations_executed} undone, ${r.operations_failed} failed`;
    });

  const toggle = (opId: string) =>
    setChosen((c) => {
      const n = new Set(c);
      if (n.has(opId)) n.delete(opId);
      else n.add(opId);
      return n;
    });

  const shown = ops.filter((o) => !filter || o.status === filter);
  return (
    <section aria-labelledby="batch-title">
      <p>
        <Link to="/batches">← Batches</Link>
      </p>
      <div className="page-head">
        <h1 id="batch-title">{state.name}</h1>
        <StatusBadge status={state.status} />
        <LiveBadge status={live.status} detail={live.detail} />
      </div>
      <div className="batch-summary">
        <ProgressBar value={progress} label={`progress of ${state.name}`} />
        <span>
          {finished} of {total} finished
        </span>
        <Counts counts={counts} />
      </div>
      {state.error ? <p className="error-text">Error: {state.error}</p> : null}
      <div className="actions">
        {running && can(me, "batch", "cancel") ? (
          <button type="button" className="danger" onClick={() => setConfirm("cancel")}>
            Cancel batch
          </button>
        ) : null}
        {can(me, "rollback", "create") ? (
          <button type="button" onClick={() => void checkpoint()}>
            Create checkpoint
          </button>
        ) : null}
        {can(me, "rollback", "rollback") ? (
          <button type="button" disabled={chosen.size === 0 || running} onClick={() => setConfirm("rollback")} title={running ? "cancel or wait for the batch first" : undefined}>
            Roll back selected ({chosen.size})
          </button>
        ) : null}
      </div>
      {action.outcome}
      <Dag
        ops={ops}
        selected={selected}
        onSelect={(o) => {
          setSelected(o);
          setTab("details");
        }}
        expanded={expanded}
        onExpand={(d) => setExpanded((e) => new Map(e).set(d, (e.get(d) ?? 0) + EXPAND_STEP))}
        label={`dependency graph of ${state.name}`}
      />
      <div className="tabs" role="tablist" aria-label="batch details">
        {(["details", "snapshots", "journal", "rollback"] as const).map((t) => (
          <button key={t} role="tab" type="button" id={`tab-${t}`} aria-selected={tab === t} aria-controls={`panel-${t}`} onClick={() => setTab(t)}>
            {t === "details" ? "Operation" : t === "rollback" ? "Rollback" : t[0].toUpperCase() + t.slice(1)}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="panel">
        {tab === "details" ? sel ? <OpDetails op={sel} /> : <p className="muted">Select an operation in the graph or the table below.</p> : null}
        {tab === "snapshots" ? <Snapshots id={id} /> : null}
        {tab === "journal" ? <Journal id={id} /> : null}
        {tab === "rollback" ? (
          <div>
            {state.liveRollback ? (
              <p>{state.liveRollback.running ? "A rollback is running…" : `Last rollback: ${state.liveRollback.executed ?? 0} undone, ${state.liveRollback.failed ?? 0} failed.`}</p>
            ) : null}
            {state.rollback ? <pre className="json">{JSON.stringify(state.rollback, null, 2)}</pre> : <p className="muted">This batch has not been rolled back.</p>}
          </div>
        ) : null}
      </div>
      <h2>Operations</h2>
      <label htmlFor="op-filter">Show</label>{" "}
      <select id="op-filter" value={filter} onChange={(e) => setFilter(e.target.value)}>
        <option value="">all statuses</option>
        {Object.keys(counts).map((s) => (
          <option key={s} value={s}>
            {s}
          </option>
        ))}
      </select>
      <DataTable className="ops" caption={`operations of ${state.name}`} columns={["Roll back", "Operation", "Status", "Provider", "Attempt", "Duration"]}>
        {shown.slice(0, tableLimit).map((o) => (
          <tr key={o.id} className={selected === o.id ? "is-selected" : undefined}>
            <td>
              <input type="checkbox" aria-label={`roll back ${o.id}`} checked={chosen.has(o.id)} disabled={o.status !== "Completed"} onChange={() => toggle(o.id)} />
            </td>
            <td>
              <button
                type="button"
                className="linkish"
                onClick={() => {
                  setSelected(o.id);
                  setTab("details");
                }}
              >
                {o.id}
              </button>
            </td>
            <td>
              <StatusBadge status={o.status} />
            </td>
            <td>{o.provider}</td>
            <td>{o.attempt}</td>
            <td>{duration(o.startedAt, o.completedAt)}</td>
          </tr>
        ))}
      </DataTable>
      {shown.length > tableLimit ? (
        <button type="button" onClick={() => setTableLimit((n) => n + TABLE_PAGE)}>
          Show {Math.min(TABLE_PAGE, shown.length - tableLimit)} more of {shown.length - tableLimit}
        </button>
      ) : null}
      <Dialog title="Cancel this batch?" open={confirm === "cancel"} onClose={() => setConfirm(null)}>
        <p>Running operations are stopped and every unfinished operation is marked Cancelled.</p>
        <div className="actions">
          <button type="button" className="danger" onClick={() => void cancel()}>
            Cancel the batch
          </button>
          <button type="button" onClick={() => setConfirm(null)} autoFocus>
            Keep it running
          </button>
        </div>
      </Dialog>
      <Dialog title="Roll back these operations?" open={confirm === "rollback"} onClose={() => setConfirm(null)}>
        <p>These operations will be undone, in this order (dependents first):</p>
        <ol className="rollback-plan">
          {plan.map((o) => (
            <li key={o}>
              <strong>{o}</strong> <span className="muted">({state.ops[o]?.provider})</span>
            </li>
          ))}
        </ol>
        <div className="actions">
          <button type="button" className="danger" onClick={() => void rollback()}>
            Roll back {plan.length} operation{plan.length === 1 ? "" : "s"}
          </button>
          <button type="button" onClick={() => setConfirm(null)} autoFocus>
            Do not roll back
          </button>
        </div>
      </Dialog>
    </section>
  );
}

function OpDetails({ op }: { op: BatchState["ops"][string] }) {
  const { api } = useApp();
  const [task, setTask] = useState<TaskDetail | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    setTask(null);
    api.get<TaskDetail>("orch", `/tasks/${encodeURIComponent(op.taskId)}`).then(setTask, setError);
  }, [api, op.taskId, op.status]);
  const results = task?.results && typeof task.results === "object" ? (task.results as Record<string, unknown>) : null;
  const undo = task ? undoOf(task) : null;
  return (
    <div className="op-details" aria-live="polite">
      <h3>
        {op.id} <StatusBadge status={op.status} />
      </h3>
      <dl className="kv">
        <dt>Type</dt>
        <dd>{op.type}</dd>
        <dt>Provider</dt>
        <dd>{op.provider}</dd>
        <dt>Attempts</dt>
        <dd>
          {op.attempt}
          {task ? ` of ${task.max_attempts}` : ""}
        </dd>
        <dt>Progress</dt>
        <dd>
          {Math.round(op.progress)}% {op.message ? <span className="muted">— {op.message}</span> : null}
        </dd>
        <dt>Started</dt>
        <dd>{when(op.startedAt)}</dd>
        <dt>Finished</dt>
        <dd>{when(op.completedAt)}</dd>
        <dt>Duration</dt>
        <dd>{duration(op.startedAt, op.completedAt)}</dd>
        <dt>Depends on</dt>
        <dd>{op.dependencies.length ? op.dependencies.join(", ") : "nothing"}</dd>
        <dt>Command</dt>
        <dd>{task ? <code>{commandText(task)}</code> : "…"}</dd>
        <dt>Undo</dt>
        <dd>{undo ? "argv" in undo ? <code>{undo.argv}</code> : <span className="muted">{undo.note}</span> : "…"}</dd>
      </dl>
      <ErrorBox error={error} />
      {op.error ? (
        <>
          <h4>Error</h4>
          <pre className="output error-text">{op.error}</pre>
        </>
      ) : null}
      <h4>Output</h4>
      <pre className="output">{op.output ?? "(none yet)"}</pre>
      {results ? (
        <>
          <h4>Results</h4>
          <pre className="json">{JSON.stringify(results, null, 2)}</pre>
        </>
      ) : null}
    </div>
  );
}

interface Snapshot {
  snapshot_id: string;
  timestamp: string;
  state: Record<string, unknown>;
  details: Record<string, unknown>;
}

function Snapshots({ id }: { id: string }) {
  const { api } = useApp();
  return (
    <Fetched key={id} what="snapshots" load={() => api.get<Snapshot[]>("orch", `/state/workflows/${encodeURIComponent(id)}/snapshots`)}>
      {(rows) => (
        <ol className="plain">
          {rows.map((s) => (
            <li key={s.snapshot_id}>
              <details>
                <summary>
                  {when(s.timestamp)} — {String(s.details?.reason ?? s.details?.milestone ?? s.state?.status ?? "snapshot")}
                </summary>
                <pre className="json">{JSON.stringify(s, null, 2)}</pre>
              </details>
            </li>
          ))}
        </ol>
      )}
    </Fetched>
  );
}

interface JournalEntry {
  seq: number;
  at: string;
  entity_kind: string;
  name: string;
  from: string | null;
  to: string;
  attempt: number | null;
  note: string | null;
}

function Journal({ id }: { id: string }) {
  const { api } = useApp();
  const [limit, setLimit] = useState(300);
  return (
    <Fetched key={id} what="the journal" load={() => api.get<JournalEntry[]>("orch", `/state/workflows/${encodeURIComponent(id)}/journal`)}>
      {(rows) => (
        <>
          <DataTable caption="journal" columns={["#", "At", "What", "From", "To", "Note"]}>
            {rows.slice(0, limit).map((e) => (
              <tr key={`${e.seq}-${e.name}`}>
                <td>{e.seq}</td>
                <td>{when(e.at)}</td>
                <td>
                  {e.entity_kind} {e.name}
                </td>
                <td>{e.from ?? "—"}</td>
                <td>{e.to}</td>
                <td>{e.note ?? ""}</td>
              </tr>
            ))}
          </DataTable>
          {rows.length > limit ? (
            <button type="button" onClick={() => setLimit((n) => n + 300)}>
              Show more ({rows.length - limit} left)
            </button>
          ) : null}
        </>
      )}
    </Fetched>
  );
}
