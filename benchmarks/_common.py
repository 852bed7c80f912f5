"""Helpers shared by the benchmark scripts: machine description and JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# $FEROPS_BENCH_RESULTS: where the smoke tests write, so they never overwrite real figures.
RESULTS = Path(os.environ.get("FEROPS_BENCH_RESULTS") or PROJECT / "benchmarks" / "results")
SHARED_DATA = Path(os.environ.get("FEROPS_SHARED_DATA", PROJECT.parent / "shared" / "data"))


def describe_machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "gpu": describe_gpus()}


def describe_gpus() -> list[str] | None:
    """Each NVIDIA GPU's name and memory, or None where there is none (or no driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    gpus = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return gpus if out.returncode == 0 and gpus else None


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "when": datetime.now(UTC).isoformat(timespec="seconds"),
               "machine": describe_machine(), **payload}
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return out
