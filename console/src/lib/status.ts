/** Statuses, each with a glyph and a word so colour is never the only signal. */

export const TASK_STATUSES = ["Pending", "Running", "Completed", "Failed", "Cancelled", "RollingBack", "RolledBack"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

const GLYPHS: Record<string, string> = {
  Pending: "○",
  Running: "▶",
  Completed: "✓",
  Failed: "✗",
  Cancelled: "⊘",
  RollingBack: "↺",
  RolledBack: "⤺",
};

const LABELS: Record<string, string> = { RollingBack: "Rolling back", RolledBack: "Rolled back" };

export function glyph(status: string): string {
  return GLYPHS[status] ?? "•";
}

export function label(status: string): string {
  return LABELS[status] ?? status;
}

/** The CSS class of a status (colours in styles.css, AA contrast on both themes). */
export function statusClass(status: string): string {
  return `st-${status.toLowerCase()}`;
}

export function isFinal(status: string): boolean {
  return status === "Completed" || status === "Failed" || status === "Cancelled" || status === "RolledBack";
}
