"""Inference on face crops and whole images: the model side of the service, without BentoML.

The HTTP service (serving/service.py) and the benchmarks both use this module, so the
in-process throughput they compare is the same code path. Imports keras (lazily) and
ferops.faces; nothing from training, MLflow or BentoML.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferops.config import FacesConfig
from ferops.detection import extract_faces
from ferops.faces import Box, decode_photo
from ferops.predict import calibrated_probabilities

UNCERTAIN = "uncertain"  # the label of an abstention (serving.abstain_below)
# Where bentoml.mlflow.import_model puts the Keras file inside a BentoML model folder.
KERAS_IN_BENTO = Path("mlflow_model/data/model.keras")


@dataclass
class Predictor:
    """A loaded model plus everything needed to turn its logits into labelled answers."""

    model: Any                     # keras.Model: (N, S, S, 1) pixels in [0, 255] -> logits
    classes: list[str]
    version: str = "unknown"
    temperature: float = 1.0       # fitted on val by evaluate; makes probabilities calibrated
    size: int = 48
    info: dict = field(default_factory=dict)
    _predict: Any = None

    def __post_init__(self) -> None:
        import tensorflow as tf
        # One traced graph for every batch size: no retracing, no Keras predict() overhead,
        # and safe to call from several server threads at once.
        model = self.model
        self._predict = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, self.size, self.size, 1], tf.float32)],
            reduce_retracing=True)

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N, S, S) or (N, S, S, 1) uint8 crops -> (N, K) calibrated probabilities."""
        x = np.asarray(crops, dtype=np.float32).reshape(-1, self.size, self.size, 1)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return calibrated_probabilities(np.asarray(self._predict(x)), self.temperature)

    def describe(self, probs: np.ndarray, abstain_below: float | None = None) -> list[dict]:
        """(N, K) probabilities -> one {label, confidence, probabilities, model_version} each.

        With abstain_below, a face whose top probability is below it is labelled UNCERTAIN
        and its top class moves to `best_guess`; without it the answer has no new field.
        """
        out = []
        for row in probs:
            top = int(np.argmax(row))
            answer = {"label": self.classes[top], "confidence": round(float(row[top]), 5),
                      "probabilities": {c: round(float(p), 5)
                                        for c, p in zip(self.classes, row, strict=True)},
                      "model_version": self.version}
            if abstain_below is not None and row[top] < abstain_below:
                answer["best_guess"], answer["label"] = answer["label"], UNCERTAIN
            out.append(answer)
        return out

    def classify(self, crops: np.ndarray, abstain_below: float | None = None) -> list[dict]:
        return self.describe(self.probabilities(crops), abstain_below)


def load_bento_predictor(path: Path, metadata: dict, tag: str = "") -> Predictor:
    """A Predictor from a BentoML model folder exported by `ferops promote`."""
    import keras
    label_map = metadata.get("label_map") or {}
    classes = list(label_map.get("classes") or [])
    if not classes:
        raise ValueError(f"BentoML model {tag or path} carries no label map (classes)")
    model = keras.models.load_model(Path(path) / KERAS_IN_BENTO, compile=False)
    metrics = metadata.get("metrics") or {}
    size = int(label_map.get("input", {}).get("height", model.input_shape[1]))
    info = {"model_version": str(metadata.get("registry_version", "unknown")),
            "registry_name": metadata.get("registry_name"), "bento_tag": tag,
            "classes": classes, "input": label_map.get("input"), "metrics": metrics,
            "trained_at": metadata.get("trained_at"),
            "data_version": metadata.get("data_version"),
            "git_commit": metadata.get("git_commit"), "exported_at": metadata.get("exported_at"),
            "parameters": int(model.count_params())}
    return Predictor(model, classes, info["model_version"],
                     float(metrics.get("temperature") or 1.0), size, info)


@dataclass(frozen=True)
class FoundFaces:
    """The decoded photo's size and every face in it, largest first."""

    width: int
    height: int
    faces: list[tuple[Box, np.ndarray]]  # (box in photo pixels, (size, size) uint8 crop)


def locate_faces(data: bytes, faces: FacesConfig) -> FoundFaces:
    """Image bytes -> every face with its normalised crop (safe from several threads).

    Raises faces.ImageError (a DataError) for bytes that are not a usable image.
    """
    photo = decode_photo(data, faces.max_pixels, faces.detect_max_side)
    gray = photo.gray
    return FoundFaces(int(gray.shape[1]), int(gray.shape[0]),
                      extract_faces(gray, faces, photo.color))


class StatsRecorder:
    """Opt-in prediction statistics for drift monitoring: label and confidence, never pixels."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, answers: list[dict], now: float) -> None:
        if not answers:
            return
        lines = "".join(json.dumps({"ts": round(now, 3), "model_version": a["model_version"],
                                    "label": a.get("best_guess", a["label"]),
                                    "confidence": a["confidence"]}) + "\n"
                        for a in answers)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(lines)
