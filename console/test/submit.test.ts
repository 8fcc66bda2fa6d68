import { describe, expect, it } from "vitest";
import { ParseError, parseBatch, placeProblems } from "../src/lib/submit";

describe("parseBatch", () => {
  it("reads JSON and YAML, with dependencies in either form", () => {
    const j = parseBatch('{"name":"x","operations":[{"id":"a"},{"id":"b","dependencies":["a"]}]}');
    expect(j.ops).toEqual([
      { id: "a", dependencies: [] },
      { id: "b", dependencies: ["a"] },
    ]);
    const y = parseBatch("name: y\noperations:\n  - id: a\n  - id: b\n    dependencies: [{id: a}]\n");
    expect(y.ops[1].dependencies).toEqual(["a"]);
    expect(y.doc.name).toBe("y");
  });

  it("refuses empty, malformed and non-object documents with a message", () => {
    expect(() => parseBatch("  ")).toThrow(ParseError);
    expect(() => parseBatch("{nope")).toThrow(/not valid JSON/);
    expect(() => parseBatch("a: [1, 2")).toThrow(/not valid YAML/);
    expect(() => parseBatch("- 1\n- 2")).toThrow(/one object/);
  });
});

describe("placeProblems", () => {
  it("puts each field error next to its operation, the rest on the batch", () => {
    const ops = [{ id: "net" }, { id: "srv" }];
    const placed = placeProblems(
      [
        { field: "operations.1.dependencies", operation: "srv", message: "depends on unknown operation 'ghost'" },
        { field: "operations.0.type", message: "Input should be 'server_batch'" },
        { field: "parallel_limit", message: "must be at least 1" },
      ],
      ops,
    );
    expect(placed.byOperation).toEqual({
      srv: [{ field: "dependencies", message: "depends on unknown operation 'ghost'" }],
      net: [{ field: "type", message: "Input should be 'server_batch'" }],
    });
    expect(placed.batch).toEqual([{ field: "parallel_limit", message: "must be at least 1" }]);
  });
});
