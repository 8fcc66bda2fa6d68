/** Running, failed and recent batches, the services' health, metrics and recent audit events; live. */

import { useCallback, useEffect, useState } from "react";
import { useApp } from "../context";
import { can } from "../lib/perms";
import type { BatchItem } from "../lib/batches";
import { useDebounced, useLive } from "../live";
import { BatchTable } from "../components/BatchTable";
import { LiveBadge } from "../components/LiveBadge";
import { ErrorBox, when } from "../components/ui";
import { Link } from "../router";

interface Health {
  overall_status?: string;
  components?: Record<string, string>;
}

/** A service's answer: `/health` says "… is healthy" (200) or fails; the orchestrator's
 * `/state/system/health` has an overall status and its components. */
type HealthView = { ok: boolean; text: string; components?: Record<string, string> };

function healthOf(h: Health | string): HealthView {
  if (typeof h === "string") return { ok: true, text: h };
  const text = h.overall_status ?? "unknown";
  return { ok: /^(ok|healthy)$/i.test(text), text, components: h.components };
}

const unhealthy = (e: unknown): HealthView => ({ ok: false, text: e instanceof Error ? e.message : "unreachable" });

interface Metrics {
  total_workflows: number;
  active_workflows: number;
  completed_workflows: number;
  failed_workflows: number;
  cancelled_workflows: number;
  system_load: { cpu_usage: number; memory_usage: number; disk_usage: number };
}

interface AuditRecord {
  id: string;
  timestamp: string;
  username: string | null;
  action: string;
  resource: string;
  result: string;
}

