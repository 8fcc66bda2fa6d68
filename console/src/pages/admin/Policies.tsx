/** Policies: list, view, edit the rules (validation errors next to the rule), versions. */

import { useState } from "react";
import { useApp } from "../../context";
import { can } from "../../lib/perms";
import { ApiError } from "../../lib/api";
import { ListView, Page, usePaged } from "../../components/data";
import { ErrorBox, Notice, when } from "../../components/ui";

interface Rule {
  effect: string;
  resource: string;
  action: string | string[];
  condition?: string | null;
  roles?: string[] | null;
}

interface Policy {
  id: string;
  name: string;
  version: string;
  description: string | null;
  rules: Rule[];
  enabled: boolean;
  updated_at: string | null;
  updated_by: string | null;
  version_id?: string;
}

export function Policies() {
  const { me } = useApp();
  const list = usePaged<Policy>("cc", "/policies?limit=100");
  const [open, setOpen] = useState<string | null>(null);
  const current = list.items?.find((p) => p.id === open) ?? null;
  return (
    <Page id="pol-title" title="Policies">
      <ListView list={list} what="policies">
        {(items) => (
          <ul className="plain policy-list">
            {items.map((p) => (
              <li key={p.id}>
                <button type="button" className="linkish" aria-expanded={open === p.id} onClick={() => setOpen(open === p.id ? null : p.id)}>
                  {p.name}
                </button>{" "}
                <span className="muted">
                  v{p.version} · {p.rules.length} rules · {p.enabled ? "enabled" : "disabled"} · updated {when(p.updated_at)} by {p.updated_by ?? "—"}
                </span>
              </li>
            ))}
          </ul>
        )}
      </ListView>
      {current ? <PolicyEditor key={current.id + current.version} policy={current} mayEdit={can(me, "policies", "update")} onSaved={list.reload} /> : null}
    </Page>
  );
}

function PolicyEditor({ policy, mayEdit, onSaved }: { policy: Policy; mayEdit: boolean; onSaved: () => void }) {
  const { api, announce } = useApp();
  const [text, setText] = useState(() => JSON.stringify(policy.rules, null, 2));
  const [version, setVersion] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [ruleErrors, setRuleErrors] = useState<{ field: string; message: string }[]>([]);
  const [notice, setNotice] = useState<string | null>(null);
  const [versions, setVersions] = useState<Policy[] | null>(null);

  const save = async () => {
    setError(null);
    setRuleErrors([]);
    setNotice(null);
    let rules: unknown;
    try {
      rules = JSON.parse(text);
    } catch (e) {
      setError(new Error(`the rules are not valid JSON: ${(e as Error).message}`));
      return;
    }
    try {
      const body: Record<string, unknown> = { rules };
      if (version.trim()) body.version = version.trim();
      await api.put("cc", `/policies/${encodeURIComponent(policy.id)}`, body);
      setNotice(`Policy ${policy.name} saved`);
      announce(`Policy ${policy.name} saved`);
      onSaved();
    } catch (e) {
      setError(e);
      if (e instanceof ApiError) setRuleErrors(e.fields);
    }
  };

  return (
    <section className="card" aria-labelledby="pe-title">
      <h2 id="pe-title">
        {policy.name} <span className="muted">v{policy.version}</span>
      </h2>
      {policy.description ? <p>{policy.description}</p> : null}
      <p className="muted">
        Each rule is <code>{"{effect, resource, action, condition, roles}"}</code>; Deny overrides Allow.
      </p>
      <label htmlFor="pe-rules">Rules (JSON)</label>
      <textarea id="pe-rules" rows={16} spellCheck={false} value={text} onChange={(e) => setText(e.target.value)} readOnly={!mayEdit} aria-describedby="pe-errors" />
      <div id="pe-errors">
        {ruleErrors.length ? (
          <ul className="field-errors" aria-label="problems in the rules">
            {ruleErrors.map((f, i) => (
              <li key={i} className="field-error">
                <code>{f.field}</code>: {f.message}
              </li>
            ))}
          </ul>
        ) : null}
      </div>
      <ErrorBox error={error} title="Not saved" />
      {notice ? <Notice>{notice}</Notice> : null}
      {mayEdit ? (
        <div className="actions">
          <label htmlFor="pe-version">New version</label>
          <input id="pe-version" value={version} onChange={(e) => setVersion(e.target.value)} placeholder="(bumped automatically)" maxLength={32} />
          <button type="button" className="primary" onClick={() => void save()}>
            Save policy
          </button>
        </div>
      ) : null}
      <button type="button" onClick={() => void api.get<Policy[]>("cc", `/policies/${encodeURIComponent(policy.id)}/versions`).then(setVersions, setError)}>
        Show previous versions
      </button>
      {versions ? (
        versions.length ? (
          <ol className="plain">
            {versions.map((v) => (
              <li key={v.version_id ?? v.version}>
                <details>
                  <summary>
                    v{v.version} — {when(v.updated_at)} by {v.updated_by ?? "—"}
                  </summary>
                  <pre className="json">{JSON.stringify(v.rules, null, 2)}</pre>
                </details>
              </li>
            ))}
          </ol>
        ) : (
          <p className="muted">No previous versions.</p>
        )
      ) : null}
    </section>
  );
}
