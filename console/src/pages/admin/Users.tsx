/** Users: create, edit roles, enable or disable, reset MFA. */

import { useEffect, useState, type FormEvent } from "react";
import { useApp } from "../../context";
import { can } from "../../lib/perms";
import { ApiError } from "../../lib/api";
import { ErrorBox, Loading, Notice, when } from "../../components/ui";

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
  const { api, me, announce } = useApp();
  const [users, setUsers] = useState<User[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [n, setN] = useState(0);
  const [form, setForm] = useState({ username: "", email: "", password: "", roles: ["viewer"] });
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});

  useEffect(() => {
    api.page<User>("cc", "/users?limit=100").then(
      (p) => {
        setUsers(p.items);
        setNext(p.next);
        setError(null);
      },
      setError,
    );
  }, [api, n]);

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
        const body: Record<string, unknown> = { username: form.username, password: form.password, roles: form.roles, enabled: true };
        if (form.email.trim()) body.email = form.email.trim();
        await api.post("cc", "/users", body);
      } catch (err) {
        if (err instanceof ApiError) setFieldErrors(Object.fromEntries(err.fields.map((f) => [f.field.split(".")[0], f.message])));
        throw err;
      }
      const m = `User ${form.username} created`;
      setForm({ username: "", email: "", password: "", roles: ["viewer"] });
      return m;
    });
  };

  const update = (u: User, body: Record<string, unknown>, what: string) => run(async () => String(await api.put("cc", `/users/${encodeURIComponent(u.id)}`, body)) && `${u.username}: ${what}`);

  const mayUpdate = can(me, "users", "update");
  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Users</h1>
      {notice ? <Notice>{notice}</Notice> : null}
      <ErrorBox error={actionError} />
      {can(me, "users", "create") ? (
        <form onSubmit={create} className="card" aria-labelledby="new-user-title">
          <h2 id="new-user-title">New user</h2>
          <label htmlFor="nu-name">Username</label>
          <input id="nu-name" value={form.username} onChange={(e) => setForm({ ...form, username: e.target.value })} required maxLength={64} aria-describedby="nu-name-err" />
          <FieldError id="nu-name-err" message={fieldErrors.username} />
          <label htmlFor="nu-email">Email</label>
          <input id="nu-email" type="email" value={form.email} onChange={(e) => setForm({ ...form, email: e.target.value })} maxLength={254} aria-describedby="nu-email-err" />
          <FieldError id="nu-email-err" message={fieldErrors.email} />
          <label htmlFor="nu-password">Password</label>
          <input id="nu-password" type="password" autoComplete="new-password" value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} required aria-describedby="nu-password-err" />
          <FieldError id="nu-password-err" message={fieldErrors.password} />
          <fieldset>
            <legend>Roles</legend>
            {ROLES.map((r) => (
              <label key={r} className="check">
                <input
                  type="checkbox"
                  checked={form.roles.includes(r)}
                  onChange={(e) => setForm({ ...form, roles: e.target.checked ? [...form.roles, r] : form.roles.filter((x) => x !== r) })}
                />{" "}
                {r}
              </label>
            ))}
          </fieldset>
          <button type="submit" className="primary">
            Create user
          </button>
        </form>
      ) : null}
      <ErrorBox error={error} />
      {!users ? (
        error ? null : <Loading what="users" />
      ) : (
        <div className="table-wrap">
          <table>
            <caption className="sr-only">users</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Roles</th>
                <th scope="col">State</th>
                <th scope="col">MFA</th>
                <th scope="col">Last sign-in</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.id}>
                  <td>
                    {u.username}
                    {u.email ? <div className="muted">{u.email}</div> : null}
                  </td>
                  <td>
                    {mayUpdate ? (
                      <RoleEditor user={u} onSave={(roles) => void update(u, { roles }, `roles set to ${roles.join(", ")}`)} />
                    ) : (
                      u.roles.join(", ")
                    )}
                  </td>
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
                          <button type="button" onClick={() => void run(async () => (await api.post("cc", `/users/${encodeURIComponent(u.id)}/mfa/reset`, {}), `${u.username}: MFA reset`))}>
                            Reset MFA
                          </button>
                        ) : null}
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
        <button type="button" onClick={() => void api.page<User>("cc", next).then((p) => { setUsers((o) => [...(o ?? []), ...p.items]); setNext(p.next); }, setError)}>
          Load more
        </button>
      ) : null}
    </section>
  );
}

function RoleEditor({ user, onSave }: { user: User; onSave: (roles: string[]) => void }) {
  const [roles, setRoles] = useState(user.roles);
  const changed = roles.slice().sort().join() !== user.roles.slice().sort().join();
  return (
    <fieldset className="roles">
      <legend className="sr-only">roles of {user.username}</legend>
      {ROLES.map((r) => (
        <label key={r} className="check">
          <input type="checkbox" checked={roles.includes(r)} onChange={(e) => setRoles(e.target.checked ? [...roles, r] : roles.filter((x) => x !== r))} /> {r}
        </label>
      ))}
      {changed ? (
        <button type="button" onClick={() => onSave(roles)}>
          Save roles
        </button>
      ) : null}
    </fieldset>
  );
}

export function FieldError({ id, message }: { id: string; message?: string }) {
  return message ? (
    <p id={id} className="field-error">
      {message}
    </p>
  ) : (
    <span id={id} hidden />
  );
}
