import { describe, expect, it } from "vitest";
import { LiveStream, backoffDelay, type WebSocketLike } from "../src/lib/stream";
import type { StreamEvent } from "../src/lib/events";

class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: string[] = [];
  closed = false;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(msg: unknown) {
    this.onmessage?.({ data: JSON.stringify(msg) });
  }
  drop(code: number, reason = "") {
    this.onclose?.({ code, reason });
  }
}

function harness(refreshOk = true) {
  const sockets: FakeSocket[] = [];
  const timers: { fn: () => void; ms: number }[] = [];
  const events: StreamEvent[] = [];
  const statuses: string[] = [];
  let token = "T1";
  let refreshes = 0;
  const unauthorized: string[] = [];
  const stream = new LiveStream({
    url: (since) => `ws://orch/ws?events=task${since ? `&since=${since}` : ""}`,
    token: () => token,
    refresh: async () => {
      refreshes++;
      if (refreshOk) token = `T${refreshes + 1}`;
      return refreshOk;
    },
    onEvent: (e) => events.push(e),
    onStatus: (s) => statuses.push(s),
    onUnauthorized: (r) => unauthorized.push(r),
    makeSocket: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    random: () => 0.5,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
    clearTimer: () => undefined,
  });
  return { stream, sockets, timers, events, statuses, unauthorized, refreshes: () => refreshes };
}

const event = (id: number) => ({ id, event_type: "TaskStatusChanged", data: { task_id: "t", status: "Running" } });

describe("backoffDelay", () => {
  it("doubles from the initial delay up to the cap, with bounded jitter", () => {
    const mid = () => 0.5;
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, 500, 15_000, mid))).toEqual([500, 1000, 2000, 4000]);
    expect(backoffDelay(30, 500, 15_000, mid)).toBe(15_000);
    expect(backoffDelay(0, 1000, 15_000, () => 0)).toBe(800);
    expect(backoffDelay(0, 1000, 15_000, () => 1)).toBe(1200);
  });
});

describe("LiveStream", () => {
  it("authenticates in the first message, never in the URL", () => {
    const h = harness();
    h.stream.start();
    const s = h.sockets[0];
    expect(s.url).not.toContain("token");
    s.open();
    expect(JSON.parse(s.sent[0])).toEqual({ type: "auth", token: "T1" });
    s.receive({ type: "welcome", last_event_id: 10, events: ["task"] });
    expect(h.statuses.at(-1)).toBe("live");
  });

  it("reconnects with backoff and resumes after the last event, dropping duplicates", () => {
    const h = harness();
    h.stream.start();
    h.sockets[0].open();
    h.sockets[0].receive({ type: "welcome", last_event_id: 10 });
    h.sockets[0].receive(event(11));
    h.sockets[0].receive(event(12));
    h.sockets[0].drop(1006);
    expect(h.timers.at(-1)?.ms).toBe(500);
    h.timers.at(-1)?.fn();
    expect(h.sockets[1].url).toBe("ws://orch/ws?events=task&since=12");
    h.sockets[1].open();
    h.sockets[1].receive(event(12)); // replayed: already seen
    h.sockets[1].receive(event(13));
    expect(h.events.map((e) => e.id)).toEqual([11, 12, 13]);
    // A second loss in a row waits longer; a welcome resets the backoff.
    h.sockets[1].drop(1006);
    expect(h.timers.at(-1)?.ms).toBe(1000);
    h.timers.at(-1)?.fn();
    h.sockets[2].open();
    h.sockets[2].receive({ type: "welcome", last_event_id: 13 });
    h.sockets[2].drop(1001);
    expect(h.timers.at(-1)?.ms).toBe(500);
  });

  it("refreshes the token on 4401 and reconnects with the new one", async () => {
    const h = harness();
    h.stream.start();
    h.sockets[0].open();
    h.sockets[0].receive(event(5));
    h.sockets[0].drop(4401, "token expired");
    await Promise.resolve();
    await Promise.resolve();
    expect(h.refreshes()).toBe(1);
    expect(h.timers.at(-1)?.ms).toBe(0);
    h.timers.at(-1)?.fn();
    h.sockets[1].open();
    expect(JSON.parse(h.sockets[1].sent[0])).toEqual({ type: "auth", token: "T2" });
    expect(h.sockets[1].url).toContain("since=5");
  });

  it("gives up and reports when the session cannot be renewed", async () => {
    const h = harness(false);
    h.stream.start();
    h.sockets[0].open();
    h.sockets[0].drop(4401, "revoked");
    await Promise.resolve();
    await Promise.resolve();
    expect(h.unauthorized).toEqual(["revoked"]);
    expect(h.statuses.at(-1)).toBe("closed");
    expect(h.timers).toHaveLength(0);
  });

  it("passes a gap on, and stops for good when stopped", () => {
    let gaps = 0;
    const sockets: FakeSocket[] = [];
    const s = new LiveStream({
      url: () => "ws://orch/ws",
      token: () => "T",
      refresh: async () => true,
      onEvent: () => undefined,
      onGap: () => gaps++,
      makeSocket: (url) => {
        const sock = new FakeSocket(url);
        sockets.push(sock);
        return sock;
      },
    });
    s.start();
    const sock = sockets[0];
    sock.open();
    sock.receive({ type: "gap" });
    expect(gaps).toBe(1);
    s.stop();
    expect(sock.closed).toBe(true);
  });
});
