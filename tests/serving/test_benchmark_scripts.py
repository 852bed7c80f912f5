"""Smoke runs of the serving benchmarks against a real `bentoml serve` of the test champion,
so `python benchmarks/serving.py` and `python benchmarks/soak.py` keep working (short runs;
the figures themselves come from the full runs in benchmarks/README.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.factories import bench, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def bench_env(served: dict, tmp_path: Path) -> dict:
    """The champion in a BentoML home of its own (a server clears its home's Prometheus
    folder at start, which would reset the session server's metrics), project params."""
    home = tmp_path / "bentoml"
    shutil.copytree(Path(served["env"]["BENTOML_HOME"]) / "models", home / "models")
    env = {k: v for k, v in served["env"].items() if k != "FEROPS_PARAMS"}
    return {**env, "BENTOML_HOME": str(home)}


def test_soak_benchmark_checks_answers_and_memory(bench_env: dict, tmp_path: Path):
    out = tmp_path / "results"
    bench("soak.py", ["--seconds", "8", "--rate", "10", "--port", str(free_port()),
                      "--out", "soak-smoke"], out, bench_env, timeout=600)
    result = json.loads((out / "soak-smoke.json").read_text())
    assert result["sent"] >= 60 and result["valid"] > 0 and result["malformed"] > 0
    assert result["wrong_answers"] == 0 and result["malformed_500"] == 0
    assert result["rss_mb"] and result["livez"]
    assert result["decode_burst_40mp"]


def test_serving_benchmark_measures_in_process_and_served(bench_env: dict, tmp_path: Path):
    out = tmp_path / "results"
    bench("serving.py", ["--seconds", "1", "--repeats", "1", "--configs", "eager",
                         "--skip-camera", "--port", str(free_port()), "--out", "serving-smoke"],
          out, bench_env, timeout=600)
    result = json.loads((out / "serving-smoke.json").read_text())
    assert result["in_process"]["faces_per_s_batch128"] > 0
    assert [r["concurrency"] for r in result["classify_closed_loop"]] == [1, 8, 32, 64]
    assert all(r["requests"] > 0 for r in result["classify_closed_loop"])
    assert result["classify_200rps"]["runs"] and result["served_over_inprocess"] > 0


def test_browser_benchmark_measures_frames_and_cpu(bench_env: dict, tmp_path: Path):
    out = tmp_path / "results"
    bench("browser.py", ["--seconds", "3", "--clients", "1", "--port", str(free_port()),
                         "--out", "browser-smoke"], out, bench_env, timeout=600)
    result = json.loads((out / "browser-smoke.json").read_text())
    [run] = result["runs"]
    assert run["clients"] == 1 and run["fps_per_client"][0] > 0 and run["errors"] == 0
    assert run["server_cpu_cores"] > 0 and run["server_cpu_ms_per_frame"] > 0
    assert (out / "browser-smoke.png").stat().st_size > 10_000
