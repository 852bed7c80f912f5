"""The drift math on hand-checked numbers, and reading the predictions log backwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines import drift

CLASSES = ["angry", "happy", "sad"]


def write_log(path: Path, rows: list[tuple[str, str, float]]) -> None:
    lines = [json.dumps({"ts": 1000.0 + i, "model_version": v, "label": label,
                         "confidence": c}) for i, (v, label, c) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def test_total_variation_known_values():
    p = {"a": 0.5, "b": 0.5}
    assert drift.total_variation(p, p) == 0.0
    assert drift.total_variation(p, {"c": 1.0}) == pytest.approx(1.0)   # disjoint
    assert drift.total_variation({"a": 0.7, "b": 0.3}, p) == pytest.approx(0.2)
    assert drift.total_variation({"a": 1.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.5)


def test_distribution_pools_unknown_labels():
    dist = drift.distribution(["happy", "happy", "sad", "contempt"], CLASSES)
    assert dist == {"angry": 0.0, "happy": 0.5, "sad": 0.25, drift.OTHER: 0.25}
    assert drift.distribution([], CLASSES) == {c: 0.0 for c in CLASSES}


def test_training_distribution_counts_ids():
    y = np.array([0, 1, 1, 1])  # angry x1, happy x3, sad x0
    assert drift.training_distribution(y, CLASSES) == {"angry": 0.25, "happy": 0.75,
                                                       "sad": 0.0}


def test_recent_predictions_newest_version_window_and_bad_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(drift, "CHUNK", 64)  # many block boundaries inside lines
    path = tmp_path / "p.jsonl"
    rows = [("2", "sad", 0.5)] * 5 + [("3", "happy", 0.9), ("2", "sad", 0.4)] * 4
    write_log(path, rows)
    with open(path, "a") as f:
        f.write("not json\n")
        f.write('{"ts": 1, "model_version": "3", "label": "angry", "confid')  # half written
    got = drift.recent_predictions(path, 3)  # newest parsable record is version 2
    assert [p.model_version for p in got] == ["2", "2", "2"]
    v3 = drift.recent_predictions(path, 100, "3")
    assert len(v3) == 4 and {p.label for p in v3} == {"happy"}
    assert [p.ts for p in v3] == sorted(p.ts for p in v3)  # oldest first
    assert len(drift.recent_predictions(path, 100, "2")) == 9
    assert drift.recent_predictions(tmp_path / "missing.jsonl", 10) == []


def test_assess_flags_label_shift_and_confidence_drop():
    reference = {"angry": 0.25, "happy": 0.5, "sad": 0.25}
    same = [drift.Prediction(i, "3", label, 0.9) for i, label in
            enumerate(["angry", "happy", "happy", "sad"] * 25)]
    ok = drift.assess(same, reference, 0.92, 0.2, 0.15, min_n=50)
    assert not ok.drifted and ok.tv_distance == pytest.approx(0.0)
    assert ok.confidence_drop == pytest.approx(0.02)
    shifted = [drift.Prediction(i, "3", "happy", 0.6) for i in range(100)]
    bad = drift.assess(shifted, reference, 0.92, 0.2, 0.15, min_n=50)
    assert bad.tv_distance == pytest.approx(0.5)
    assert len(bad.reasons) == 2 and "TV distance 0.500" in bad.reasons[0]
    assert "0.320 below" in bad.reasons[1]


def test_assess_unknown_reference_confidence_and_too_few():
    reference = {"angry": 0.5, "happy": 0.5}
    preds = [drift.Prediction(i, "1", "angry", 0.1) for i in range(10)]
    few = drift.assess(preds, reference, 0.9, 0.2, 0.15, min_n=50)
    assert few.tv_distance is None and not few.drifted and few.n == 10
    unknown = drift.assess(preds, reference, None, 0.9, 0.15, min_n=5)
    assert unknown.confidence_drop is None and not unknown.drifted  # TV 0.5 < 0.9
