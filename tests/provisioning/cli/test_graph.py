"""A batch's graph as ascii, dot and mermaid (the CLI's rendering of real answers is
checked in test_batches.py)."""

from __future__ import annotations

from provisioning.cli.graph import GraphFormat, generations, render

BATCH = {
    "batch_id": "b1",
    "name": 'say "hi"',
    "status": "Failed",
    "operations": [
        {"id": "net", "status": "Completed", "dependencies": []},
        {"id": "app", "status": "Completed", "dependencies": ["net"]},
        {"id": "db", "status": "Failed", "dependencies": ["net"]},
        {"id": "web", "status": "Cancelled", "dependencies": ["app", "db"]},
    ],
}


def test_generations_follow_the_dependencies_in_submission_order() -> None:
    assert generations(BATCH["operations"]) == [["net"], ["app", "db"], ["web"]]  # type: ignore[arg-type]
    looped = [{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}, {"id": "c"}]
    assert generations(looped) == [["c"], ["a", "b"]]


def test_ascii() -> None:
    assert render(BATCH, GraphFormat.ascii).splitlines() == [
        'say "hi" (b1): Failed',
        "generation 1",
        "  net  Completed",
        "generation 2",
        "  app  Completed    <- net",
        "  db   Failed       <- net",
        "generation 3",
        "  web  Cancelled    <- app, db",
    ]


def test_dot_escapes_and_colours() -> None:
    dot = render(BATCH, GraphFormat.dot)
    assert dot.splitlines()[0] == 'digraph "say \\"hi\\"" {'
    assert '"db" [label="db\\nFailed", fillcolor="salmon"];' in dot
    assert '"app" -> "web";' in dot and '"db" -> "web";' in dot and dot.endswith("}")


def test_mermaid_escapes_labels() -> None:
    weird = {"operations": [{"id": 'a"<b>', "status": "Running"}, {"id": "c", "dependencies": ['a"<b>']}]}
    text = render(weird, GraphFormat.mermaid)
    assert 'op0["a#quot;#lt;b#gt;<br/>Running"]:::running' in text
    assert "op0 --> op1" in text and "classDef failed fill:#ffcdd2" in text
