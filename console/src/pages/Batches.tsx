/** Every batch, newest first, filtered by status; pages follow the API's Link header. */

import type { BatchItem } from "../lib/batches";
import { BatchTable } from "../components/BatchTable";
import { ListView, Page, usePaged } from "../components/data";
import { queryOf, useNavigate } from "../router";

const STATUSES = ["", "Running", "Completed", "Failed", "Cancelled"];

export function Batches({ path }: { path: string }) {
  const navigate = useNavigate();
  const status = queryOf(path).get("status") ?? "";
  const q = new URLSearchParams({ limit: "25" });
  if (status) q.set("status", status);
  const list = usePaged<BatchItem>("orch", `/batch/operations?${q}`);
  return (
    <Page id="batches-title" title="Batches">
      <label htmlFor="status-filter">Status</label>{" "}
      <select id="status-filter" value={status} onChange={(e) => navigate(e.target.value ? `/batches?status=${e.target.value}` : "/batches")}>
        {STATUSES.map((s) => (
          <option key={s} value={s}>
            {s || "any"}
          </option>
        ))}
      </select>
      {list.total !== null ? <span className="muted"> {list.total} batches</span> : null}
      <ListView list={list} what="batches">
        {(items) => <BatchTable batches={items} caption="batches" />}
      </ListView>
    </Page>
  );
}
