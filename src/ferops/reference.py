"""The drift monitor's reference confidence of a model version: its mean top-class calibrated
probability on the val split (test when there is no val), as the service would report it.

Computed once per version from the local artifacts (artifacts/model/model.keras when
artifacts/registry/registered.json names that version) and cached in
artifacts/monitoring/reference.json; unknown (None) for a model not built here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ferops.files import read_json, write_json_atomic
from ferops.predict import calibrated_probabilities, predict_logits

REFERENCE_CACHE = Path("artifacts/monitoring/reference.json")


def reference_confidence(root: Path, version: str) -> float | None:
    """Mean top-class confidence of `version` on the val split (cached per version)."""
    cache = read_json(root / REFERENCE_CACHE) or {}
    if version in cache:
        return cache[version].get("mean_confidence")
    registered = read_json(root / "artifacts/registry/registered.json") or {}
    model = root / "artifacts/model/model.keras"
    if str(registered.get("version")) != str(version) or not model.is_file():
        return None  # not the model built here: unknown rather than wrong
    value, n, split = mean_confidence(model, root / "artifacts/dataset")
    cache[version] = {"mean_confidence": value, "split": split, "n": n,
                      "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(root / REFERENCE_CACHE, cache)
    return value


def mean_confidence(model_path: Path, data: Path) -> tuple[float | None, int, str]:
    """(mean top-class probability, images, split) of the Keras model at model_path."""
    import keras  # only here: the drift monitor otherwise never loads TensorFlow
    split = "val" if (data / "x_val.npy").is_file() and len(np.load(data / "y_val.npy")) \
        else "test"
    x = np.load(data / f"x_{split}.npy")  # (N, 48, 48, 1) uint8
    if not len(x):
        return None, 0, split
    temperature = (read_json(data.parent / "eval/metrics.json") or {}).get("temperature") or 1.0
    logits = predict_logits(keras.models.load_model(model_path), x)
    probs = calibrated_probabilities(logits, float(temperature))
    return float(probs.max(axis=1).mean()), len(x), split
