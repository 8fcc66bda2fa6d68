import { Link } from "../router";
import { summary, type BatchItem } from "../lib/batches";
import { DataTable } from "./data";
import { Counts, ProgressBar, StatusBadge, when } from "./ui";

export function BatchTable({ batches, caption }: { batches: BatchItem[]; caption: string }) {
  if (!batches.length) return <p className="muted">No batches.</p>;
  return (
    <DataTable caption={caption} columns={["Batch", "Status", "Operations", "Progress", "Submitted"]}>
      {batches.map((b) => {
        const s = summary(b);
        return (
          <tr key={b.batch_id}>
            <td>
              <Link to={`/batches/${encodeURIComponent(b.batch_id)}`}>{b.name}</Link>
            </td>
            <td>
              <StatusBadge status={b.status} />
            </td>
            <td>
              <span className="muted">{s.total} total</span> <Counts counts={s.counts} />
            </td>
            <td className="progress-cell">
              <ProgressBar value={s.progress} label={`progress of ${b.name}`} />
            </td>
            <td>{when(b.created_at)}</td>
          </tr>
        );
      })}
    </DataTable>
  );
}
