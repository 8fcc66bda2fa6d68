/** Webhooks: create (the secret shown once), rotate, test, deliveries with status and latency, redeliver. */

import { useEffect, useState, type FormEvent } from "react";
import { useApp } from "../../context";
import { can } from "../../lib/perms";
import { ApiError } from "../../lib/api";
import { ErrorBox, Loading, Notice, when } from "../../components/ui";
import { FieldError } from "./Users";

interface Webhook {
  id: string;
  url: string;
  events: string[];
  description: string | null;
  enabled: boolean;
  paused: boolean;
  paused_reason: string | null;
  consecutive_failures: number;
  last_success_at: string | null;
  last_failure_at: string | null;
  secret?: string;
}

interface Delivery {
  id: string;
  event: string;
  status: string;
  attempt: number;
  status_code: number | null;
  latency_ms: number | null;
  error: string | null;
  created_at: string | null;
}

export function Webhooks() {
  const { api, me, announce } = useApp();
  const [hooks, setHooks] = useState<Webhook[] | null>(null);
  const [events, setEvents] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [secret, setSecret] = useState<{ id: string; secret: string } | null>(null);
  const [form, setForm] = useState({ url: "", events: "task.*, batch.*", description: "" });
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [open, setOpen] = useState<string | null>(null);
  const [n, setN] = useState(0);

  useEffect(() => {
    api.page<Webhook>("cc", "/webhooks?limit=100").then((p) => {
      setHooks(p.items);
      setError(null);
    }, setError);
  }, [api, n]);
  useEffect(() => {
    api.get<unknown>("cc", "/webhooks/events").then(
      (d) => setEvents(Array.isArray(d) ? d.map((x) => (typeof x === "string" ? x : String((x as { name?: string }).name ?? ""))) : []),
      () => undefined,
    );
  }, [api]);

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
    setFieldErrors({});
    void run(async () => {
      try {
        const body: Record<string, unknown> = {
          url: form.url,
          events: form.events.split(",").map((s) => s.trim()).filter(Boolean),
          enabled: true,
        };
        if (form.description.trim()) body.description = form.description.trim();
        const w = await api.post<Webhook>("cc", "/webhooks", body);
        if (w.secret) setSecret({ id: w.id, secret: w.secret });
        setForm({ url: "", events: "task.*, batch.*", description: "" });
        return `Webhook created for ${w.url}`;
      } catch (err) {
        if (err instanceof ApiError) setFieldErrors(Object.fromEntries(err.fields.map((f) => [f.field.split(".")[0], f.message])));
        throw err;
      }
    });
  };

  const rotate = (w: Webhook) =>
    run(async () => {
      const r = await api.post<Webhook>("cc", `/webhooks/${encodeURIComponent(w.id)}/rotate-secret`, {});
      if (r.secret) setSecret({ id: w.id, secret: r.secret });
      return `New secret for ${w.url}; the old one keeps signing during the grace period`;
    });

  const mayUpdate = can(me, "webhooks", "update");
  return (
    <section aria-labelledby="wh-title">
      <h1 id="wh-title">Webhooks</h1>
      {notice ? <Notice>{notice}</Notice> : null}
      <ErrorBox error={actionError} />
      {secret ? (
        <div className="secret-box" role="alert">
          <p>
            <strong>The signing secret, shown this once:</strong> <code className="secret">{secret.secret}</code>
          </p>
          <div className="actions">
            <button type="button" onClick={() => void navigator.clipboard?.writeText(secret.secret).then(() => announce("Secret copied"), () => undefined)}>
              Copy
            </button>
            <button type="button" onClick={() => setSecret(null)}>
              I saved it
            </button>
          </div>
        </div>
      ) : null}
      {can(me, "webhooks", "create") ? (
        <form onSubmit={create} className="card" aria-labelledby="nw-title">
          <h2 id="nw-title">New webhook</h2>
          <label htmlFor="nw-url">URL</label>
          <input id="nw-url" type="url" value={form.url} onChange={(e) => setForm({ ...form, url: e.target.value })} required maxLength={2048} aria-describedby="nw-url-err" />
          <FieldError id="nw-url-err" message={fieldErrors.url} />
          <label htmlFor="nw-events">Events (comma-separated)</label>
          <input id="nw-events" value={form.events} onChange={(e) => setForm({ ...form, events: e.target.value })} list="wh-events" aria-describedby="nw-events-err" />
          <datalist id="wh-events">
            {events.map((e) => (
              <option key={e} value={e} />
            ))}
          </datalist>
          <FieldError id="nw-events-err" message={fieldErrors.events} />
          <label htmlFor="nw-desc">Description</label>
          <input id="nw-desc" value={form.description} onChange={(e) => setForm({ ...form, description: e.target.value })} maxLength={500} />
          <button type="submit" className="primary">
            Create webhook
          </button>
        </form>
      ) : null}
      <ErrorBox error={error} />
      {!hooks ? (
        error ? null : <Loading what="webhooks" />
      ) : hooks.length === 0 ? (
        <p className="muted">No webhooks.</p>
      ) : (
        <ul className="plain">
          {hooks.map((w) => (
            <li key={w.id} className="card">
              <h3>{w.url}</h3>
              <p className="muted">
                {w.events.join(", ")} · {w.enabled ? (w.paused ? `⏸ paused: ${w.paused_reason ?? ""}` : "✓ enabled") : "⊘ disabled"} · {w.consecutive_failures} failures in a row · last
                success {when(w.last_success_at)}
              </p>
              {w.description ? <p>{w.description}</p> : null}
              <div className="actions">
                {mayUpdate ? (
                  <>
                    <button type="button" onClick={() => void rotate(w)}>
                      Rotate secret
                    </button>
                    <button type="button" onClick={() => void run(async () => (await api.post("cc", `/webhooks/${encodeURIComponent(w.id)}/test`, {}), `Test delivery queued for ${w.url}`))}>
                      Send a test
                    </button>
                    <button type="button" onClick={() => void run(async () => (await api.put("cc", `/webhooks/${encodeURIComponent(w.id)}`, { enabled: !w.enabled }), `${w.url} ${w.enabled ? "disabled" : "enabled"}`))}>
                      {w.enabled ? "Disable" : "Enable"}
                    </button>
                  </>
                ) : null}
                <button type="button" aria-expanded={open === w.id} onClick={() => setOpen(open === w.id ? null : w.id)}>
                  Deliveries
                </button>
              </div>
              {open === w.id ? <Deliveries webhook={w} mayRedeliver={mayUpdate} refresh={n} /> : null}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

function Deliveries({ webhook, mayRedeliver, refresh }: { webhook: Webhook; mayRedeliver: boolean; refresh: number }) {
  const { api, announce } = useApp();
  const [rows, setRows] = useState<Delivery[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [k, setK] = useState(0);
  useEffect(() => {
    api.page<Delivery>("cc", `/webhooks/${encodeURIComponent(webhook.id)}/deliveries?limit=50`).then((p) => setRows(p.items), setError);
  }, [api, webhook.id, refresh, k]);
  const redeliver = async (d: Delivery) => {
    try {
      await api.post("cc", `/webhooks/${encodeURIComponent(webhook.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, {});
      announce(`Delivery ${d.id} queued again`);
      setK((x) => x + 1);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div>
      <ErrorBox error={error} />
      <button type="button" onClick={() => setK((x) => x + 1)}>
        Refresh deliveries
      </button>
      {!rows ? (
        <Loading what="deliveries" />
      ) : rows.length === 0 ? (
        <p className="muted">No deliveries yet.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">deliveries of {webhook.url}</caption>
            <thead>
              <tr>
                <th scope="col">Event</th>
                <th scope="col">Status</th>
                <th scope="col">Code</th>
                <th scope="col">Latency</th>
                <th scope="col">Attempts</th>
                <th scope="col">Created</th>
                <th scope="col">Error</th>
                <th scope="col">Action</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <tr key={d.id}>
                  <td>{d.event}</td>
                  <td>{d.status}</td>
                  <td>{d.status_code ?? "—"}</td>
                  <td>{d.latency_ms !== null ? `${Math.round(d.latency_ms)} ms` : "—"}</td>
                  <td>{d.attempt}</td>
                  <td>{when(d.created_at)}</td>
                  <td>{d.error ?? ""}</td>
                  <td>
                    {mayRedeliver ? (
                      <button type="button" onClick={() => void redeliver(d)}>
                        Redeliver
                      </button>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
