import type { StreamStatus } from "../lib/stream";

const TEXT: Record<StreamStatus, string> = { connecting: "connecting", live: "live", reconnecting: "reconnecting", closed: "not live" };

export function LiveBadge({ status, detail }: { status: StreamStatus; detail?: string }) {
  return (
    <span className={`live live-${status}`} role="status" title={detail}>
      <span aria-hidden="true">{status === "live" ? "●" : "○"}</span> {TEXT[status]}
      {detail && status !== "live" ? <span className="muted"> — {detail}</span> : null}
    </span>
  );
}
