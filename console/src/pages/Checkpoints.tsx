/** Checkpoints: create one, roll back to one (with the list of what is undone), restore one. */

import { useState, type FormEvent } from "react";
import { useApp } from "../context";
import { can } from "../lib/perms";
import { ListTable, Page, TextField, useAction, usePaged } from "../components/data";
import { Dialog, Loading, when } from "../components/ui";
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
  const { api, me } = useApp();
  const list = usePaged<Checkpoint>("orch", "/rollback/checkpoints?limit=50");
  const action = useAction(list.reload);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [target, setTarget] = useState<{ cp: Checkpoint; kind: "rollback" | "restore" } | null>(null);
  const [onlyBatch, setOnlyBatch] = useState(true);
  const [batches, setBatches] = useState<BatchWithOps[] | null>(null);

  const open = async (cp: Checkpoint, kind: "rollback" | "restore") => {
    setTarget({ cp, kind });
    setOnlyBatch(cp.workflow_id !== null);
    setBatches(null);
    if (kind === "rollback") {
      try {
        setBatches((await api.page<BatchWithOps>("orch", "/batch/operations?limit=100")).items);
      } catch (e) {
        list.setError(e);
      }
    }
  };

  const create = (e: FormEvent) => {
    e.preventDefault();
    void action.run(async () => {
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
    void action.run(async () => {
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
    <Page id="cp-title" title="Checkpoints">
      {action.outcome}
      {can(me, "rollback", "create") ? (
        <form onSubmit={create} className="inline-form" aria-label="create a checkpoint">
          <TextField id="cp-name" label="Name" value={name} onChange={(e) => setName(e.target.value)} required maxLength={200} />
          <TextField id="cp-desc" label="Description" value={description} onChange={(e) => setDescription(e.target.value)} maxLength={2000} />
          <button type="submit" className="primary">
            Create checkpoint
          </button>
        </form>
      ) : null}
      <ListTable
        list={list}
        what="checkpoints"
        columns={["Name", "Created", "Batch", "Journal position", "Actions"]}
        row={(c) => (
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
        )}
      />
      <Dialog title={target?.kind === "restore" ? "Restore this checkpoint?" : "Roll back to this checkpoint?"} open={target !== null} onClose={() => setTarget(null)}>
        {target?.kind === "restore" ? (
          <p>
            The recorded state goes back to <strong>{target.cp.name}</strong>: every task and batch that changed since returns to its status then. No provider runs: nothing in the infrastructure is
            undone.
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
    </Page>
  );
}
