/** What the signed-in user may do, from `GET /auth/me/permissions`. */

export interface Permission {
  resource: string;
  action: string;
  conditional?: boolean;
}

export interface Me {
  user: { id: string; username: string; roles: string[] };
  permissions: Permission[];
}

function matches(pattern: string, value: string): boolean {
  if (pattern === "*" || pattern === value) return true;
  if (pattern.endsWith(":*")) return value === pattern.slice(0, -2) || value.startsWith(pattern.slice(0, -1));
  return false;
}

/** Whether any permission (conditional ones included: the API decides those) covers it. */
export function can(me: Me | null, resource: string, action: string): boolean {
  if (!me) return false;
  return me.permissions.some((p) => matches(p.resource, resource) && matches(p.action, action));
}
