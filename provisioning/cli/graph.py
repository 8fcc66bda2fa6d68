"""A batch's dependency graph as text: ``ascii`` (generations, for a terminal), ``dot``
(Graphviz) and ``mermaid`` (Markdown renderers), from the batch's operations."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

COLOURS = {
    "Pending": ("#eeeeee", "lightgrey"),
    "Running": ("#bbdefb", "lightblue"),
    "Completed": ("#c8e6c9", "palegreen"),
    "Failed": ("#ffcdd2", "salmon"),
    "Cancelled": ("#ffe0b2", "orange"),
    "RollingBack": ("#fff9c4", "khaki"),
    "RolledBack": ("#e1bee7", "plum"),
}


class GraphFormat(StrEnum):
    ascii = "ascii"
    dot = "dot"
    mermaid = "mermaid"


def generations(operations: list[dict[str, Any]]) -> list[list[str]]:
    """Operations by generation: the first has no dependencies, each next one depends
    only on earlier ones (submission order within a generation). Operations caught in
    a cycle, which a stored batch never has, form a last generation."""
    ids = [str(op["id"]) for op in operations]
    deps = {
        str(op["id"]): {str(d) for d in op.get("dependencies") or [] if str(d) in ids} for op in operations
    }
    placed: set[str] = set()
    out: list[list[str]] = []
    while len(placed) < len(ids):
        level = [i for i in ids if i not in placed and deps[i] <= placed]
        if not level:
            out.append([i for i in ids if i not in placed])
            break
        out.append(level)
        placed.update(level)
    return out


def render(batch: dict[str, Any], fmt: GraphFormat) -> str:
    ops = list(batch.get("operations") or [])
    if fmt is GraphFormat.dot:
        return dot(batch, ops)
    if fmt is GraphFormat.mermaid:
        return mermaid(ops)
    return ascii_graph(batch, ops)


def ascii_graph(batch: dict[str, Any], ops: list[dict[str, Any]]) -> str:
    by_id = {str(op["id"]): op for op in ops}
    width = max((len(i) for i in by_id), default=0)
    lines = [f"{batch.get('name', '')} ({batch.get('batch_id', '')}): {batch.get('status', '')}"]
    for n, level in enumerate(generations(ops), start=1):
        lines.append(f"generation {n}")
        for op_id in level:
            op = by_id[op_id]
            deps = ", ".join(str(d) for d in op.get("dependencies") or [])
            arrow = f"  <- {deps}" if deps else ""
            lines.append(f"  {op_id:<{width}}  {op.get('status', ''):<11}{arrow}".rstrip())
    return "\n".join(lines)


def _quoted(text: str) -> str:
    return json.dumps(text)  # a DOT string literal escapes like JSON's


def dot(batch: dict[str, Any], ops: list[dict[str, Any]]) -> str:
    lines = [f"digraph {_quoted(str(batch.get('name') or 'batch'))} {{", "  rankdir=LR;"]
    lines.append('  node [shape=box, style="rounded,filled", fontname="Helvetica"];')
    for op in ops:
        status = str(op.get("status", ""))
        colour = COLOURS.get(status, ("#ffffff", "white"))[1]
        label = f"{op['id']}\n{status}"
        lines.append(f"  {_quoted(str(op['id']))} [label={_quoted(label)}, fillcolor={_quoted(colour)}];")
    for op in ops:
        for dep in op.get("dependencies") or []:
            lines.append(f"  {_quoted(str(dep))} -> {_quoted(str(op['id']))};")
    lines.append("}")
    return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def mermaid(ops: list[dict[str, Any]]) -> str:
    node = {str(op["id"]): f"op{n}" for n, op in enumerate(ops)}
    lines = ["flowchart LR"]
    for op in ops:
        status = str(op.get("status", ""))
        label = f"{_mermaid_label(str(op['id']))}<br/>{_mermaid_label(status)}"
        lines.append(f'  {node[str(op["id"])]}["{label}"]:::{status.lower() or "unknown"}')
    for op in ops:
        for dep in op.get("dependencies") or []:
            if str(dep) in node:
                lines.append(f"  {node[str(dep)]} --> {node[str(op['id'])]}")
    for status, (fill, _) in COLOURS.items():
        lines.append(f"  classDef {status.lower()} fill:{fill}")
    return "\n".join(lines)
