"""``bench/api.py --quick`` end to end, so the benchmark never rots: it starts
``provisioning up`` with authentication on, logs in through the API (MFA enrolment
included), measures through HTTP and WebSocket, and writes its JSON. The throughput
part runs in the default suite; every part (seeding, reads, a kill -9 and restart)
is ``slow``: ``python3 -m pytest -m slow tests/bench/test_api.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.bench import quick_run


def quick(tmp_path: Path, parts: str, timeout_s: float) -> dict[str, Any]:
    return quick_run("api", tmp_path, parts, timeout_s)


def test_the_quick_throughput_run_measures_every_combination(tmp_path: Path) -> None:
    results = quick(tmp_path, "throughput", 55)
    runs = results["throughput"]["runs"]
    combos = {(r["provider"], r["parallel_limit"], r["poller"]) for r in runs}
    assert combos == {(p, 50, poll) for p in ("noop", "local") for poll in (False, True)}
    for run in runs:
        assert run["n"] == results["sizes"]["n"] and run["ops_per_s"] > 0 and run["commits"] > 0
        assert run["peak_rss_mb"] > 0
        assert run["poller"] or run["polls"] == 0
    # the POST of every batch, up to the one whose latency is compared with the first
    assert len(results["throughput"]["post_ms"]) == max(len(runs), results["sizes"]["batches"])
    assert results["throughput"]["sync_commits"] is True


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_quick_run_of_every_part(tmp_path: Path) -> None:
    results = quick(tmp_path, "throughput,sync,reads", 590)
    assert results["sync"]["sync_commits"] is False and results["sync"]["runs"]
    small, large = results["reads"]["levels"]
    assert (small["tasks"], large["tasks"]) == (results["sizes"]["small"], results["sizes"]["large"])
    for level in (small, large):
        assert set(level["reads"]) == {
            "GET /tasks?limit=50",
            "GET /batch/operations?limit=50",
            "GET /audit/logs?limit=50",
            "GET /state/statistics",
            "GET /batch/operations/{id}",
        }
        assert all(r["requests"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0 for r in level["reads"].values())
        assert level["bare_open"]["open_s"] > 0 and level["bare_open"]["rss_mb"] > 0
    restart = large["restart"]
    assert restart["healthy_s"] > 0 and restart["first_resumed_operation_s"] > 0
    assert restart["operation"].startswith("slow") and restart["rss_after_restart_mb"] > 0
