/** The audit log: the seed's filters, a live tail, NDJSON and CSV export, chain verification. */

import { useState, type FormEvent } from "react";
import { useApp } from "../../context";
import { useDebounced, useLive } from "../../live";
import { LiveBadge } from "../../components/LiveBadge";
import { ListTable, usePaged } from "../../components/data";
import { ErrorBox, Notice, download, when } from "../../components/ui";

interface AuditRecord {
  id: string;
  seq: number;
  timestamp: string;
  user_id: string | null;
  username: string | null;
  action: string;
  resource: string;
  result: string;
  ip: string | null;
  service: string;
  details: Record<string, unknown>;
}

interface Verify {
  valid: boolean;
  records: number;
  broken_at?: string;
  broken_seq?: number;
  reason?: string;
}

const FILTERS = ["user_id", "action", "resource", "result", "from", "to"] as const;
type Filters = Record<(typeof FILTERS)[number], string>;
const EMPTY: Filters = { user_id: "", action: "", resource: "", result: "", from: "", to: "" };

export function auditQuery(f: Filters, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams();
  for (const k of FILTERS) {
    const v = f[k].trim();
    if (!v) continue;
    // datetime-local gives "2026-11-22T10:00": send it as UTC ISO 8601.
    q.set(k, k === "from" || k === "to" ? (/[zZ]|[+-]\d\d:?\d\d$/.test(v) ? v : `${v}:00Z`.replace(/:00:00Z$/, ":00Z")) : v);
  }
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q.toString();
}

export function Audit() {
  const { api } = useApp();
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [applied, setApplied] = useState<Filters>(EMPTY);
  const list = usePaged<AuditRecord>("cc", `/audit/logs?${auditQuery(applied, { limit: "50" })}`);
  const [exportError, setExportError] = useState<unknown>(null);
  const [verify, setVerify] = useState<Verify | null>(null);
  const [tail, setTail] = useState(true);

  const changed = useDebounced(list.reload, 500);
  const live = useLive({ service: "cc", query: { events: "security" }, enabled: tail, onEvent: changed, onGap: changed });

  const apply = (e: FormEvent) => {
    e.preventDefault();
    setApplied(filters);
  };

  const exportAs = async (format: "ndjson" | "csv") => {
    try {
      const text = await api.text("cc", `/audit/logs?${auditQuery(applied, { format })}`);
      download(`audit.${format}`, text, format === "csv" ? "text/csv" : "application/x-ndjson");
    } catch (e) {
      setExportError(e);
    }
  };

  return (
    <section aria-labelledby="audit-page-title">
      <div className="page-head">
        <h1 id="audit-page-title">Audit log</h1>
        {tail ? <LiveBadge status={live.status} detail={live.detail} /> : null}
      </div>
      <form onSubmit={apply} className="filters" aria-label="filters">
        {FILTERS.map((k) => (
          <div key={k}>
            <label htmlFor={`f-${k}`}>{k === "user_id" ? "User id" : k === "from" ? "From (UTC)" : k === "to" ? "To (UTC)" : k[0].toUpperCase() + k.slice(1)}</label>
            {k === "result" ? (
              <select id={`f-${k}`} value={filters[k]} onChange={(e) => setFilters({ ...filters, [k]: e.target.value })}>
                {["", "success", "failure", "denied", "rate_limited"].map((r) => (
                  <option key={r} value={r}>
                    {r || "any"}
                  </option>
                ))}
              </select>
            ) : (
              <input
                id={`f-${k}`}
                type={k === "from" || k === "to" ? "datetime-local" : "text"}
                value={filters[k]}
                placeholder={k === "action" ? "auth.*" : undefined}
                onChange={(e) => setFilters({ ...filters, [k]: e.target.value })}
                maxLength={200}
              />
            )}
          </div>
        ))}
        <div className="actions">
          <button type="submit" className="primary">
            Apply filters
          </button>
          <button
            type="button"
            onClick={() => {
              setFilters(EMPTY);
              setApplied(EMPTY);
            }}
          >
            Clear
          </button>
        </div>
      </form>
      <div className="actions">
        <label className="check">
          <input type="checkbox" checked={tail} onChange={(e) => setTail(e.target.checked)} /> Live tail
        </label>
        <button type="button" onClick={() => void exportAs("ndjson")}>
          Export NDJSON
        </button>
        <button type="button" onClick={() => void exportAs("csv")}>
          Export CSV
        </button>
        <button type="button" onClick={() => void api.get<Verify>("cc", "/audit/verify").then(setVerify, setExportError)}>
          Verify the chain
        </button>
      </div>
      {verify ? (
        verify.valid ? (
          <Notice>✓ The chain is intact: {verify.records} records verified.</Notice>
        ) : (
          <div className="error" role="alert">
            ✗ The chain is broken at record {verify.broken_seq} ({verify.broken_at}): {verify.reason}. {verify.records} records verified before it.
          </div>
        )
      ) : null}
      <ErrorBox error={exportError} />
      {list.total !== null ? <p className="muted">{list.total} records match.</p> : null}
      <ListTable
        list={list}
        what="the audit log"
        columns={["#", "Time", "User", "Action", "Resource", "Result", "Service"]}
        row={(r) => (
          <tr key={r.id}>
            <td>{r.seq}</td>
            <td>{when(r.timestamp)}</td>
            <td>{r.username ?? "—"}</td>
            <td>
              <details>
                <summary>{r.action}</summary>
                <pre className="json">{JSON.stringify(r.details, null, 2)}</pre>
              </details>
            </td>
            <td>
              <code>{r.resource}</code>
            </td>
            <td className={r.result === "success" ? "ok" : "bad"}>{r.result}</td>
            <td>{r.service}</td>
          </tr>
        )}
      />
    </section>
  );
}
