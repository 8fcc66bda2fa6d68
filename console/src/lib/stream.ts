/**
 * A live event stream over a service's `/ws` that survives: the token goes in the first
 * message (never the URL), a lost connection comes back with exponential backoff and
 * `since=<last event id>` so no transition is lost or applied twice, and an expired token
 * (close 4401) is refreshed first.
 */

import type { StreamEvent } from "./events";

export type StreamStatus = "connecting" | "live" | "reconnecting" | "closed";

export interface WebSocketLike {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export interface StreamOptions {
  /** The `/ws` URL for a connection resuming after `since` (0: from now). */
  url: (since: number) => string;
  token: () => string | null;
  refresh: () => Promise<boolean>;
  onEvent: (ev: StreamEvent) => void;
  onStatus?: (status: StreamStatus, detail?: string) => void;
  /** `since` was older than what the server retains: reload over REST. */
  onGap?: () => void;
  /** Authentication could not be renewed. */
  onUnauthorized?: (reason: string) => void;
  makeSocket?: (url: string) => WebSocketLike;
  initialDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** The wait before reconnect attempt `attempt` (0-based): doubling, capped, with ±20 % jitter. */
export function backoffDelay(attempt: number, initialMs = 500, maxMs = 15_000, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_FORBIDDEN = 4403;

export class LiveStream {
  lastEventId: number;
  private socket: WebSocketLike | null = null;
  private attempt = 0;
  private timer: unknown = null;
  private stopped = false;
  private readonly o: StreamOptions;

  constructor(options: StreamOptions, since = 0) {
    this.o = options;
    this.lastEventId = since;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) (this.o.clearTimer ?? clearTimeout)(this.timer as ReturnType<typeof setTimeout>);
    this.timer = null;
    const s = this.socket;
    this.socket = null;
    if (s) {
      s.onclose = null;
      s.onmessage = null;
      s.close(1000, "page closed");
    }
    this.status("closed");
  }

  private status(s: StreamStatus, detail?: string): void {
    this.o.onStatus?.(s, detail);
  }

  private connect(): void {
    if (this.stopped) return;
    const token = this.o.token();
    if (!token) {
      this.o.onUnauthorized?.("not signed in");
      return;
    }
    this.status(this.attempt === 0 ? "connecting" : "reconnecting");
    const make = this.o.makeSocket ?? ((url: string) => new WebSocket(url) as unknown as WebSocketLike);
    const socket = make(this.o.url(this.lastEventId));
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.o.token() ?? token }));
    socket.onmessage = (m) => this.message(m.data);
    socket.onerror = () => undefined;
    socket.onclose = (ev) => this.closed(ev.code, ev.reason);
  }

  private message(raw: unknown): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(String(raw)) as Record<string, unknown>;
    } catch {
      return;
    }
    if (typeof msg.event_type === "string") {
      const ev = msg as unknown as StreamEvent;
      if (typeof ev.id === "number") {
        if (ev.id <= this.lastEventId) return;
        this.lastEventId = ev.id;
      }
      this.o.onEvent(ev);
      return;
    }
    if (msg.type === "welcome") {
      this.attempt = 0;
      if (this.lastEventId === 0 && typeof msg.last_event_id === "number") this.lastEventId = msg.last_event_id;
      this.status("live");
    } else if (msg.type === "gap") {
      this.o.onGap?.();
    }
  }

  private closed(code: number, reason: string): void {
    this.socket = null;
    if (this.stopped) return;
    if (code === CLOSE_FORBIDDEN) {
      this.status("closed", reason || "not allowed to read these events");
      return;
    }
    if (code === CLOSE_UNAUTHORIZED) {
      this.status("reconnecting", "renewing the session");
      void this.o.refresh().then((ok) => {
        if (this.stopped) return;
        if (ok) this.schedule(0);
        else {
          this.status("closed", reason || "signed out");
          this.o.onUnauthorized?.(reason || "the session has ended");
        }
      });
      return;
    }
    const delay = backoffDelay(this.attempt, this.o.initialDelayMs, this.o.maxDelayMs, this.o.random);
    this.attempt += 1;
    this.status("reconnecting", `connection lost; retrying in ${Math.ceil(delay / 1000)} s`);
    this.schedule(delay);
  }

  private schedule(ms: number): void {
    const set = this.o.setTimer ?? ((fn: () => void, t: number) => setTimeout(fn, t));
    this.timer = set(() => {
      this.timer = null;
      this.connect();
    }, ms);
  }
}
