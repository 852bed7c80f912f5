"""The pieces both camera modes share: open a source, find faces, merge answers, summarise.

A frame is detected here and reduced to (box, 48x48 crop) pairs with the same ferops.faces
functions training uses; only those crops go to the service.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ferops.camera.client import Outcome, Prediction
from ferops.camera.tracking import Tracker
from ferops.config import CameraConfig, FacesConfig
from ferops.detection import find_faces
from ferops.errors import FeropsError
from ferops.faces import Box, Detection, crop_face, normalize_face, to_gray


class CameraError(FeropsError):
    """A problem the user can fix (bad source, no GUI, no consent): one line, exit status 2."""


def parse_source(source: str | int) -> str | int:
    """'0' -> webcam 0; anything else (file path, rtsp://, http://) stays a string."""
    if isinstance(source, int):
        return source
    text = str(source).strip()
    return int(text) if text.isdigit() else text


def is_file_source(source: str | int) -> bool:
    return isinstance(source, str) and "://" not in source


def open_source(source: str | int) -> cv2.VideoCapture:
    """Open a webcam index, video file or stream URL; raise CameraError if OpenCV cannot."""
    src = parse_source(source)
    # Say "no such file" plainly instead of OpenCV's backend warnings; "!" marks a GStreamer
    # pipeline, which is not a path.
    if is_file_source(src) and "!" not in src and not os.path.exists(src):
        raise CameraError(f"cannot open video source '{src}': no such file")
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        cap.release()
        what = f"camera {src}" if isinstance(src, int) else f"'{src}'"
        raise CameraError(f"cannot open video source {what} (not a camera, video file or "
                          "stream that OpenCV can read)")
    return cap


def source_fps(cap: cv2.VideoCapture, default: float = 25.0) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    # Some streams report 0 or absurd values (e.g. 90000, the RTP clock).
    return fps if 1.0 <= fps <= 240.0 else default


@dataclass
class Face:
    box: Box
    crop: np.ndarray        # (size, size) uint8: exactly what the model sees
    track: int = -1


class FaceFinder:
    """Detect faces every `detect_every` frames; in between, re-crop the last boxes (cheaper)."""

    def __init__(self, cfg: FacesConfig, detect_every: int = 1,
                 camera: CameraConfig | None = None):
        if camera is not None:  # live video: a smaller, coarser detection pass (params camera)
            cfg = cfg.replace(
                detect_max_side=camera.detect_max_side,
                haar=cfg.haar.replace(scale_factor=camera.scale_factor),
                blazeface=cfg.blazeface.replace(range=camera.blazeface_range,
                                                threads=camera.detector_threads))
        self.cfg = cfg
        self.detect_every = max(1, detect_every)
        self._found: list[Detection] = []
        self._count = 0

    def find(self, frame: np.ndarray) -> list[Face]:
        """BGR or gray frame -> faces, largest first."""
        gray = to_gray(frame)
        if self._count % self.detect_every == 0:
            self._found = find_faces(gray, self.cfg, frame[:, :, :3] if frame.ndim == 3 else None)
        self._count += 1
        return [Face(d.box, normalize_face(crop_face(gray, d, self.cfg), self.cfg.size))
                for d in self._found]


@dataclass
class FaceView:
    """One face as drawn and recorded: its last known prediction, fresh if made for this frame."""
    face: Face
    prediction: Prediction | None
    fresh: bool


def merge_outcome(faces: list[Face], outcome: Outcome | None, tracker: Tracker, frame: int,
                  fresh_within: int = 0) -> list[FaceView]:
    """Store a fresh answer on the faces' tracks, then read every track's last known result.

    A result counts as fresh when it was made for this frame or up to fresh_within before it.
    """
    if outcome is not None and outcome.ok:
        for face, pred in zip(faces, outcome.predictions or [], strict=True):
            tracker.update(face.track, pred, frame)
    views = []
    for face in faces:
        pred, at = tracker.last(face.track)
        fresh = pred is not None and frame - at <= fresh_within
        views.append(FaceView(face, pred, fresh))
    return views


def frame_record(frame: int, t: float, views: list[FaceView], service_ok: bool) -> dict[str, Any]:
    """The JSONL line for one frame; only fresh predictions are reported as this frame's labels."""
    faces = []
    for v in views:
        pred = v.prediction if v.fresh else None
        b = v.face.box
        faces.append({"box": [b.x, b.y, b.w, b.h], "track": v.face.track,
                      "label": pred.label if pred else None,
                      "confidence": round(pred.confidence, 4) if pred else None,
                      "probabilities": {k: round(p, 4) for k, p in pred.probabilities.items()}
                      if pred else {},
                      "model_version": pred.model_version if pred else None})
    return {"frame": frame, "t": round(t, 3), "faces": faces, "service_ok": service_ok}


@dataclass
class Summary:
    """Counts for one run; `line()` is what the CLI prints at the end."""
    frames: int = 0
    faces: int = 0
    labeled: int = 0              # faces that got a fresh prediction for their own frame
    frames_service_down: int = 0  # frames whose faces could not be classified
    requests: int = 0
    errors: int = 0
    dropped: int = 0              # realtime only: frames skipped to keep up
    saved: int = 0                # labeled crops written to the drop folder
    seconds: float = 0.0
    last_error: str | None = None
    model_versions: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def count_frame(self, views: list[FaceView], service_ok: bool) -> None:
        self.frames += 1
        self.faces += len(views)
        self.labeled += sum(v.fresh for v in views)
        self.frames_service_down += int(bool(views) and not service_ok)
        for v in views:
            version = v.prediction.model_version if v.fresh and v.prediction else None
            if version is not None and version not in self.model_versions:
                self.model_versions.append(version)

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {**data, "fps": round(self.fps, 2), "seconds": round(self.seconds, 3)}

    def line(self) -> str:
        text = (f"frames {self.frames}, faces {self.faces} ({self.labeled} labeled), "
                f"{self.fps:.1f} fps, requests {self.requests}, errors {self.errors}")
        if self.dropped:
            text += f", dropped {self.dropped}"
        if self.saved:
            text += f", saved {self.saved} labeled crops"
        if self.model_versions:
            text += f", model {'/'.join(self.model_versions)}"
        if self.errors and self.last_error:
            text += f" (last error: {self.last_error})"
        return text
