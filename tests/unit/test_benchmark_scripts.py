"""Smoke runs of benchmark code on tiny data, so a README figure's command cannot rot
(benchmarks/data_pipeline.py crashed for weeks after ingest() gained a fifth return value)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT
from tests.factories import bench


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


def test_plot_accuracy_draws_the_committed_results(tmp_path: Path):
    png = tmp_path / "curves.png"
    bench("plot_accuracy.py", ["--results", str(PROJECT / "benchmarks/results"), "--out",
                               str(png)], tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.slow
def test_train_precision_measures_both_policies(tmp_path: Path):
    bench("train_precision.py", ["--profile", "demo", "--steps", "2", "--rounds", "1"],
          tmp_path)
    result = json.loads((tmp_path / "train-precision-demo.json").read_text())
    (one,) = result["rounds"]
    assert one["float32"] > 0 and one["mixed_bfloat16"] > 0 and one["ratio"] > 0
    assert result["machine"]["cores"] >= 1


def test_flip_average_benchmark_scores_and_times_both(tmp_path: Path, demo_model_dir: Path):
    data = tmp_path / "dataset"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        np.save(data / f"x_{split}.npy", rng.integers(0, 256, (20, 48, 48, 1), dtype=np.uint8))
        np.save(data / f"y_{split}.npy", rng.integers(0, 7, 20))
    bench("flip_average.py", ["--model", str(demo_model_dir), "--data", str(data),
                              "--rounds", "1", "--calls", "2", "--name", "fa"], tmp_path)
    result = json.loads((tmp_path / "fa.json").read_text())
    assert set(result["accuracy"]) == {"single", "flip_average"}
    for scores in result["accuracy"].values():
        assert set(scores) == {"val", "test"} and all(0 <= v <= 1 for v in scores.values())
    assert result["cost_ratio_one_face"] > 0 and result["cost_ratio_batch_128"] > 0
    assert result["n_val"] == 20


def test_live_augment_benchmark_fine_tunes_each_variant_from_one_start(
        tmp_path: Path, demo_model_dir: Path):
    import yaml

    data = tmp_path / "dataset"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("val", 20), ("test", 20)):
        np.save(data / f"x_{split}.npy", rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8))
        np.save(data / f"y_{split}.npy", rng.integers(0, 7, n))
    from tests.factories import PARAMS
    (data / "class_weights.json").write_text(json.dumps(  # the demo recipe weighs classes
        {c: 1.0 + i / 10 for i, c in enumerate(PARAMS.classes.names)}))
    # The recipe the demo model was built with, so its weights fit the fine-tuned copies.
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"] = {"profile": "demo", "arch": "vgg", "widths": [8, 16], "convs": 1,
                    "dense": 16, "dropout": 0.0, "batch_size": 32}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    bench("live_augment.py", ["--model", str(demo_model_dir), "--data", str(data),
                              "--params", str(params), "--profile", "demo", "--epochs", "1",
                              "--only", "blur,jpeg",
                              "--n", "7", "--fer", str(tiny_fer2013(tmp_path / "f.csv.gz")),
                              "--keep", str(tmp_path / "kept"), "--name", "la"], tmp_path)
    result = json.loads((tmp_path / "la.json").read_text())
    # The control always runs, beside the start and the variants asked for.
    assert list(result["results"]) == ["start", "none", "blur", "jpeg"]
    assert result["results"]["blur"]["changes"] == {"aug_blur": 0.3}
    assert result["results"]["none"]["changes"] == {}
    for scores in result["results"].values():
        assert 0 <= scores["public_test_accuracy"] <= 1
        assert 0 <= scores["private_test_accuracy"] <= 1
    assert result["fidelity"]["faces"] == 7
    # Each variant is compared with the control face by face, and its model kept.
    blur = result["results"]["blur"]["vs_none"]["public"]
    assert blur["gained"] + blur["lost"] <= 20 and 0 <= blur["p_value"] <= 1
    assert "vs_none" not in result["results"]["none"]
    assert (tmp_path / "kept" / "jpeg" / "model.keras").is_file()