export function Dashboard() {
  const { api, me } = useApp();
  const mayBatches = can(me, "batch", "read");
  const mayState = can(me, "state", "read");
  const mayAudit = can(me, "audit", "read");
  const [running, setRunning] = useState<BatchItem[]>([]);
  const [failed, setFailed] = useState<BatchItem[]>([]);
  const [recent, setRecent] = useState<BatchItem[]>([]);
  const [batchError, setBatchError] = useState<unknown>(null);
  const [health, setHealth] = useState<{ cc: HealthView | null; orch: HealthView | null; system: HealthView | null }>({ cc: null, orch: null, system: null });
  const [metrics, setMetrics] = useState<Metrics | null>(null);
  const [audit, setAudit] = useState<AuditRecord[]>([]);
  const [auditError, setAuditError] = useState<unknown>(null);

  const loadBatches = useCallback(async () => {
    if (!mayBatches) return;
    try {
      const [r, f, a] = await Promise.all([
        api.page<BatchItem>("orch", `/batch/operations?status=Running&limit=10`),
        api.page<BatchItem>("orch", `/batch/operations?status=Failed&limit=5`),
        api.page<BatchItem>("orch", `/batch/operations?limit=10`),
      ]);
      setRunning(r.items);
      setFailed(f.items);
      setRecent(a.items);
      setBatchError(null);
    } catch (e) {
      setBatchError(e);
    }
  }, [api, mayBatches]);

  const loadHealth = useCallback(async () => {
    const get = (service: "cc" | "orch", path: string) => api.get<Health | string>(service, path, { anonymous: true }).then(healthOf, unhealthy);
    const [cc, orch] = await Promise.all([get("cc", "/health"), get("orch", "/health")]);
    let system: HealthView | null = null;
    if (mayState) {
      system = await api.get<Health>("orch", "/state/system/health").then(healthOf, unhealthy);
      setMetrics(await api.get<Metrics>("orch", "/state/system/metrics").catch(() => null));
    }
    setHealth({ cc, orch, system });
  }, [api, mayState]);

  const loadAudit = useCallback(async () => {
    if (!mayAudit) return;
    try {
      setAudit((await api.page<AuditRecord>("cc", "/audit/logs?limit=8")).items);
      setAuditError(null);
    } catch (e) {
      setAuditError(e);
    }
  }, [api, mayAudit]);

  useEffect(() => {
    void loadBatches();
    void loadHealth();
    void loadAudit();
    // Health has no event of its own: a slow refresh while the page is open.
    const t = setInterval(() => void loadHealth(), 30_000);
    return () => clearInterval(t);
  }, [loadBatches, loadHealth, loadAudit]);

  const batchesChanged = useDebounced(() => {
    void loadBatches();
    if (mayState) void api.get<Metrics>("orch", "/state/system/metrics").then(setMetrics, () => undefined);
  }, 1000);
  const auditChanged = useDebounced(() => void loadAudit(), 400);
  const orchLive = useLive({ service: "orch", query: { events: "batch,task" }, enabled: mayBatches, onEvent: batchesChanged, onGap: batchesChanged });
  const ccLive = useLive({ service: "cc", query: { events: "security" }, enabled: mayAudit, onEvent: auditChanged, onGap: auditChanged });

  return (
    <section aria-labelledby="dash-title">
      <div className="page-head">
        <h1 id="dash-title">Dashboard</h1>
        {mayBatches ? <LiveBadge status={orchLive.status} detail={orchLive.detail} /> : null}
      </div>
      <div className="grid">
        <section className="card" aria-labelledby="health-title">
          <h2 id="health-title">Health</h2>
          <dl className="kv">
            <HealthRow name="Control center" h={health.cc} />
            <HealthRow name="Orchestrator" h={health.orch} />
            {health.system ? <HealthRow name="Storage, coordinator, monitoring" h={health.system} /> : null}
          </dl>
        </section>
        {metrics ? (
          <section className="card" aria-labelledby="metrics-title">
            <h2 id="metrics-title">System</h2>
            <dl className="kv">
              <dt>Batches</dt>
              <dd>
                {metrics.total_workflows} total, {metrics.active_workflows} active, {metrics.completed_workflows} completed, {metrics.failed_workflows} failed, {metrics.cancelled_workflows} cancelled
              </dd>
              <dt>CPU</dt>
              <dd>{metrics.system_load.cpu_usage.toFixed(1)} %</dd>
              <dt>Memory</dt>
              <dd>{metrics.system_load.memory_usage.toFixed(0)} MB</dd>
              <dt>Disk</dt>
              <dd>{metrics.system_load.disk_usage.toFixed(1)} %</dd>
            </dl>
          </section>
        ) : null}
      </div>
      {mayBatches ? (
        <>
          <ErrorBox error={batchError} />
          <h2>Running</h2>
          <BatchTable batches={running} caption="running batches" />
          <h2>Failed</h2>
          <BatchTable batches={failed} caption="failed batches" />
          <h2>Recent</h2>
          <BatchTable batches={recent} caption="recent batches" />
          <p>
            <Link to="/batches">All batches</Link>
          </p>
        </>
      ) : (
        <p className="muted">Your role may not read batches.</p>
      )}
      {mayAudit ? (
        <section aria-labelledby="audit-title">
          <div className="page-head">
            <h2 id="audit-title">Recent audit events</h2>
            <LiveBadge status={ccLive.status} detail={ccLive.detail} />
          </div>
          <ErrorBox error={auditError} />
          <ul className="plain">
            {audit.map((r) => (
              <li key={r.id}>
                <span className="muted">{when(r.timestamp)}</span> <strong>{r.username ?? "anonymous"}</strong> {r.action} <code>{r.resource}</code> — {r.result}
              </li>
            ))}
          </ul>
        </section>
      ) : null}
    </section>
  );
}

function HealthRow({ name, h }: { name: string; h: HealthView | null }) {
  if (!h) {
    return (
      <>
        <dt>{name}</dt>
        <dd className="muted">checking…</dd>
      </>
    );
  }
  const { ok, text } = h;
  return (
    <>
      <dt>{name}</dt>
      <dd className={ok ? "ok" : "bad"}>
        <span aria-hidden="true">{ok ? "✓" : "✗"}</span> {text}
        {h.components ? (
          <span className="muted">
            {" "}
            (
            {Object.entries(h.components)
              .map(([k, v]) => `${k}: ${v}`)
              .join(", ")}
            )
          </span>
        ) : null}
      </dd>
    </>
  );
}
