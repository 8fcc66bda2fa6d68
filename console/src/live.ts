/** React glue for live streams: a LiveStream per component, and a debounced reloader. */

import { useEffect, useRef, useState } from "react";
import type { Service } from "./lib/api";
import type { StreamEvent } from "./lib/events";
import { LiveStream, type StreamStatus } from "./lib/stream";
import { useApp } from "./context";

export interface LiveOptions {
  service: Service;
  query: Record<string, string | undefined>;
  enabled?: boolean;
  onEvent: (ev: StreamEvent) => void;
  onGap?: () => void;
  /** Resume after this id (the REST load's position), when known. */
  since?: number;
  /** Each time the stream is (again) live: after its welcome message. */
  onLive?: () => void;
}

export function useLive(opts: LiveOptions): { status: StreamStatus; detail: string | undefined } {
  const { api } = useApp();
  const [status, setStatus] = useState<StreamStatus>("connecting");
  const [detail, setDetail] = useState<string | undefined>();
  const handlers = useRef(opts);
  handlers.current = opts;
  const key = JSON.stringify([opts.service, opts.query, opts.enabled !== false]);
  useEffect(() => {
    if (opts.enabled === false) return undefined;
    const stream = new LiveStream(
      {
        url: (since) => api.wsUrl(opts.service, { ...opts.query, since: since > 0 ? String(since) : undefined }),
        token: () => api.token,
        refresh: () => api.refresh(),
        onEvent: (ev) => handlers.current.onEvent(ev),
        onGap: () => handlers.current.onGap?.(),
        onStatus: (s, d) => {
          if (s === "live") handlers.current.onLive?.();
          setStatus(s);
          setDetail(d);
        },
        onUnauthorized: (reason) => api.onSessionLost(reason),
      },
      opts.since ?? 0,
    );
    stream.start();
    return () => stream.stop();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, api]);
  return { status, detail };
}

/** Calls `fn` once, `ms` after the last of a burst of triggers. */
export function useDebounced(fn: () => void, ms: number): () => void {
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const f = useRef(fn);
  f.current = fn;
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return () => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      f.current();
    }, ms);
  };
}
