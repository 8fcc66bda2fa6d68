import { describe, expect, it } from "vitest";
import { COL_W, layerNodeId, layout } from "../src/lib/graph";
import { depths } from "../src/lib/events";

const op = (id: string, ...dependencies: string[]) => ({ id, dependencies, status: "Pending" });

describe("depths", () => {
  it("is the longest path from a root", () => {
    const d = depths([op("a"), op("b", "a"), op("c", "a", "b"), op("d")]);
    expect(Object.fromEntries(d)).toEqual({ a: 0, b: 1, c: 2, d: 0 });
  });

  it("handles a 5,000-long chain without recursion", () => {
    const ops = Array.from({ length: 5000 }, (_, i) => (i ? op(`n${i}`, `n${i - 1}`) : op("n0")));
    expect(depths(ops).get("n4999")).toBe(4999);
  });

  it("still places the nodes of a cycle, after what they depend on outside it", () => {
    const d = depths([op("root"), op("a", "root", "b"), op("b", "a")]);
    expect(d.get("root")).toBe(0);
    expect(d.get("a")).toBe(1);
    expect(d.get("b")).toBe(0);
  });

  it("ignores unknown dependencies and self-dependencies", () => {
    const d = depths([op("a", "ghost", "a")]);
    expect(d.get("a")).toBe(0);
  });
});

describe("layout", () => {
  it("places operations left to right by depth, with an edge per dependency", () => {
    const l = layout([op("net"), op("srv", "net"), op("db", "srv"), op("mon", "db", "net")]);
    const x = Object.fromEntries(l.nodes.map((n) => [n.id, n.x]));
    expect(x).toEqual({ net: 0, srv: COL_W, db: 2 * COL_W, mon: 3 * COL_W });
    expect(l.edges.map((e) => e.id).sort()).toEqual(["db->mon", "net->mon", "net->srv", "srv->db"]);
    expect(l.layers).toBe(4);
    expect(l.grouped).toBe(false);
  });

  it("orders a layer by the rows of its dependencies (fewer crossings)", () => {
    // b1 depends on a2 (row 1) and b2 on a1 (row 0): b2 comes first.
    const l = layout([op("a1"), op("a2"), op("b1", "a2"), op("b2", "a1")]);
    const layer1 = l.nodes
      .filter((n) => n.depth === 1)
      .sort((p, q) => p.y - q.y)
      .map((n) => n.id);
    expect(layer1).toEqual(["b2", "b1"]);
  });

  it("groups big layers of a big batch into one node with counts, and draws more on request", () => {
    const ops = [op("root")];
    for (let i = 0; i < 400; i++) ops.push({ id: `w${i}`, dependencies: ["root"], status: i < 10 ? "Completed" : "Pending" });
    ops.push(op("end", "w0", "w1"));
    const l = layout(ops, { threshold: 300, groupMin: 12 });
    expect(l.grouped).toBe(true);
    const group = l.nodes.find((n) => n.id === layerNodeId(1));
    expect(group?.kind).toBe("layer");
    expect(group?.opIds).toHaveLength(400);
    expect(group?.counts).toEqual({ Completed: 10, Pending: 390 });
    // Edges are deduplicated between representatives.
    expect(l.edges.map((e) => e.id).sort()).toEqual(["layer:1->end", "root->layer:1"]);
    expect(l.nodes).toHaveLength(3);

    const some = layout(ops, { threshold: 300, groupMin: 12, expanded: new Map([[1, 100]]) });
    expect(some.nodes.filter((n) => n.kind === "op")).toHaveLength(102);
    expect(some.nodes.find((n) => n.id === layerNodeId(1))?.opIds).toHaveLength(300);
    // root -> 100 drawn, root -> the rest, w0 and w1 -> end.
    expect(some.edges).toHaveLength(103);

    const all = layout(ops, { threshold: 300, groupMin: 12, expanded: new Map([[1, 400]]) });
    expect(all.nodes).toHaveLength(402);
    expect(all.edges).toHaveLength(402);
  });

  it("a 5,000-operation batch lays out as a handful of nodes", () => {
    const ops = [op("root")];
    for (let i = 0; i < 4998; i++) ops.push(op(`w${i}`, "root"));
    ops.push(op("end", ...ops.slice(1, 50).map((o) => o.id)));
    const l = layout(ops);
    expect(l.nodes.length).toBe(3);
  });

  it("marks the cycle the API named", () => {
    const l = layout([op("a", "c"), op("b", "a"), op("c", "b")], { cycle: ["a", "b", "c", "a"] });
    expect(l.nodes.every((n) => n.onCycle)).toBe(true);
    expect(
      l.edges
        .filter((e) => e.onCycle)
        .map((e) => e.id)
        .sort(),
    ).toEqual(["a->b", "b->c", "c->a"]);
  });
});
