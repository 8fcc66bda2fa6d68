"""``bench/submit.py --quick`` end to end, so the benchmark never rots: the in-process
steps in the default suite, the HTTP part (``provisioning up`` with authentication on)
as ``slow``: ``python3 -m pytest -m slow tests/bench/test_submit.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bench import quick_run

STEPS = {"parse", "validate", "graph", "build", "commit", "total", "commit_wall", "gc"}


def quick(tmp_path: Path, parts: str, timeout_s: float) -> dict[str, Any]:
    return quick_run("submit", tmp_path, parts, timeout_s)


def test_the_in_process_steps_are_measured_per_size(tmp_path: Path) -> None:
    results = quick(tmp_path, "inprocess", 120)
    assert [r["n"] for r in results["inprocess"]] == results["sizes"]
    for size in results["inprocess"]:
        assert STEPS <= set(size)
        assert size["total"]["best"] > 0 and size["commit_wall"]["best"] > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_http_part_times_every_post(tmp_path: Path) -> None:
    results = quick(tmp_path, "http", 590)
    for size in results["http"]:
        assert len(size["post_ms"]) == len(size["post_cpu_ms"]) == 3
        assert size["p99_ms"] >= size["p50_ms"] > 0
