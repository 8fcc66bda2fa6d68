/** Checkpoints: create one, roll back to one (with the list of what is undone), restore one. */

import { useEffect, useState, type FormEvent } from "react";
import { useApp } from "../context";
import { can } from "../lib/perms";
import { Dialog, ErrorBox, Loading, Notice, when } from "../components/ui";
import { Link } from "../router";

interface Checkpoint {
  id: string;
  name: string;
  description: string | null;
  created_at: string;
  size: string;
  journal_seq: number;
  workflow_id: string | null;
  automatic: boolean;
}

interface BatchWithOps {
  batch_id: string;
  name: string;
  operations?: { id: string; status: string; completed_at: string | null }[];
}

interface Undo {
  batch: string;
  op: string;
  at: string;
}

/** What a rollback to `cp` undoes, latest completion first, from the batches' operations. */
export function undoneAfter(cp: Checkpoint, batches: BatchWithOps[], onlyBatch: string | null): Undo[] {
  const out: Undo[] = [];
  for (const b of batches) {
    if (onlyBatch && b.batch_id !== onlyBatch) continue;
    for (const o of b.operations ?? []) {
      if (o.status === "Completed" && o.completed_at && o.completed_at > cp.created_at) out.push({ batch: b.name, op: o.id, at: o.completed_at });
    }
  }
  return out.sort((a, b) => b.at.localeCompare(a.at));
}

export function Checkpoints() {
  const { api, me, announce } = useApp();
  const [items, setItems] = useState<Checkpoint[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [target, setTarget] = useState<{ cp: Checkpoint; kind: "rollback" | "restore" } | null>(null);
  const [onlyBatch, setOnlyBatch] = useState(true);
  const [batches, setBatches] = useState<BatchWithOps[] | null>(null);
  const [n, setN] = useState(0);

  useEffect(() => {
    api.page<Checkpoint>("orch", "/rollback/checkpoints?limit=50").then(
      (p) => {
        setItems(p.items);
        setNext(p.next);
        setError(null);
      },
      setError,
    );
  }, [api, n]);

  const open = async (cp: Checkpoint, kind: "rollback" | "restore") => {
    setTarget({ cp, kind });
    setOnlyBatch(cp.workflow_id !== null);
    setBatches(null);
    if (kind === "rollback") {
      try {
        setBatches((await api.page<BatchWithOps>("orch", "/batch/operations?limit=100")).items);
      } catch (e) {
        setActionError(e);
      }
    }
  };

  const run = async (what: () => Promise<string>) => {
    setActionError(null);
    setNotice(null);
    try {
      const m = await what();
      setNotice(m);
      announce(m);
      setN((x) => x + 1);
    } catch (e) {
      setActionError(e);
    }
  };

  const create = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const id = await api.post<string>("orch", "/rollback/checkpoints", { name, description: description || undefined });
      setName("");
      setDescription("");
      return `Checkpoint ${name} created (${id})`;
    });
  };

  const confirm = () => {
    if (!target) return;
    const { cp, kind } = target;
    setTarget(null);
    void run(async () => {
      if (kind === "restore") return String(await api.post<string>("orch", `/rollback/restore/${encodeURIComponent(cp.id)}`, {}));
      const body: Record<string, string> = { checkpoint_id: cp.id };
      if (onlyBatch && cp.workflow_id) body.workflow_id = cp.workflow_id;
      const r = await api.post<{ operations_executed: number; operations_failed: number }>("orch", "/rollback/execute", body);
      return `Rolled back to ${cp.name}: ${r.operations_executed} undone, ${r.operations_failed} failed`;
    });
  };

  const mayRollback = can(me, "rollback", "rollback");
  const undo = target && batches ? undoneAfter(target.cp, batches, onlyBatch ? target.cp.workflow_id : null) : null;
  return (
    <section aria-labelledby="cp-title">
      <h1 id="cp-title">Checkpoints</h1>
      {notice ? <Notice>{notice}</Notice> : null}
      <ErrorBox error={actionError} />
      {can(me, "rollback", "create") ? (
        <form onSubmit={create} className="inline-form" aria-label="create a checkpoint">
          <label htmlFor="cp-name">Name</label>
          <input id="cp-name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={200} />
          <label htmlFor="cp-desc">Description</label>
          <input id="cp-desc" value={description} onChange={(e) => setDescription(e.target.value)} maxLength={2000} />
          <button type="submit" className="primary">
            Create checkpoint
          </button>
        </form>
      ) : null}
      <ErrorBox error={error} />
      {!items ? (
        error ? null : <Loading what="checkpoints" />
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">checkpoints</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Created</th>
                <th scope="col">Batch</th>
                <th scope="col">Journal position</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {items.map((c) => (
                <tr key={c.id}>
                  <td>
                    {c.name} {c.automatic ? <span className="muted">(automatic)</span> : null}
                    {c.description ? <div className="muted">{c.description}</div> : null}
                  </td>
                  <td>{when(c.created_at)}</td>
                  <td>{c.workflow_id ? <Link to={`/batches/${encodeURIComponent(c.workflow_id)}`}>open</Link> : "—"}</td>
                  <td>{c.journal_seq}</td>
                  <td>
                    {mayRollback ? (
                      <>
                        <button type="button" onClick={() => void open(c, "rollback")}>
                          Roll back to here
                        </button>{" "}
                        <button type="button" onClick={() => void open(c, "restore")}>
                          Restore
                        </button>
                      </>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {next ? (
        <button
          type="button"
          onClick={() =>
            void api.page<Checkpoint>("orch", next).then((p) => {
              setItems((old) => [...(old ?? []), ...p.items]);
              setNext(p.next);
            }, setError)
          }
        >
          Load more
        </button>
      ) : null}
      <Dialog title={target?.kind === "restore" ? "Restore this checkpoint?" : "Roll back to this checkpoint?"} open={target !== null} onClose={() => setTarget(null)}>
        {target?.kind === "restore" ? (
          <p>
            The recorded state goes back to <strong>{target.cp.name}</strong>: every task and batch that changed since returns to its status then. No provider runs: nothing
            in the infrastructure is undone.
          </p>
        ) : target ? (
          <>
            {target.cp.workflow_id ? (
              <label className="check">
                <input type="checkbox" checked={onlyBatch} onChange={(e) => setOnlyBatch(e.target.checked)} /> Only this checkpoint's batch
              </label>
            ) : null}
            <p>These operations, completed after {when(target.cp.created_at)}, will be undone in this order (latest completion first):</p>
            {undo === null ? (
              <Loading what="the operations" />
            ) : undo.length ? (
              <ol className="rollback-plan">
                {undo.map((u) => (
                  <li key={`${u.batch}/${u.op}`}>
                    <strong>{u.op}</strong> <span className="muted">of {u.batch}</span>
                  </li>
                ))}
              </ol>
            ) : (
              <p className="muted">No completed operation found among the latest 100 batches.</p>
            )}
          </>
        ) : null}
        <div className="actions">
          <button type="button" className="danger" onClick={confirm}>
            {target?.kind === "restore" ? "Restore" : "Roll back"}
          </button>
          <button type="button" onClick={() => setTarget(null)} autoFocus>
            Keep things as they are
          </button>
        </div>
      </Dialog>
    </section>
  );
}
