import { createContext, useContext } from "react";
import type { ApiClient } from "./lib/api";
import type { Me } from "./lib/perms";

export interface Ctx {
  api: ApiClient;
  me: Me | null;
  /** Load the user and permissions after a sign-in (or a silent refresh). */
  signedIn: () => Promise<void>;
  signOut: (message?: string) => Promise<void>;
  announce: (message: string) => void;
}

export const AppContext = createContext<Ctx | null>(null);

export function useApp(): Ctx {
  const ctx = useContext(AppContext);
  if (!ctx) throw new Error("outside the app");
  return ctx;
}
