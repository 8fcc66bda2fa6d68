/**
 * The console's one door to both services.
 *
 * The access token lives in this object only (never in storage or a URL). The refresh
 * token is an HttpOnly cookie the browser sends to the control center's `/auth/refresh`;
 * a 401 on any call refreshes once (single flight) and retries. Every failure becomes an
 * {@link ApiError} carrying the API's own message, so pages can show it as it is.
 */

export type Service = "cc" | "orch";

export interface FieldProblem {
  field: string;
  message: string;
  operation?: string;
  type?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(message: string, status: number, code = "error", details: Record<string, unknown> = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The 422's `details.fields`, when the API named fields. */
  get fields(): FieldProblem[] {
    const fields = this.details.fields;
    return Array.isArray(fields) ? (fields.filter((f) => f && typeof f === "object") as FieldProblem[]) : [];
  }

  /** The cycle a submission was refused for (`details.cycle`), if any. */
  get cycle(): string[] | null {
    const cycle = this.details.cycle;
    return Array.isArray(cycle) ? cycle.map(String) : null;
  }
}

export interface Page<T> {
  items: T[];
  total: number | null;
  next: string | null;
}

export interface Session {
  token: string;
  expiresAt: string | null;
}

export interface RequestOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** Do not refresh and retry on 401 (the auth calls themselves). */
  noRetry?: boolean;
  /** Send no Authorization header. */
  anonymous?: boolean;
  signal?: AbortSignal;
}

export interface Result<T> {
  data: T;
  headers: Headers;
  status: number;
}

type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;

/** `<…>; rel="next"` out of a Link header. */
export function parseLinkNext(link: string | null): string | null {
  if (!link) return null;
  for (const part of link.split(",")) {
    const m = /<([^>]*)>\s*;(.*)/.exec(part.trim());
    if (m && /rel="?next"?/.test(m[2])) return m[1];
  }
  return null;
}

/** The message an answer that is not the envelope still tells. */
function fallbackMessage(status: number, text: string): string {
  const trimmed = text.trim();
  if (trimmed && trimmed.length < 300 && !trimmed.startsWith("<")) return trimmed;
  return `the server answered ${status}`;
}

export class ApiClient {
  private session: Session | null = null;
  private refreshing: Promise<boolean> | null = null;
  orchestratorUrl = "";
  /** Called when the session ends on its own (refresh refused): the message to show. */
  onSessionLost: (message: string) => void = () => undefined;

  constructor(
    private readonly fetchImpl: FetchFn = (input, init) => globalThis.fetch(input, init),
    private readonly controlCenterUrl = "",
  ) {}

  get token(): string | null {
    return this.session?.token ?? null;
  }

  get signedIn(): boolean {
    return this.session !== null;
  }

  setSession(session: Session | null): void {
    this.session = session;
  }

  base(service: Service): string {
    return service === "cc" ? this.controlCenterUrl : this.orchestratorUrl;
  }

