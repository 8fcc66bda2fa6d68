import { describe, expect, it } from "vitest";
import { ApiClient, ApiError, messageOf, parseLinkNext } from "../src/lib/api";

interface Call {
  url: string;
  init: RequestInit;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json", ...headers } });
}

/** A scripted server: each answer is taken in turn; every request is recorded. */
function server(...answers: ((c: Call) => Response)[]) {
  const calls: Call[] = [];
  const fetchImpl = async (url: string, init: RequestInit = {}) => {
    const c = { url, init };
    calls.push(c);
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${url}`);
    return next(c);
  };
  return { calls, fetchImpl };
}

const header = (c: Call, name: string) => (c.init.headers as Record<string, string>)[name];

describe("ApiClient", () => {
  it("sends the bearer token, unwraps the envelope, and addresses each service", async () => {
    const s = server(() => json(200, { success: true, data: { ok: 1 } }));
    const api = new ApiClient(s.fetchImpl, "http://cc");
    api.orchestratorUrl = "http://orch:9090";
    api.setSession({ token: "T1", expiresAt: null });
    expect(await api.get("orch", "/tasks")).toEqual({ ok: 1 });
    expect(s.calls[0].url).toBe("http://orch:9090/tasks");
    expect(header(s.calls[0], "Authorization")).toBe("Bearer T1");
  });

  it("turns an error envelope into an ApiError with the API's message, code and fields", async () => {
    const body = {
      success: false,
      error: "invalid request body: operations.0.id: required",
      code: "validation_failed",
      details: { fields: [{ field: "operations.0.id", message: "required" }], cycle: ["a", "b", "a"] },
    };
    const s = server(() => json(422, body));
    const api = new ApiClient(s.fetchImpl);
    api.setSession({ token: "T", expiresAt: null });
    const err = await api.post("orch", "/batch/execute", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect([e.status, e.code, e.message]).toEqual([422, "validation_failed", body.error]);
    expect(e.fields).toEqual(body.details.fields);
    expect(e.cycle).toEqual(["a", "b", "a"]);
    expect(messageOf(e)).toBe(body.error);
  });

  it("refreshes once with the cookie on a 401 and retries with the new token", async () => {
    const s = server(
      () => json(401, { success: false, error: "the token has expired", code: "unauthorized" }),
      () => json(200, { success: true, data: { token: "T2", expires_at: "later" } }),
      () => json(200, { success: true, data: [1, 2] }),
    );
    const api = new ApiClient(s.fetchImpl);
    api.setSession({ token: "T1", expiresAt: null });
    expect(await api.get("orch", "/tasks")).toEqual([1, 2]);
    const refresh = s.calls[1];
    expect(refresh.url).toBe("/auth/refresh");
    expect(refresh.init.body).toBe("{}");
    expect(refresh.init.credentials).toBe("same-origin");
    expect(header(refresh, "Authorization")).toBeUndefined();
    expect(header(s.calls[2], "Authorization")).toBe("Bearer T2");
    expect(api.token).toBe("T2");
  });

  it("shares one refresh between concurrent 401s", async () => {
    let refreshes = 0;
    const fetchImpl = async (url: string, init: RequestInit = {}) => {
      if (url === "/auth/refresh") {
        refreshes++;
        await new Promise((r) => setTimeout(r, 5));
        return json(200, { success: true, data: { token: "NEW" } });
      }
      const auth = (init.headers as Record<string, string>).Authorization;
      return auth === "Bearer NEW" ? json(200, { success: true, data: url }) : json(401, { success: false, error: "expired" });
    };
    const api = new ApiClient(fetchImpl);
    api.setSession({ token: "OLD", expiresAt: null });
    expect(await Promise.all([api.get("cc", "/a"), api.get("cc", "/b"), api.get("cc", "/c")])).toEqual(["/a", "/b", "/c"]);
    expect(refreshes).toBe(1);
  });

  it("reports a lost session when the refresh is refused, with the API's message", async () => {
    const s = server(
      () => json(401, { success: false, error: "the token has been revoked" }),
      () => json(401, { success: false, error: "the session has ended; log in again" }),
    );
    const api = new ApiClient(s.fetchImpl);
    api.setSession({ token: "T1", expiresAt: null });
    const lost: string[] = [];
    api.onSessionLost = (m) => lost.push(m);
    await expect(api.get("cc", "/users")).rejects.toThrow("the token has been revoked");
    expect(lost).toEqual(["the token has been revoked"]);
    expect(api.signedIn).toBe(false);
  });

  it("a 403 is shown as the API's message, without refreshing", async () => {
    const s = server(() => json(403, { success: false, error: "permission denied: users:read is not granted to vic (roles: viewer)", code: "forbidden" }));
    const api = new ApiClient(s.fetchImpl);
    api.setSession({ token: "T", expiresAt: null });
    await expect(api.get("cc", "/users")).rejects.toThrow("permission denied: users:read is not granted to vic (roles: viewer)");
    expect(s.calls).toHaveLength(1);
  });

  it("reads X-Total-Count and follows the Link header's next page", async () => {
    const s = server(
      () => json(200, { success: true, data: [1, 2] }, { "X-Total-Count": "3", Link: '</batch/operations?offset=2&limit=2>; rel="next", </batch/operations?offset=0&limit=2>; rel="first"' }),
      () => json(200, { success: true, data: [3] }, { "X-Total-Count": "3" }),
    );
    const api = new ApiClient(s.fetchImpl);
    api.orchestratorUrl = "http://orch";
    api.setSession({ token: "T", expiresAt: null });
    const p1 = await api.page<number>("orch", "/batch/operations?limit=2");
    expect(p1).toEqual({ items: [1, 2], total: 3, next: "/batch/operations?offset=2&limit=2" });
    const p2 = await api.page<number>("orch", p1.next as string);
    expect(s.calls[1].url).toBe("http://orch/batch/operations?offset=2&limit=2");
    expect(p2).toEqual({ items: [3], total: 3, next: null });
  });

  it("shows a non-JSON failure as a short message, never a stack", async () => {
    const s = server(() => new Response("<html>Bad gateway</html>", { status: 502 }));
    const api = new ApiClient(s.fetchImpl);
    await expect(api.get("cc", "/health", { anonymous: true })).rejects.toThrow("the server answered 502");
  });

  it("builds stream URLs without a token", () => {
    const api = new ApiClient(async () => json(200, {}), "http://localhost:9080");
    api.orchestratorUrl = "https://orch.example:9443";
    api.setSession({ token: "SECRET", expiresAt: null });
    const u = api.wsUrl("orch", { events: "task,batch", workflow_id: "w1", since: "42", empty: undefined });
    expect(u).toBe("wss://orch.example:9443/ws?events=task%2Cbatch&workflow_id=w1&since=42");
    expect(u).not.toContain("SECRET");
  });
});

describe("parseLinkNext", () => {
  it("finds rel=next among several links, or nothing", () => {
    expect(parseLinkNext('<http://x/a?offset=50>; rel="next"')).toBe("http://x/a?offset=50");
    expect(parseLinkNext('</a?o=0>; rel="prev", </a?o=100>; rel=next')).toBe("/a?o=100");
    expect(parseLinkNext('</a?o=0>; rel="prev"')).toBeNull();
    expect(parseLinkNext(null)).toBeNull();
  });
});
