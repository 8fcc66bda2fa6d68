/**
 * The DAG's layout input: operations placed left to right by dependency depth.
 *
 * Our own layered layout (no elkjs): x is the longest-path depth, and inside a layer the
 * order follows the mean position of each node's dependencies (one barycentre pass) so
 * edges cross less. Past {@link GROUP_THRESHOLD} operations, every layer holding more than
 * {@link GROUP_MIN} operations becomes one node with its counts by status, which draws
 * {@link EXPAND_STEP} more of its operations at each request (the rest stay grouped); the
 * canvas also draws only the nodes in view, so a 5,000-operation batch stays usable.
 */

import { depths } from "./events";

export const GROUP_THRESHOLD = 300;
export const GROUP_MIN = 12;
/** How many more operations of a grouped layer each "show more" draws. */
export const EXPAND_STEP = 100;
export const COL_W = 250;
export const ROW_H = 84;

export interface GraphOp {
  id: string;
  dependencies: string[];
  status?: string;
}

export interface LayoutNode {
  id: string;
  kind: "op" | "layer";
  depth: number;
  x: number;
  y: number;
  /** The operation (kind op) or the layer's operations (kind layer). */
  opIds: string[];
  counts?: Record<string, number>;
  onCycle?: boolean;
}

export interface LayoutEdge {
  id: string;
  source: string;
  target: string;
  onCycle?: boolean;
}

export interface Layout {
  nodes: LayoutNode[];
  edges: LayoutEdge[];
  layers: number;
  grouped: boolean;
}

export interface LayoutOptions {
  threshold?: number;
  groupMin?: number;
  /** How many operations of each grouped layer (by depth) the user asked to see. */
  expanded?: ReadonlyMap<number, number>;
  /** A dependency cycle to mark, as the API names it: a -> b -> a. */
  cycle?: string[] | null;
}

export const layerNodeId = (depth: number): string => `layer:${depth}`;

export function layout(ops: GraphOp[], options: LayoutOptions = {}): Layout {
  const threshold = options.threshold ?? GROUP_THRESHOLD;
  const groupMin = options.groupMin ?? GROUP_MIN;
  const expanded = options.expanded ?? new Map<number, number>();
  const depth = depths(ops);
  const byId = new Map(ops.map((o) => [o.id, o]));
  const layers: string[][] = [];
  for (const op of ops) {
    const d = depth.get(op.id) ?? 0;
    (layers[d] ??= []).push(op.id);
  }
  for (let d = 0; d < layers.length; d++) layers[d] ??= [];

  // One barycentre pass: order each layer by the mean row of its dependencies.
  const row = new Map<string, number>();
  layers.forEach((layer, d) => {
    if (d > 0) {
      const key = (id: string): number => {
        const ds = (byId.get(id)?.dependencies ?? []).filter((x) => row.has(x));
        return ds.length ? ds.reduce((s, x) => s + (row.get(x) ?? 0), 0) / ds.length : Number.MAX_SAFE_INTEGER;
      };
      const keyed = layer.map((id, i) => ({ id, i, k: key(id) }));
      keyed.sort((a, b) => a.k - b.k || a.i - b.i);
      layers[d] = keyed.map((e) => e.id);
    }
    layers[d].forEach((id, i) => row.set(id, i));
  });

  const grouped = ops.length > threshold;
  const cycle = options.cycle ?? null;
  const onCycle = new Set(cycle ?? []);
  const cycleEdges = new Set<string>();
  if (cycle) for (let i = 0; i + 1 < cycle.length; i++) cycleEdges.add(`${cycle[i]}->${cycle[i + 1]}`);

  const rep = new Map<string, string>();
  const nodes: LayoutNode[] = [];
  layers.forEach((layer, d) => {
    const groupable = grouped && layer.length > groupMin;
    const shown = groupable ? layer.slice(0, Math.min(layer.length, expanded.get(d) ?? 0)) : layer;
    const rest = layer.slice(shown.length);
    // A grouped layer keeps its node where it was (the user's click) and draws the
    // operations asked for below it; other layers are centred on the axis.
    const top = groupable ? (rest.length ? ROW_H : 0) : -((layer.length - 1) * ROW_H) / 2;
    shown.forEach((id, i) => {
      rep.set(id, id);
      nodes.push({ id, kind: "op", depth: d, x: d * COL_W, y: top + i * ROW_H, opIds: [id], onCycle: onCycle.has(id) });
    });
    if (rest.length) {
      const counts: Record<string, number> = {};
      for (const id of rest) {
        const s = byId.get(id)?.status ?? "Pending";
        counts[s] = (counts[s] ?? 0) + 1;
        rep.set(id, layerNodeId(d));
      }
      nodes.push({ id: layerNodeId(d), kind: "layer", depth: d, x: d * COL_W, y: 0, opIds: rest, counts });
    }
  });

  const edges: LayoutEdge[] = [];
  const seen = new Set<string>();
  for (const op of ops) {
    for (const dep of op.dependencies) {
      if (!byId.has(dep)) continue;
      const source = rep.get(dep) as string;
      const target = rep.get(op.id) as string;
      if (source === target) continue;
      const id = `${source}->${target}`;
      if (seen.has(id)) continue;
      seen.add(id);
      edges.push({ id, source, target, onCycle: cycleEdges.has(`${dep}->${op.id}`) });
    }
  }
  return { nodes, edges, layers: layers.length, grouped };
}
