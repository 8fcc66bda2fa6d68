/** Users: create, edit roles, enable or disable, reset MFA. */

import { useState, type FormEvent } from "react";
import { useApp } from "../../context";
import { can } from "../../lib/perms";
import { ApiError } from "../../lib/api";
import { ListTable, Page, TextField, useAction, usePaged } from "../../components/data";
import { when } from "../../components/ui";

const ROLES = ["admin", "operator", "developer", "viewer", "auditor"];

interface User {
  id: string;
  username: string;
  email: string | null;
  roles: string[];
  enabled: boolean;
  mfa_enabled: boolean;
  last_login: string | null;
  locked_until: string | null;
}

export function Users() {
  const { api, me } = useApp();
  const list = usePaged<User>("cc", "/users?limit=100");
  const action = useAction(list.reload);
  const [form, setForm] = useState({ username: "", email: "", password: "", roles: ["viewer"] });
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});

  const create = (e: FormEvent) => {
    e.preventDefault();
    setFieldErrors({});
    void action.run(async () => {
      try {
        const body: Record<string, unknown> = { username: form.username, password: form.password, roles: form.roles, enabled: true };
        if (form.email.trim()) body.email = form.email.trim();
        await api.post("cc", "/users", body);
      } catch (err) {
        setFieldErrors(fieldErrorsOf(err));
        throw err;
      }
      const m = `User ${form.username} created`;
      setForm({ username: "", email: "", password: "", roles: ["viewer"] });
      return m;
    });
  };

  const update = (u: User, body: Record<string, unknown>, what: string) =>
    action.run(async () => {
      await api.put("cc", `/users/${encodeURIComponent(u.id)}`, body);
      return `${u.username}: ${what}`;
    });

  const mayUpdate = can(me, "users", "update");
  return (
    <Page id="users-title" title="Users">
      {action.outcome}
      {can(me, "users", "create") ? (
        <form onSubmit={create} className="card" aria-labelledby="new-user-title">
          <h2 id="new-user-title">New user</h2>
          <TextField id="nu-name" label="Username" error={fieldErrors.username} value={form.username} onChange={(e) => setForm({ ...form, username: e.target.value })} required maxLength={64} />
          <TextField id="nu-email" label="Email" error={fieldErrors.email} type="email" value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} maxLength={254} />
          <TextField
            id="nu-password"
            label="Password"
            error={fieldErrors.password}
            type="password"
            autoComplete="new-password"
            value={form.password}
            onChange={(e) => setForm({ ...form, password: e.target.value })}
            required
          />
          <fieldset>
            <legend>Roles</legend>
            <RoleChecks roles={form.roles} onChange={(roles) => setForm({ ...form, roles })} />
          </fieldset>
          <button type="submit" className="primary">
            Create user
          </button>
        </form>
      ) : null}
      <ListTable
        list={list}
        what="users"
        columns={["User", "Roles", "State", "MFA", "Last sign-in", "Actions"]}
        row={(u) => (
          <tr key={u.id}>
            <td>
              {u.username}
              {u.email ? <div className="muted">{u.email}</div> : null}
            </td>
            <td>{mayUpdate ? <RoleEditor user={u} onSave={(roles) => void update(u, { roles }, `roles set to ${roles.join(", ")}`)} /> : u.roles.join(", ")}</td>
            <td>
              {u.enabled ? "✓ enabled" : "⊘ disabled"}
              {u.locked_until ? <div className="error-text">locked until {when(u.locked_until)}</div> : null}
            </td>
            <td>{u.mfa_enabled ? "✓ on" : "off"}</td>
            <td>{when(u.last_login)}</td>
            <td>
              {mayUpdate ? (
                <>
                  <button type="button" onClick={() => void update(u, { enabled: !u.enabled }, u.enabled ? "disabled" : "enabled")}>
                    {u.enabled ? "Disable" : "Enable"} {u.username}
                  </button>{" "}
                  {u.mfa_enabled ? (
                    <button
                      type="button"
                      onClick={() =>
                        void action.run(async () => {
                          await api.post("cc", `/users/${encodeURIComponent(u.id)}/mfa/reset`, {});
                          return `${u.username}: MFA reset`;
                        })
                      }
                    >
                      Reset MFA
                    </button>
                  ) : null}
                </>
              ) : null}
            </td>
          </tr>
        )}
      />
    </Page>
  );
}

function RoleChecks({ roles, onChange }: { roles: string[]; onChange: (roles: string[]) => void }) {
  return (
    <>
      {ROLES.map((r) => (
        <label key={r} className="check">
          <input type="checkbox" checked={roles.includes(r)} onChange={(e) => onChange(e.target.checked ? [...roles, r] : roles.filter((x) => x !== r))} /> {r}
        </label>
      ))}
    </>
  );
}

function RoleEditor({ user, onSave }: { user: User; onSave: (roles: string[]) => void }) {
  const [roles, setRoles] = useState(user.roles);
  const changed = roles.slice().sort().join() !== user.roles.slice().sort().join();
  return (
    <fieldset className="roles">
      <legend className="sr-only">roles of {user.username}</legend>
      <RoleChecks roles={roles} onChange={setRoles} />
      {changed ? (
        <button type="button" onClick={() => onSave(roles)}>
          Save roles
        </button>
      ) : null}
    </fieldset>
  );
}

/** The 422's field problems by top-level field name, to show next to each input. */
export function fieldErrorsOf(err: unknown): Record<string, string> {
  return err instanceof ApiError ? Object.fromEntries(err.fields.map((f) => [f.field.split(".")[0], f.message])) : {};
}
