/** A small history-API router: the path as state, links that push, and route matching. */

import { createContext, useContext, useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from "react";

const NavContext = createContext<(to: string) => void>(() => undefined);

export function useNavigate(): (to: string, opts?: { replace?: boolean }) => void {
  const nav = useContext(NavContext);
  return (to, opts) => {
    if (opts?.replace) {
      history.replaceState(null, "", to);
      window.dispatchEvent(new PopStateEvent("popstate"));
    } else nav(to);
  };
}

export function usePath(): string {
  const [path, setPath] = useState(() => location.pathname + location.search);
  useEffect(() => {
    const on = () => setPath(location.pathname + location.search);
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  return path;
}

export function NavProvider({ children }: { children: React.ReactNode }) {
  const nav = (to: string) => {
    if (to === location.pathname + location.search) return;
    history.pushState(null, "", to);
    window.dispatchEvent(new PopStateEvent("popstate"));
    window.scrollTo(0, 0);
  };
  return <NavContext.Provider value={nav}>{children}</NavContext.Provider>;
}

export function Link({ to, children, ...rest }: { to: string } & AnchorHTMLAttributes<HTMLAnchorElement>) {
  const nav = useContext(NavContext);
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    nav(to);
  };
  return (
    <a href={to} onClick={onClick} {...rest}>
      {children}
    </a>
  );
}

/** `/batches/:id` against `/batches/abc` → {id: "abc"}; null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split("/");
  const a = path.split("?")[0].split("/");
  if (p.length !== a.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(":")) {
      if (!a[i]) return null;
      out[p[i].slice(1)] = decodeURIComponent(a[i]);
    } else if (p[i] !== a[i]) return null;
  }
  return out;
}

export function queryOf(path: string): URLSearchParams {
  const i = path.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : path.slice(i + 1));
}
