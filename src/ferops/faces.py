"""Face decoding, cropping and normalisation (finding faces: ferops.detection).

The one preprocessing path shared by training (ingest/preprocess), the HTTP service and
the camera client, so what the model sees at serving time is made exactly as in training.
Pixels stay uint8 in [0, 255] here: scaling to [0, 1] happens in one place, inside the model.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferops.config import FacesConfig
from ferops.errors import DataError

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


Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """A face in image pixels. eyes: (the eye on the image's left, the one on its right)."""
    box: Box
    score: float
    eyes: tuple[Point, Point] | None = None


@dataclass(frozen=True)
class Photo:
    gray: np.ndarray                # (H, W) uint8: what crops are cut from
    color: np.ndarray | None        # (h, w, 3) BGR uint8, at most color_side; None if grey


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, BMP, ...) to a (H, W) uint8 grayscale array."""
    return decode_photo(data, max_pixels).gray


def decode_photo(data: bytes, max_pixels: int, color_side: int = 0) -> Photo:
    """Decode image bytes to greyscale, plus (color_side > 0) a small colour copy for the
    detector: BlazeFace was trained on colour and tells a face from a coffee cup better in it
    (scikit-image's coffee: 0.36 in colour, 0.65 in grey).

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
            return Photo(_to_gray_array(img), _small_bgr(img, color_side))
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


def _small_bgr(img: Image.Image, side: int) -> np.ndarray | None:
    if side <= 0 or img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return None
    small = img.convert("RGB")
    if max(small.size) > side:
        k = side / max(small.size)
        small = small.resize((max(1, round(small.width * k)), max(1, round(small.height * k))),
                             Image.Resampling.BOX)
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8)[:, :, ::-1])


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


def crop_square(gray: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    """Axis-aligned square crop centred on (cx, cy); edges replicated past the image."""
    side = max(1, int(round(side)))
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    h, w = gray.shape
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + pad, y0 + pad
    return gray[y0: y0 + side, x0: x0 + side]


def eye_angle(face: Detection) -> float:
    """Degrees the eye line is turned clockwise on screen (0 without eye points)."""
    if face.eyes is None:
        return 0.0
    (lx, ly), (rx, ry) = face.eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def crop_face(gray: np.ndarray, face: Detection, cfg: FacesConfig) -> np.ndarray:
    """The square crop of one face, framed by faces.crop for this detector and, with
    faces.align, turned so the eyes are level. The same call at training and serving time."""
    g = cfg.crop[cfg.detector]
    b = face.box
    side = max(b.w, b.h) * g.scale
    angle = eye_angle(face) if cfg.align else 0.0
    # The (dx, dy) shift is in the face's own frame: along its eye line and its vertical.
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ox, oy = g.dx * b.w, g.dy * b.w
    cx, cy = b.x + b.w / 2 + c * ox - s * oy, b.y + b.h / 2 + s * ox + c * oy
    if abs(angle) < 0.5:  # a rotation this small changes no pixel of a 48 px crop
        return crop_square(gray, cx, cy, side)
    n = max(1, int(round(side)))
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (n / 2 - cx, n / 2 - cy)
    return cv2.warpAffine(gray, m, (n, n), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def normalize_face(crop: np.ndarray, size: int) -> np.ndarray:
    """Any (H, W[, C]) face crop -> (size, size) uint8 grayscale, the model's input."""
    gray = to_gray(crop)
    if gray.shape == (size, size):
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    return cv2.resize(gray, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
