"""Running a benchmark program's quick mode as a subprocess (no fixtures here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def quick_run(program: str, tmp_path: Path, parts: str, timeout_s: float) -> dict[str, Any]:
    """``bench/<program>.py --quick --parts <parts>``; its JSON results."""
    out = tmp_path / f"{program}.json"
    command = [sys.executable, str(ROOT / "bench" / f"{program}.py"), "--quick", "--parts", parts]
    done = subprocess.run(
        [*command, "--out", str(out), "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return results