  /** An absolute URL for `path` on `service`; a full URL (a Link target) is kept as it is. */
  url(service: Service, path: string): string {
    if (/^https?:\/\//.test(path)) return path;
    return this.base(service) + path;
  }

  /** The WebSocket URL of a service's `/ws` (no token: it goes in the first message). */
  wsUrl(service: Service, query: Record<string, string | undefined>): string {
    const base = this.base(service) || globalThis.location?.origin || "http://localhost";
    const u = new URL("/ws", base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") u.searchParams.set(k, v);
    return u.toString();
  }

  async request<T>(service: Service, method: string, path: string, opts: RequestOptions = {}): Promise<Result<T>> {
    const first = await this.send(service, method, path, opts);
    if (first.status === 401 && !opts.noRetry && !opts.anonymous && this.session) {
      if (await this.refresh()) return this.parse<T>(await this.send(service, method, path, opts));
      const message = await this.errorOf(first);
      this.onSessionLost(message.message);
      throw message;
    }
    return this.parse<T>(first);
  }

  get<T>(service: Service, path: string, opts?: RequestOptions): Promise<T> {
    return this.request<T>(service, "GET", path, opts).then((r) => r.data);
  }

  post<T>(service: Service, path: string, body: unknown = {}, opts?: RequestOptions): Promise<T> {
    return this.request<T>(service, "POST", path, { ...opts, body }).then((r) => r.data);
  }

  put<T>(service: Service, path: string, body: unknown, opts?: RequestOptions): Promise<T> {
    return this.request<T>(service, "PUT", path, { ...opts, body }).then((r) => r.data);
  }

  del<T>(service: Service, path: string, opts?: RequestOptions): Promise<T> {
    return this.request<T>(service, "DELETE", path, opts).then((r) => r.data);
  }

  /** One page of a list: its items, `X-Total-Count` and the `Link` rel="next" target. */
  async page<T>(service: Service, path: string): Promise<Page<T>> {
    const r = await this.request<T[]>(service, "GET", path);
    const total = r.headers.get("X-Total-Count");
    return {
      items: Array.isArray(r.data) ? r.data : [],
      total: total !== null && /^\d+$/.test(total) ? Number(total) : null,
      next: parseLinkNext(r.headers.get("Link")),
    };
  }

  /** A new access token from the refresh cookie; false when there is no session to restore. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = this.doRefresh().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  private async doRefresh(): Promise<boolean> {
    let resp: Response;
    try {
      resp = await this.send("cc", "POST", "/auth/refresh", {
        body: {},
        anonymous: true,
        headers: { "X-Refresh-Cookie": "1" },
      });
    } catch {
      return false;
    }
    if (!resp.ok) {
      this.session = null;
      return false;
    }
    const body = (await resp.json()) as { data?: { token?: string; expires_at?: string } };
    const token = body.data?.token;
    if (!token) return false;
    this.session = { token, expiresAt: body.data?.expires_at ?? null };
    return true;
  }

  /** Raw text (an export) with the same authentication and error handling. */
  async text(service: Service, path: string): Promise<string> {
    let resp = await this.send(service, "GET", path, {});
    if (resp.status === 401 && this.session && (await this.refresh())) resp = await this.send(service, "GET", path, {});
    if (!resp.ok) throw await this.errorOf(resp);
    return resp.text();
  }

  private send(service: Service, method: string, path: string, opts: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/json", ...opts.headers };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (!opts.anonymous && this.session) headers.Authorization = `Bearer ${this.session.token}`;
    return this.fetchImpl(this.url(service, path), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: "same-origin",
      signal: opts.signal,
    });
  }

  private async parse<T>(resp: Response): Promise<Result<T>> {
    if (!resp.ok) throw await this.errorOf(resp);
    const text = await resp.text();
    let doc: unknown = null;
    try {
      doc = text ? JSON.parse(text) : null;
    } catch {
      throw new ApiError(`the server answered ${resp.status} with something that is not JSON`, resp.status);
    }
    const env = doc as { success?: boolean; data?: T; error?: string } | null;
    if (env && typeof env === "object" && "success" in env) {
      if (env.success === false) throw new ApiError(env.error ?? "request failed", resp.status);
      return { data: env.data as T, headers: resp.headers, status: resp.status };
    }
    return { data: doc as T, headers: resp.headers, status: resp.status };
  }

  private async errorOf(resp: Response): Promise<ApiError> {
    let text = "";
    try {
      text = await resp.clone().text();
    } catch {
      /* the body was already read */
    }
    try {
      const doc = JSON.parse(text) as { error?: unknown; code?: unknown; details?: unknown };
      if (doc && typeof doc.error === "string") {
        const details = doc.details && typeof doc.details === "object" ? (doc.details as Record<string, unknown>) : {};
        return new ApiError(doc.error, resp.status, typeof doc.code === "string" ? doc.code : "error", details);
      }
    } catch {
      /* not JSON: fall through */
    }
    return new ApiError(fallbackMessage(resp.status, text), resp.status);
  }
}

/** The message to show for anything thrown. */
export function messageOf(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message === "Failed to fetch" ? "the service cannot be reached" : err.message;
  return String(err);
}
