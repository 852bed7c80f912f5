"""Face decoding, detection, cropping and normalisation.

The one preprocessing path shared by training (ingest/preprocess), the HTTP service and
the camera client, so what the model sees at serving time is made exactly as in training.
Pixels stay uint8 in [0, 255] here: scaling to [0, 1] happens in one place, inside the model.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferops.config import FacesConfig
from ferops.errors import DataError

# OpenCV 4.x ships this cascade inside the wheel (no download); OpenCV 5 does not (DESIGN.md).
CASCADE_FILE = "haarcascade_frontalface_default.xml"


_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP"}


class ImageError(DataError):
    """Bytes that are not a usable image; the message is the reason, fit for a quarantine list."""


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, BMP, ...) to a (H, W) uint8 grayscale array.

    The size is read from the header and checked against max_pixels before any pixel is
    decoded, so a decompression bomb costs nothing. Truncated files raise instead of
    returning a half-grey picture (OpenCV's imdecode would accept some of them).
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(f"image too large: {width}x{height} pixels "
                                 f"(limit {max_pixels:,} pixels)")
            if width == 0 or height == 0:
                raise ImageError("zero-size image")
            img.load()
            img = ImageOps.exif_transpose(img)  # phone photos store rotation in EXIF
            return _to_gray_array(img)
    except UnidentifiedImageError:
        kind = next((k for magic, k in _MAGIC.items() if data.startswith(magic)), None)
        if kind:
            raise ImageError(f"corrupt or truncated image: {kind} header, unreadable data") \
                from None
        raise ImageError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from None


def _to_gray_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: keep the high byte instead of clipping everything above 255.
        arr = np.asarray(img, dtype=np.uint32)
        return (arr >> 8 if arr.max() > 255 else arr).astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")  # ITU-R 601 luma, as cv2.COLOR_BGR2GRAY
    return np.asarray(img, dtype=np.uint8).copy()


def to_gray(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) BGR(A) uint8 -> (H, W) uint8."""
    if image.ndim == 2:
        return image
    code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return cv2.cvtColor(image, code)


# One cascade per thread: a CascadeClassifier keeps per-call scratch state, and sharing one
# across the service's request threads gave wrong face counts and getScaleData 500s
# (measured: 32 of 80 requests from 8 concurrent clients).
_PER_THREAD = threading.local()


def load_cascade() -> cv2.CascadeClassifier:
    """This thread's frontal-face Haar cascade (bundled with opencv-python 4.x)."""
    cascade = getattr(_PER_THREAD, "cascade", None)
    if cascade is None:
        path = cv2.data.haarcascades + CASCADE_FILE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"cannot load {path}: is opencv-python(-headless) < 5 installed?")
        _PER_THREAD.cascade = cascade
    return cascade


def detect_faces(gray: np.ndarray, cfg: FacesConfig) -> list[Box]:
    """Find faces in a (H, W) uint8 image; boxes in the image's own pixels, largest first."""
    scale = min(1.0, cfg.detect_max_side / max(gray.shape))
    min_side = max(8, int(round(cfg.min_face * scale)))
    # An explicit dsize of at least 1 px: fx/fy on a 1x30000 strip would round a side to 0.
    dsize = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
    if min(dsize) < min_side:
        return []  # too thin to hold a face of the smallest detectable size
    small = gray if scale == 1.0 else cv2.resize(gray, dsize, interpolation=cv2.INTER_AREA)
    found = load_cascade().detectMultiScale(
        small, scaleFactor=cfg.scale_factor, minNeighbors=cfg.min_neighbors,
        minSize=(min_side, min_side))
    boxes = [Box(*(int(round(v / scale)) for v in b)) for b in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def crop_face(gray: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Square crop around box, grown by margin on each side; edges replicated past the image."""
    side = int(round(max(box.w, box.h) * (1 + 2 * margin)))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return gray[y0: y0 + side, x0: x0 + side]


def normalize_face(crop: np.ndarray, size: int) -> np.ndarray:
    """Any (H, W[, C]) face crop -> (size, size) uint8 grayscale, the model's input."""
    gray = to_gray(crop)
    if gray.shape == (size, size):
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    return cv2.resize(gray, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def extract_faces(gray: np.ndarray, cfg: FacesConfig) -> list[tuple[Box, np.ndarray]]:
    """Detect every face and return (box, normalised (size, size) crop) pairs, largest first."""
    return [(box, normalize_face(crop_face(gray, box, cfg.margin), cfg.size))
            for box in detect_faces(gray, cfg)]
