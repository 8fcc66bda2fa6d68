/** A batch list item's summary: counts by status and totals, whichever the API gave. */

export interface BatchItem {
  batch_id: string;
  name: string;
  status: string;
  created_at?: string | null;
  completed_at?: string | null;
  progress?: number;
  counts?: Record<string, number>;
  total_operations?: number;
  operations?: { status: string }[];
  error?: string | null;
}

export function summary(b: BatchItem): { counts: Record<string, number>; total: number; progress: number } {
  let counts: Record<string, number> = {};
  if (b.counts && typeof b.counts === "object") counts = { ...b.counts };
  else for (const op of b.operations ?? []) counts[op.status] = (counts[op.status] ?? 0) + 1;
  const total = typeof b.total_operations === "number" ? b.total_operations : Object.values(counts).reduce((s, n) => s + n, 0);
  const progress = typeof b.progress === "number" ? b.progress : total ? (100 * ((counts.Completed ?? 0) + (counts.Failed ?? 0) + (counts.Cancelled ?? 0) + (counts.RolledBack ?? 0))) / total : 0;
  return { counts, total, progress };
}
