"""Emotions in images and videos without a server: the library API.

    from ferops.recognizer import Recognizer
    rec = Recognizer.from_bento()                  # the champion `ferops promote` exported
    for face in rec.analyze("group.jpg"):
        print(face.box, face.label, face.confidence)
    for frame in rec.analyze_video("clip.mp4", every=5):
        print(frame.index, frame.t, [f.label for f in frame.faces])

Also `Recognizer.from_registry("@champion")` (MLflow) and `Recognizer.from_model_dir(
"artifacts/model")` (what `dvc repro` just trained). The detector, crop geometry, alignment
and calibrated probabilities are the ones the HTTP service uses (ferops.detection,
ferops.inference), so an answer here equals the service's answer for the same image.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ferops.config import FacesConfig, load_params
from ferops.detection import extract_faces
from ferops.errors import FeropsError
from ferops.faces import Box, decode_photo, to_gray
from ferops.inference import Predictor, load_bento_predictor


class RecognizerError(FeropsError):
    """A model or an input the recognizer cannot use; the message says which and why."""


@dataclass(frozen=True)
class FaceResult:
    box: Box
    label: str
    confidence: float
    probabilities: dict[str, float]
    best_guess: str | None = None  # the top class when label is `uncertain`

    def to_json(self) -> dict:
        out = asdict(self)
        out["box"] = [self.box.x, self.box.y, self.box.w, self.box.h]
        if self.best_guess is None:
            out.pop("best_guess")
        return out


@dataclass(frozen=True)
class VideoFrame:
    index: int
    t: float                        # seconds from the start of the video
    faces: list[FaceResult] = field(default_factory=list)


FROM_PARAMS = "params"


class Recognizer:
    """faces and abstain_below default to params.yaml's faces and serving.abstain_below,
    the service's settings."""

    def __init__(self, predictor: Predictor, faces: FacesConfig | None = None,
                 abstain_below: float | None | str = FROM_PARAMS):
        params = load_params(None)
        self.predictor = predictor
        self.faces = faces or params.faces
        self.abstain_below = (params.serving.abstain_below if abstain_below == FROM_PARAMS
                              else abstain_below)

    @property
    def model_version(self) -> str:
        return self.predictor.version

    # ---- where the model comes from -------------------------------------------------
    @classmethod
    def from_model_dir(cls, path: str | Path = "artifacts/model", **kw) -> Recognizer:
        """A model folder written by the train stage; the temperature from the evaluate
        stage's metrics beside it (artifacts/eval), else 1."""
        import keras

        path = Path(path)
        if not (path / "model.keras").is_file():
            raise RecognizerError(f"{path}: no model.keras (run `dvc repro` first)")
        label_map = json.loads((path / "label_map.json").read_text())
        metrics_file = path.parent / "eval" / "metrics.json"
        temperature = (json.loads(metrics_file.read_text()).get("temperature", 1.0)
                       if metrics_file.is_file() else 1.0)
        model = keras.models.load_model(path / "model.keras", compile=False)
        predictor = Predictor(model, list(label_map["classes"]), f"dir:{path}",
                              float(temperature), int(label_map["input"]["height"]))
        return cls(predictor, **kw)

    @classmethod
    def from_bento(cls, tag: str | None = None, **kw) -> Recognizer:
        """A BentoML model (default: the newest export of serving.bento_model)."""
        import bentoml

        tag = tag or f"{load_params(None).serving.bento_model}:latest"
        try:
            model = bentoml.models.get(tag)
        except bentoml.exceptions.NotFound:
            raise RecognizerError(f"no BentoML model {tag}: run `ferops promote` (or "
                                  f"`bash setup.sh`) to export the champion") from None
        return cls(load_bento_predictor(Path(model.path), dict(model.info.metadata),
                                        str(model.tag)), **kw)

    @classmethod
    def from_registry(cls, ref: str = "@champion", name: str | None = None, **kw) -> Recognizer:
        """An MLflow registry version: `@alias` or a version number (MLFLOW_TRACKING_URI)."""
        import mlflow

        from ferops import registry

        name = name or load_params(None).registry.model_name
        client = registry.connect()
        mv = (client.get_model_version_by_alias(name, ref[1:]) if ref.startswith("@")
              else client.get_model_version(name, ref))
        label_map = json.loads(mv.tags.get("label_map", "{}"))
        run = client.get_run(mv.run_id)
        model = mlflow.keras.load_model(f"models:/{name}/{mv.version}")
        predictor = Predictor(model, list(label_map["classes"]), str(mv.version),
                              float(run.data.metrics.get("temperature", 1.0)),
                              int(label_map["input"]["height"]))
        return cls(predictor, **kw)

    # ---- analysis -----------------------------------------------------------------
    def analyze(self, image: str | Path | bytes | np.ndarray) -> list[FaceResult]:
        """Every face in one image (a path, encoded bytes, or a BGR/gray array), largest first."""
        return self._faces(*self._decode(image))

    def analyze_video(self, path: str | Path, every: int = 1,
                      max_frames: int | None = None) -> Iterator[VideoFrame]:
        """Every `every`-th frame of a video file, with its faces."""
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise RecognizerError(f"{path}: cannot open as a video")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        try:
            index = 0
            while max_frames is None or index < max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % max(1, every) == 0:
                    yield VideoFrame(index, round(index / fps, 3),
                                     self._faces(to_gray(frame), frame))
                index += 1
        finally:
            cap.release()

    def _decode(self, image) -> tuple[np.ndarray, np.ndarray | None]:
        if isinstance(image, np.ndarray):
            return to_gray(image), (image[:, :, :3] if image.ndim == 3 else None)
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        photo = decode_photo(data, self.faces.max_pixels, self.faces.detect_max_side)
        return photo.gray, photo.color

    def _faces(self, gray: np.ndarray, color: np.ndarray | None = None) -> list[FaceResult]:
        found = extract_faces(gray, self.faces, color)
        if not found:
            return []
        answers = self.predictor.classify(np.stack([crop for _, crop in found]),
                                          self.abstain_below)
        return [FaceResult(box, a["label"], a["confidence"], a["probabilities"],
                           a.get("best_guess"))
                for (box, _), a in zip(found, answers, strict=True)]
