/** The batch's DAG: React Flow over our layered layout, nodes coloured by status with glyph and word. */

import { memo, useMemo } from "react";
import { Background, Controls, Handle, MiniMap, Position, ReactFlow, type Edge, type Node, type NodeProps } from "@xyflow/react";
import { EXPAND_STEP, layout, type GraphOp } from "../lib/graph";
import { glyph, label, statusClass } from "../lib/status";
import { Counts } from "./ui";

export interface DagOp extends GraphOp {
  status: string;
  progress?: number;
  message?: string | null;
  provider?: string;
}

type OpData = { op: DagOp; selected: boolean; onCycle: boolean };
type LayerData = { depth: number; count: number; partial: boolean; counts: Record<string, number>; onExpand: (d: number) => void };

const OpNode = memo(function OpNode({ data }: NodeProps<Node<OpData>>) {
  const { op } = data;
  return (
    <div className={`dag-node ${statusClass(op.status)}${data.selected ? " is-selected" : ""}${data.onCycle ? " on-cycle" : ""}`} data-op={op.id} data-status={op.status}>
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="dag-node-title">
        <span aria-hidden="true">{glyph(op.status)}</span> <strong>{op.id}</strong>
      </div>
      <div className="dag-node-status">
        {label(op.status)}
        {op.status === "Running" && op.progress ? ` ${Math.round(op.progress)}%` : ""}
        {op.provider ? <span className="muted"> · {op.provider}</span> : null}
      </div>
      {op.status === "Running" && op.message ? <div className="dag-node-msg">{op.message}</div> : null}
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
});

const LayerNode = memo(function LayerNode({ data }: NodeProps<Node<LayerData>>) {
  return (
    <div className="dag-node dag-layer" data-layer={data.depth}>
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="dag-node-title">
        <strong>
          Layer {data.depth + 1}: {data.count} {data.partial ? "more " : ""}operations
        </strong>
      </div>
      <Counts counts={data.counts} />
      <button type="button" className="nodrag" onClick={() => data.onExpand(data.depth)}>
        Show {Math.min(EXPAND_STEP, data.count)} of layer {data.depth + 1}
      </button>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
});

const nodeTypes = { op: OpNode, layer: LayerNode };

export interface DagProps {
  ops: DagOp[];
  selected?: string | null;
  onSelect?: (id: string) => void;
  expanded?: ReadonlyMap<number, number>;
  onExpand?: (depth: number) => void;
  cycle?: string[] | null;
  label: string;
}

export function Dag({ ops, selected = null, onSelect, expanded, onExpand, cycle, label: ariaLabel }: DagProps) {
  // The layout depends on the structure only; statuses are mapped onto it every render.
  const structure = ops.map((o) => `${o.id}<${o.dependencies.join(",")}`).join(";");
  const grouping = ops.length > 300 ? ops.map((o) => o.status).join(",") : "";
  const lay = useMemo(
    () => layout(ops, { expanded, cycle }),
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [structure, grouping, expanded, cycle?.join(">")],
  );
  const byId = useMemo(() => new Map(ops.map((o) => [o.id, o])), [ops]);
  const nodes: Node[] = lay.nodes.map((n) =>
    n.kind === "layer"
      ? {
          id: n.id,
          type: "layer",
          position: { x: n.x, y: n.y },
          data: {
            depth: n.depth,
            count: n.opIds.length,
            partial: (expanded?.get(n.depth) ?? 0) > 0,
            counts: n.counts ?? {},
            onExpand: onExpand ?? (() => undefined),
          },
          draggable: false,
          ariaLabel: `layer ${n.depth + 1}, ${n.opIds.length} operations`,
        }
      : {
          id: n.id,
          type: "op",
          position: { x: n.x, y: n.y },
          data: { op: byId.get(n.id) as DagOp, selected: selected === n.id, onCycle: !!n.onCycle },
          draggable: false,
          selected: selected === n.id,
          ariaLabel: `${n.id}: ${label(byId.get(n.id)?.status ?? "")}`,
        },
  );
  const edges: Edge[] = lay.edges.map((e) => ({
    id: e.id,
    source: e.source,
    target: e.target,
    className: e.onCycle ? "cycle-edge" : undefined,
    animated: e.onCycle || byId.get(e.target)?.status === "Running",
  }));
  return (
    <div className="dag" role="region" aria-label={ariaLabel}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable
        onlyRenderVisibleElements
        fitView
        fitViewOptions={{ padding: 0.15, maxZoom: 1.2 }}
        minZoom={0.05}
        onNodeClick={(_, node) => {
          if (node.type === "op") onSelect?.(node.id);
        }}
        proOptions={{ hideAttribution: true }}
      >
        <Background />
        <Controls showInteractive={false} />
        {ops.length > 30 ? <MiniMap pannable zoomable /> : null}
      </ReactFlow>
    </div>
  );
}
