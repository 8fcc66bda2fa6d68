/** Every batch, newest first, filtered by status; pages follow the API's Link header. */

import { useEffect, useState } from "react";
import { useApp } from "../context";
import type { BatchItem } from "../lib/batches";
import { BatchTable } from "../components/BatchTable";
import { ErrorBox, Loading } from "../components/ui";
import { queryOf, useNavigate } from "../router";

const STATUSES = ["", "Running", "Completed", "Failed", "Cancelled"];

export function Batches({ path }: { path: string }) {
  const { api } = useApp();
  const navigate = useNavigate();
  const status = queryOf(path).get("status") ?? "";
  const [items, setItems] = useState<BatchItem[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [total, setTotal] = useState<number | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    setItems(null);
    const q = new URLSearchParams({ limit: "25" });
    if (status) q.set("status", status);
    api.page<BatchItem>("orch", `/batch/operations?${q}`).then(
      (p) => {
        setItems(p.items);
        setNext(p.next);
        setTotal(p.total);
        setError(null);
      },
      (e: unknown) => setError(e),
    );
  }, [api, status]);

  const more = async () => {
    if (!next) return;
    try {
      const p = await api.page<BatchItem>("orch", next);
      setItems((old) => [...(old ?? []), ...p.items]);
      setNext(p.next);
    } catch (e) {
      setError(e);
    }
  };

  return (
    <section aria-labelledby="batches-title">
      <h1 id="batches-title">Batches</h1>
      <label htmlFor="status-filter">Status</label>{" "}
      <select id="status-filter" value={status} onChange={(e) => navigate(e.target.value ? `/batches?status=${e.target.value}` : "/batches")}>
        {STATUSES.map((s) => (
          <option key={s} value={s}>
            {s || "any"}
          </option>
        ))}
      </select>
      {total !== null ? <span className="muted"> {total} batches</span> : null}
      <ErrorBox error={error} />
      {items ? <BatchTable batches={items} caption="batches" /> : error ? null : <Loading what="batches" />}
      {next ? (
        <button type="button" onClick={() => void more()}>
          Load more
        </button>
      ) : null}
    </section>
  );
}
