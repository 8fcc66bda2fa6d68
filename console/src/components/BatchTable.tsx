import { Link } from "../router";
import { summary, type BatchItem } from "../lib/batches";
import { Counts, ProgressBar, StatusBadge, when } from "./ui";

export function BatchTable({ batches, caption }: { batches: BatchItem[]; caption: string }) {
  if (!batches.length) return <p className="muted">No batches.</p>;
  return (
    <div className="table-wrap">
      <table>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            <th scope="col">Batch</th>
            <th scope="col">Status</th>
            <th scope="col">Operations</th>
            <th scope="col">Progress</th>
            <th scope="col">Submitted</th>
          </tr>
        </thead>
        <tbody>
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
        </tbody>
      </table>
    </div>
  );
}
