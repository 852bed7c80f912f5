"""Smoke run of `python benchmarks/accuracy.py` on the real FER2013 file: the whole command
(copy, dvc repro through evaluate, JSON), with a one-epoch demo model on 300 faces, so the
README's accuracy command cannot rot. The figure it writes means nothing; its shape does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.factories import bench

pytestmark = [pytest.mark.fer2013, pytest.mark.slow]


def test_accuracy_benchmark_follows_the_protocol(tmp_path: Path):
    assert (SHARED_DATA / "fer2013/fer2013.csv.gz").is_file(), "deselect with -m 'not fer2013'"
    bench("accuracy.py", ["--profile", "demo", "--set", "epochs=1", "--set",
                          "max_train_images=300", "--name", "smoke"], tmp_path, timeout=900)
    result = json.loads((tmp_path / "accuracy-fer13-demo-smoke.json").read_text())
    assert result["protocol"] == "train=Training, select=PublicTest, report=PrivateTest"
    assert result["test_n"] == 3589  # PrivateTest, kept whole by ingest
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["epochs_run"] == 1
    assert result["train_config"]["max_train_images"] == 300
    assert set(result["test_per_class_recall"]) == {"angry", "disgust", "fear", "happy", "sad",
                                                    "surprise", "neutral"}
