/** The shell: configuration, the silent session restore, the navigation and the routes. */

import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ApiError, type ApiClient } from "./lib/api";
import { can, type Me } from "./lib/perms";
import { AppContext, type Ctx } from "./context";
import { Link, NavProvider, match, usePath, useNavigate } from "./router";
import { SignIn } from "./pages/SignIn";
import { Dashboard } from "./pages/Dashboard";
import { Batches } from "./pages/Batches";
import { BatchPage } from "./pages/Batch";
import { Submit } from "./pages/Submit";
import { Checkpoints } from "./pages/Checkpoints";
import { Users } from "./pages/admin/Users";
import { Policies } from "./pages/admin/Policies";
import { Audit } from "./pages/admin/Audit";
import { Webhooks } from "./pages/admin/Webhooks";
import { ErrorBox } from "./components/ui";

interface NavItem {
  to: string;
  label: string;
  resource: string;
  action: string;
}

const NAV: NavItem[] = [
  { to: "/", label: "Dashboard", resource: "batch", action: "read" },
  { to: "/batches", label: "Batches", resource: "batch", action: "read" },
  { to: "/submit", label: "Submit", resource: "batch", action: "execute" },
  { to: "/checkpoints", label: "Checkpoints", resource: "rollback", action: "read" },
  { to: "/admin/users", label: "Users", resource: "users", action: "read" },
  { to: "/admin/policies", label: "Policies", resource: "policies", action: "read" },
  { to: "/admin/audit", label: "Audit", resource: "audit", action: "read" },
  { to: "/admin/webhooks", label: "Webhooks", resource: "webhooks", action: "read" },
];

async function loadMe(api: ApiClient): Promise<Me> {
  try {
    return await api.get<Me>("cc", "/auth/me/permissions");
  } catch (e) {
    // A control center without the endpoint: offer everything and let the API refuse (403).
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
    const user = await api.get<Me["user"]>("cc", "/users/me");
    return { user, permissions: [{ resource: "*", action: "*" }] };
  }
}

export function App({ api }: { api: ApiClient }) {
  return (
    <NavProvider>
      <Shell api={api} />
    </NavProvider>
  );
}

function Shell({ api }: { api: ApiClient }) {
  const path = usePath();
  const navigate = useNavigate();
  const [ready, setReady] = useState(false);
  const [bootError, setBootError] = useState<unknown>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [signInMessage, setSignInMessage] = useState<string | null>(null);
  const [announcement, setAnnouncement] = useState("");
  const returnTo = useRef<string>("/");

  const signedIn = useCallback(async () => {
    setMe(await loadMe(api));
    setSignInMessage(null);
  }, [api]);

  const signOut = useCallback(
    async (message?: string) => {
      if (!message && api.signedIn) {
        try {
          await api.post("cc", "/auth/logout", {}, { noRetry: true });
        } catch {
          /* the session may be gone already; the cookie is cleared by the server when it answers */
        }
      }
      api.setSession(null);
      setMe(null);
      setSignInMessage(message ?? "You are signed out.");
      navigate("/signin");
    },
    [api, navigate],
  );

  useEffect(() => {
    api.onSessionLost = (message) => {
      api.setSession(null);
      setMe(null);
      setSignInMessage(`Your session has ended (${message}). Sign in again.`);
      navigate("/signin");
    };
  }, [api, navigate]);

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        const cfg = await api.get<{ orchestrator_url?: string }>("cc", "/console/config.json", { anonymous: true });
        api.orchestratorUrl = (cfg && cfg.orchestrator_url) || "";
      } catch (e) {
        if (live) setBootError(e);
      }
      // Restore the session silently from the refresh cookie, if there is one.
      if (await api.refresh()) {
        try {
          const m = await loadMe(api);
          if (live) setMe(m);
        } catch (e) {
          if (live) setBootError(e);
        }
      }
      if (live) setReady(true);
    })();
    return () => {
      live = false;
    };
  }, [api]);

  const ctx: Ctx = useMemo(() => ({ api, me, signedIn, signOut, announce: (m: string) => setAnnouncement(m) }), [api, me, signedIn, signOut]);

  const pathname = path.split("?")[0];
  useEffect(() => {
    if (!ready) return;
    if (!me && pathname !== "/signin") {
      returnTo.current = path;
      navigate("/signin", { replace: true });
    } else if (me && pathname === "/signin") {
      const to = returnTo.current && returnTo.current !== "/signin" ? returnTo.current : "/";
      returnTo.current = "/";
      navigate(to, { replace: true });
    }
  }, [ready, me, pathname, path, navigate]);

  useEffect(() => {
    const item = NAV.find((n) => n.to === pathname);
    document.title = `${item ? item.label : pathname.startsWith("/batches/") ? "Batch" : pathname === "/signin" ? "Sign in" : "Console"} · provisioning`;
  }, [pathname]);

  if (!ready) {
    return (
      <main id="main" className="boot">
        <p role="status">Loading the console…</p>
        <ErrorBox error={bootError} />
      </main>
    );
  }

  return (
    <AppContext.Provider value={ctx}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link to="/" className="brand">
          provisioning
        </Link>
        {me ? (
          <>
            <nav aria-label="Main">
              <ul>
                {NAV.filter((n) => can(me, n.resource, n.action)).map((n) => (
                  <li key={n.to}>
                    <Link to={n.to} aria-current={pathname === n.to || (n.to === "/batches" && pathname.startsWith("/batches/")) ? "page" : undefined}>
                      {n.label}
                    </Link>
                  </li>
                ))}
              </ul>
            </nav>
            <div className="who">
              <span>
                {me.user.username} <span className="muted">({me.user.roles.join(", ")})</span>
              </span>
              <button type="button" onClick={() => void signOut()}>
                Sign out
              </button>
            </div>
          </>
        ) : null}
      </header>
      <div className="sr-only" role="status" aria-live="polite">
        {announcement}
      </div>
      <main id="main" tabIndex={-1}>
        {bootError ? <ErrorBox error={bootError} title="The console could not load its configuration" /> : null}
        {me ? <Route path={path} /> : <SignIn message={signInMessage} />}
      </main>
    </AppContext.Provider>
  );
}

function Route({ path }: { path: string }) {
  const pathname = path.split("?")[0];
  let m: Record<string, string> | null;
  if (pathname === "/" || pathname === "/signin") return <Dashboard />;
  if (pathname === "/batches") return <Batches path={path} />;
  if ((m = match("/batches/:id", pathname))) return <BatchPage key={m.id} id={m.id} />;
  if (pathname === "/submit") return <Submit />;
  if (pathname === "/checkpoints") return <Checkpoints />;
  if (pathname === "/admin/users") return <Users />;
  if (pathname === "/admin/policies") return <Policies />;
  if (pathname === "/admin/audit") return <Audit />;
  if (pathname === "/admin/webhooks") return <Webhooks />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page at <code>{pathname}</code>. <Link to="/">Go to the dashboard</Link>.
      </p>
    </section>
  );
}
