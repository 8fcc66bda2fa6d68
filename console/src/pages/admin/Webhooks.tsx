/** Webhooks: create (the secret shown once), rotate, test, deliveries with status and latency, redeliver. */

import { useEffect, useState, type FormEvent } from "react";
import { useApp } from "../../context";
import { can } from "../../lib/perms";
import { DataTable, ListView, Page, TextField, useAction, usePaged } from "../../components/data";
import { when } from "../../components/ui";
import { fieldErrorsOf } from "./Users";

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
  const list = usePaged<Webhook>("cc", "/webhooks?limit=100");
  const action = useAction(list.reload);
  const [events, setEvents] = useState<string[]>([]);
  const [secret, setSecret] = useState<{ id: string; secret: string } | null>(null);
  const [form, setForm] = useState({ url: "", events: "task.*, batch.*", description: "" });
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [open, setOpen] = useState<string | null>(null);

  useEffect(() => {
    api.get<unknown>("cc", "/webhooks/events").then(
      (d) => setEvents(Array.isArray(d) ? d.map((x) => (typeof x === "string" ? x : String((x as { name?: string }).name ?? ""))) : []),
      () => undefined,
    );
  }, [api]);

  const create = (e: FormEvent) => {
    e.preventDefault();
    setFieldErrors({});
    void action.run(async () => {
      try {
        const body: Record<string, unknown> = {
          url: form.url,
          events: form.events
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean),
          enabled: true,
        };
        if (form.description.trim()) body.description = form.description.trim();
        const w = await api.post<Webhook>("cc", "/webhooks", body);
        if (w.secret) setSecret({ id: w.id, secret: w.secret });
        setForm({ url: "", events: "task.*, batch.*", description: "" });
        return `Webhook created for ${w.url}`;
      } catch (err) {
        setFieldErrors(fieldErrorsOf(err));
        throw err;
      }
    });
  };

  const post = (w: Webhook, path: string, done: (r: Webhook) => string) => action.run(async () => done(await api.post<Webhook>("cc", `/webhooks/${encodeURIComponent(w.id)}/${path}`, {})));

  const mayUpdate = can(me, "webhooks", "update");
  return (
    <Page id="wh-title" title="Webhooks">
      {action.outcome}
      {secret ? (
        <div className="secret-box" role="alert">
          <p>
            <strong>The signing secret, shown this once:</strong> <code className="secret">{secret.secret}</code>
          </p>
          <div className="actions">
            <button
              type="button"
              onClick={() =>
                void navigator.clipboard?.writeText(secret.secret).then(
                  () => announce("Secret copied"),
                  () => undefined,
                )
              }
            >
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
          <TextField id="nw-url" label="URL" error={fieldErrors.url} type="url" value={form.url} onChange={(e) => setForm({ ...form, url: e.target.value })} required maxLength={2048} />
          <datalist id="wh-events">
            {events.map((e) => (
              <option key={e} value={e} />
            ))}
          </datalist>
          <TextField id="nw-events" label="Events (comma-separated)" error={fieldErrors.events} value={form.events} onChange={(e) => setForm({ ...form, events: e.target.value })} list="wh-events" />
          <TextField id="nw-desc" label="Description" value={form.description} onChange={(e) => setForm({ ...form, description: e.target.value })} maxLength={500} />
          <button type="submit" className="primary">
            Create webhook
          </button>
        </form>
      ) : null}
      <ListView list={list} what="webhooks">
        {(items) =>
          items.length === 0 ? (
            <p className="muted">No webhooks.</p>
          ) : (
            <ul className="plain">
              {items.map((w) => (
                <li key={w.id} className="card">
                  <h3>{w.url}</h3>
                  <p className="muted">
                    {w.events.join(", ")} · {w.enabled ? (w.paused ? `⏸ paused: ${w.paused_reason ?? ""}` : "✓ enabled") : "⊘ disabled"} · {w.consecutive_failures} failures in a row · last success{" "}
                    {when(w.last_success_at)}
                  </p>
                  {w.description ? <p>{w.description}</p> : null}
                  <div className="actions">
                    {mayUpdate ? (
                      <>
                        <button
                          type="button"
                          onClick={() =>
                            void post(w, "rotate-secret", (r) => {
                              if (r.secret) setSecret({ id: w.id, secret: r.secret });
                              return `New secret for ${w.url}; the old one keeps signing during the grace period`;
                            })
                          }
                        >
                          Rotate secret
                        </button>
                        <button type="button" onClick={() => void post(w, "test", () => `Test delivery queued for ${w.url}`)}>
                          Send a test
                        </button>
                        <button
                          type="button"
                          onClick={() =>
                            void action.run(async () => {
                              await api.put("cc", `/webhooks/${encodeURIComponent(w.id)}`, { enabled: !w.enabled });
                              return `${w.url} ${w.enabled ? "disabled" : "enabled"}`;
                            })
                          }
                        >
                          {w.enabled ? "Disable" : "Enable"}
                        </button>
                      </>
                    ) : null}
                    <button type="button" aria-expanded={open === w.id} onClick={() => setOpen(open === w.id ? null : w.id)}>
                      Deliveries
                    </button>
                  </div>
                  {open === w.id ? <Deliveries webhook={w} mayRedeliver={mayUpdate} /> : null}
                </li>
              ))}
            </ul>
          )
        }
      </ListView>
    </Page>
  );
}

function Deliveries({ webhook, mayRedeliver }: { webhook: Webhook; mayRedeliver: boolean }) {
  const { api } = useApp();
  const list = usePaged<Delivery>("cc", `/webhooks/${encodeURIComponent(webhook.id)}/deliveries?limit=50`);
  const action = useAction(list.reload);
  const redeliver = (d: Delivery) =>
    action.run(async () => {
      await api.post("cc", `/webhooks/${encodeURIComponent(webhook.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver`, {});
      return `Delivery ${d.id} queued again`;
    });
  return (
    <div>
      {action.outcome}
      <button type="button" onClick={list.reload}>
        Refresh deliveries
      </button>
      <ListView list={list} what="deliveries">
        {(items) =>
          items.length === 0 ? (
            <p className="muted">No deliveries yet.</p>
          ) : (
            <DataTable caption={`deliveries of ${webhook.url}`} columns={["Event", "Status", "Code", "Latency", "Attempts", "Created", "Error", "Action"]}>
              {items.map((d) => (
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
            </DataTable>
          )
        }
      </ListView>
    </div>
  );
}
