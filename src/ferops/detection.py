"""Face detection behind one interface: `find_faces(gray, cfg)`, whatever `faces.detector` is.

- `blazeface` (the default): MediaPipe's BlazeFace on LiteRT. Finds turned faces and gives
  eye keypoints for alignment. By default the short-range model on a 256 px input, which
  finds faces of 60-130 px in a 640x480 frame that its own 128 px input misses, and gives
  better eye points (benchmarks/results/detectors.json has the ranges and sizes side by side).
- `haar`: OpenCV's frontal cascade, the fallback that needs no extra package.

Thread-safe by construction: both detectors keep scratch state between calls (a shared
cascade gave wrong face counts and getScaleData 500s under 8 concurrent clients), so each
thread builds its own, once, and nothing else is shared.
"""

from __future__ import annotations

import threading
from typing import Protocol

import cv2
import numpy as np

from ferops.blazeface import BlazeFace, suppress
from ferops.config import FacesConfig
from ferops.faces import Box, Detection, crop_face, normalize_face, to_gray

# OpenCV 4.x ships this cascade inside the wheel (no download); OpenCV 5 does not (DESIGN.md).
CASCADE_FILE = "haarcascade_frontalface_default.xml"


class Detector(Protocol):
    def __call__(self, image: np.ndarray, min_side: int) -> list[Detection]:
        """Faces in a (H, W) grey or (H, W, 3) BGR image; min_side: the smallest face side
        wanted, in its pixels."""


class HaarDetector:
    def __init__(self, cfg: FacesConfig):
        path = cv2.data.haarcascades + CASCADE_FILE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load {path}: is opencv-python(-headless) < 5 installed?")
        self._scale, self._neighbors = cfg.haar.scale_factor, cfg.haar.min_neighbors

    def __call__(self, image: np.ndarray, min_side: int) -> list[Detection]:
        found = self._cascade.detectMultiScale(to_gray(image), scaleFactor=self._scale,
                                               minNeighbors=self._neighbors,
                                               minSize=(min_side, min_side))
        return [Detection(Box(*map(int, b)), 1.0) for b in np.asarray(found).reshape(-1, 4)]


class BlazeFaceDetector:
    def __init__(self, cfg: FacesConfig):
        c = cfg.blazeface
        ranges = ("short", "full") if c.range == "both" else (c.range,)
        self._nets = [BlazeFace(r, c.min_score, c.nms_iou, threads=c.threads,
                                input_side=c.short_input_side if r == "short" else None)
                      for r in ranges]
        self._iou = c.nms_iou
        self._retry = (BlazeFace("short", c.retry_min_score, c.nms_iou, threads=c.threads,
                                 input_side=c.retry_input_side)
                       if c.retry_input_side else None)

    def __call__(self, image: np.ndarray, min_side: int) -> list[Detection]:
        found = [f for net in self._nets for f in net(image)]
        if len(self._nets) > 1:
            found = suppress(found, self._iou)
        if not found and self._retry is not None:
            found = self._retry(image)
        out = []
        for f in found:
            x, y, w, h = f.box
            side = max(w, h)  # square, like Haar's boxes, so crop geometry means the same
            cx, cy = x + w / 2, y + h / 2
            box = Box(int(round(cx - side / 2)), int(round(cy - side / 2)),
                      int(round(side)), int(round(side)))
            left, right = sorted(map(tuple, f.keypoints[:2].tolist()))
            out.append(Detection(box, f.score, (left, right)))
        return out


DETECTORS = {"blazeface": BlazeFaceDetector, "haar": HaarDetector}

_PER_THREAD = threading.local()


def detector(cfg: FacesConfig) -> Detector:
    """This thread's detector for cfg (built on first use, then reused)."""
    cache = _PER_THREAD.__dict__.setdefault("detectors", {})
    key = (cfg.detector, cfg.blazeface, cfg.haar)
    if key not in cache:
        cache[key] = DETECTORS[cfg.detector](cfg)
    return cache[key]


def find_faces(gray: np.ndarray, cfg: FacesConfig,
               color: np.ndarray | None = None) -> list[Detection]:
    """Every face in a (H, W) uint8 image, in its own pixels, largest first.

    color: the same picture in BGR at any size (decode_photo's small copy); when given, the
    detector looks at it instead of the grey image.
    """
    scale = min(1.0, cfg.detect_max_side / max(gray.shape))
    # An explicit dsize of at least 1 px: fx/fy on a 1x30000 strip would round a side to 0.
    dsize = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    min_side = max(8, int(round(cfg.min_face * scale)))
    if min(dsize) < min_side:
        return []  # too thin to hold a face of the smallest detectable size
    image = gray if color is None else color
    if image.shape[1::-1] != dsize:
        shrink = image.shape[1] > dsize[0]
        image = cv2.resize(image, dsize, interpolation=cv2.INTER_AREA if shrink
                           else cv2.INTER_LINEAR)
    found = [_rescale(d, 1 / scale) for d in detector(cfg)(image, min_side)]
    found = [d for d in found if d.box.w >= cfg.min_face]
    return sorted(found, key=lambda d: d.box.area, reverse=True)


def detect_faces(gray: np.ndarray, cfg: FacesConfig) -> list[Box]:
    """The boxes of find_faces."""
    return [d.box for d in find_faces(gray, cfg)]


def _rescale(d: Detection, k: float) -> Detection:
    if k == 1.0:
        return d
    b = d.box
    box = Box(*(int(round(v * k)) for v in (b.x, b.y, b.w, b.h)))
    eyes = None if d.eyes is None else tuple((x * k, y * k) for x, y in d.eyes)
    return Detection(box, d.score, eyes)


def extract_faces(gray: np.ndarray, cfg: FacesConfig,
                  color: np.ndarray | None = None) -> list[tuple[Box, np.ndarray]]:
    """Detect every face and return (box, normalised (size, size) crop) pairs, largest first."""
    return [(face.box, normalize_face(crop_face(gray, face, cfg), cfg.size))
            for face in find_faces(gray, cfg, color)]
