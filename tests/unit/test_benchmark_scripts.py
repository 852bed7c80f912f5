"""Smoke runs of benchmark code on tiny data, so a README figure's command cannot rot
(benchmarks/data_pipeline.py crashed for weeks after ingest() gained a fifth return value)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def tiny_fer2013(path: Path, per_class: int = 12) -> Path:
    """A FER2013-format CSV (emotion,pixels,Usage) of noise faces: 7 classes, 3 usages."""
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for usage, n in (("Training", per_class), ("PublicTest", 3), ("PrivateTest", 3)):
        for emotion in range(7):
            for _ in range(n):
                pixels = " ".join(map(str, rng.integers(20, 235, 48 * 48)))
                rows.append(f"{emotion},{pixels},{usage}")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(rows) + "\n")
    return path


def test_data_pipeline_benchmark_times_every_stage(tmp_path: Path):
    from benchmarks.data_pipeline import time_stages
    result = time_stages(tiny_fer2013(tmp_path / "fer2013.csv.gz"))
    assert result["n_images_read"] == 7 * 18 and result["n_kept"] == 7 * 18
    assert set(result["stages"]) >= {"ingest_s", "validate_s", "preprocess_s", "augment_s",
                                     "encode_s", "ingest_validate_preprocess_s"}
    assert all(v >= 0 for v in result["stages"].values())
