/** Reading a batch file (JSON or YAML) and placing the API's field errors next to operations. */

import { parse as parseYaml } from "yaml";
import type { FieldProblem } from "./api";

export interface ParsedBatch {
  doc: Record<string, unknown>;
  ops: { id: string; dependencies: string[] }[];
}

export class ParseError extends Error {}

function depIds(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.map((d) => (typeof d === "string" ? d : d && typeof d === "object" ? String((d as Record<string, unknown>).id ?? "") : "")).filter(Boolean);
}

/** JSON first (a JSON document is YAML too, but JSON's errors are clearer for JSON), then YAML. */
export function parseBatch(text: string): ParsedBatch {
  const trimmed = text.trim();
  if (!trimmed) throw new ParseError("the batch file is empty");
  let doc: unknown;
  if (trimmed.startsWith("{")) {
    try {
      doc = JSON.parse(trimmed);
    } catch (e) {
      throw new ParseError(`not valid JSON: ${(e as Error).message}`);
    }
  } else {
    try {
      doc = parseYaml(trimmed, { maxAliasCount: 100 });
    } catch (e) {
      throw new ParseError(`not valid YAML: ${(e as Error).message}`);
    }
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new ParseError("a batch file holds one object with name and operations");
  const d = doc as Record<string, unknown>;
  const ops = Array.isArray(d.operations)
    ? d.operations.map((o, i) => {
        const op = (o && typeof o === "object" ? o : {}) as Record<string, unknown>;
        return { id: typeof op.id === "string" && op.id ? op.id : `#${i}`, dependencies: depIds(op.dependencies) };
      })
    : [];
  return { doc: d, ops };
}

export interface PlacedProblems {
  /** Problems of an operation, by its id. */
  byOperation: Record<string, { field: string; message: string }[]>;
  /** Problems of the batch itself (name, parallel_limit, the body). */
  batch: { field: string; message: string }[];
}

/** `operations.2.dependencies` → operation #2's id, field `dependencies`. */
export function placeProblems(fields: FieldProblem[], ops: { id: string }[]): PlacedProblems {
  const out: PlacedProblems = { byOperation: {}, batch: [] };
  for (const f of fields) {
    const m = /^operations[.[](\d+)\]?\.?(.*)$/.exec(f.field ?? "");
    const index = m ? Number(m[1]) : -1;
    const opId = f.operation ?? (index >= 0 ? (ops[index]?.id ?? `#${index}`) : undefined);
    if (opId !== undefined) {
      (out.byOperation[opId] ??= []).push({ field: m?.[2] || f.field, message: f.message });
    } else out.batch.push({ field: f.field, message: f.message });
  }
  return out;
}
