/** Paste or upload a batch (JSON or YAML), validate and plan it in check mode, then execute it. */

import { useMemo, useState, type ChangeEvent } from "react";
import { ApiError } from "../lib/api";
import { parseBatch, placeProblems, ParseError, type ParsedBatch, type PlacedProblems } from "../lib/submit";
import { useApp } from "../context";
import { useNavigate } from "../router";
import { Dag } from "../components/Dag";
import { DataTable } from "../components/data";
import { ErrorBox, Notice } from "../components/ui";
import { can } from "../lib/perms";

interface Plan {
  name: string;
  parallel_limit: number;
  generations: string[][];
  operations: { id: string; provider: string; implementation: string; command: string; args: string[]; would: string }[];
}

export function Submit() {
  const { api, me } = useApp();
  const navigate = useNavigate();
  const [text, setText] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [problems, setProblems] = useState<PlacedProblems | null>(null);
  const [cycle, setCycle] = useState<string[] | null>(null);
  const [plan, setPlan] = useState<Plan | null>(null);
  const [busy, setBusy] = useState(false);

  const parsed: ParsedBatch | null = useMemo(() => {
    try {
      return parseBatch(text);
    } catch {
      return null;
    }
  }, [text]);

  const upload = async (e: ChangeEvent<HTMLInputElement>) => {
    const file = e.target.files?.[0];
    if (!file) return;
    if (file.size > 10 * 1024 * 1024) {
      setError(new Error("the file is larger than 10 MB"));
      return;
    }
    setText(await file.text());
    reset();
  };

  const reset = () => {
    setError(null);
    setProblems(null);
    setCycle(null);
    setPlan(null);
  };

  const send = async (checkMode: boolean) => {
    reset();
    let batch: ParsedBatch;
    try {
      batch = parseBatch(text);
    } catch (e) {
      setError(e instanceof ParseError ? e : new Error(String(e)));
      return;
    }
    setBusy(true);
    try {
      const body = { ...batch.doc, check_mode: checkMode };
      if (checkMode) {
        const r = await api.post<{ plan: Plan }>("orch", "/batch/execute", body);
        setPlan(r.plan);
      } else {
        const r = await api.post<{ batch_id: string }>("orch", "/batch/execute", body);
        navigate(`/batches/${encodeURIComponent(r.batch_id)}`);
      }
    } catch (e) {
      setError(e);
      if (e instanceof ApiError) {
        if (e.fields.length) setProblems(placeProblems(e.fields, batch.ops));
        if (e.cycle) setCycle(e.cycle);
      }
    } finally {
      setBusy(false);
    }
  };

  const ops = parsed?.ops ?? [];
  const opProblems = problems ? Object.entries(problems.byOperation) : [];
  return (
    <section aria-labelledby="submit-title">
      <h1 id="submit-title">Submit a batch</h1>
      <p>Paste a batch file or upload one (JSON or YAML). Validate runs it in check mode: nothing is changed, and you see the plan.</p>
      <label htmlFor="batch-file">Upload a file</label> <input id="batch-file" type="file" accept=".json,.yaml,.yml,application/json,text/yaml" onChange={(e) => void upload(e)} />
      <label htmlFor="batch-text">Batch file</label>
      <textarea
        id="batch-text"
        rows={16}
        spellCheck={false}
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          reset();
        }}
        aria-describedby="batch-text-hint"
      />
      <p id="batch-text-hint" className="muted">
        {parsed ? `${ops.length} operation${ops.length === 1 ? "" : "s"} read.` : text.trim() ? "Not readable yet as JSON or YAML." : ""}
      </p>
      <div className="actions">
        <button type="button" onClick={() => void send(true)} disabled={busy || !text.trim()}>
          Validate and plan
        </button>
        {can(me, "batch", "execute") ? (
          <button type="button" className="primary" onClick={() => void send(false)} disabled={busy || !text.trim()}>
            Execute
          </button>
        ) : null}
      </div>
      <ErrorBox error={error} title="Refused" />
      {problems ? (
        <section aria-labelledby="problems-title" className="problems">
          <h2 id="problems-title">Problems</h2>
          {problems.batch.length ? (
            <ul>
              {problems.batch.map((p, i) => (
                <li key={i}>
                  <code>{p.field}</code>: {p.message}
                </li>
              ))}
            </ul>
          ) : null}
          {opProblems.length ? (
            <ul className="op-problems">
              {opProblems.map(([op, list]) => (
                <li key={op} data-operation={op}>
                  Operation <strong>{op}</strong>
                  <ul>
                    {list.map((p, i) => (
                      <li key={i}>
                        <code>{p.field}</code>: {p.message}
                      </li>
                    ))}
                  </ul>
                </li>
              ))}
            </ul>
          ) : null}
        </section>
      ) : null}
      {cycle ? (
        <Notice>
          Dependency cycle: <strong>{cycle.join(" → ")}</strong> (drawn in the graph below).
        </Notice>
      ) : null}
      {ops.length ? <Dag ops={ops.map((o) => ({ ...o, status: "Pending" }))} cycle={cycle} label="dependency graph of the batch file" /> : null}
      {plan ? (
        <section aria-labelledby="plan-title">
          <h2 id="plan-title">Plan of {plan.name}</h2>
          <p>
            {plan.generations.length} generation{plan.generations.length === 1 ? "" : "s"}, at most {plan.parallel_limit} at once.
          </p>
          <ol className="generations">
            {plan.generations.map((g, i) => (
              <li key={i}>
                Generation {i + 1}: {g.join(", ")}
              </li>
            ))}
          </ol>
          <DataTable caption="what each operation would do" columns={["Operation", "Provider", "Would"]}>
            {plan.operations.map((o) => (
              <tr key={o.id}>
                <td>{o.id}</td>
                <td>
                  {o.provider}
                  {o.implementation && o.implementation !== o.provider ? <span className="muted"> ({o.implementation})</span> : null}
                </td>
                <td>{o.would}</td>
              </tr>
            ))}
          </DataTable>
        </section>
      ) : null}
    </section>
  );
}
