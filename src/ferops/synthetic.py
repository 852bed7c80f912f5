"""Synthetic demo faces: procedurally drawn, face-like images for the default pipeline.

No real face dataset ships with the project, so `dvc repro` out of the box trains on
images drawn here. The expression changes the geometry (brows, eyes, mouth, nose and
skin folds) with a random per-sample intensity, so weak samples of neighbouring classes
overlap (mild sad vs neutral, fear vs surprise). Pose, scale, position, skin tone, hair,
background, lighting, occluders, blur and noise are random nuisances on top, so a model
has something to learn but the task is not trivial. These are NOT faces of people and
say nothing about how a model does on real photographs.

Every image is drawn in "face units" (x: -1..1 across the face, y down, the oval is
1.3 tall each way) and mapped to pixels by one rotation + scale + shift, on a canvas
twice the output side that is then area-downsampled (cheap, smooth anti-aliasing).
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ferops.errors import DataError
from ferops.labels import CANONICAL
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = CANONICAL[:7]
SUPERSAMPLE = 2          # drawing canvas side = SUPERSAMPLE x output side
_SHIFT = 4               # cv2 fixed-point bits: sub-pixel positions for the drawing calls
_AA = cv2.LINE_AA
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")

# Feature settings of a neutral face; each class moves some of them towards its target by a
# per-sample intensity in [0, 1]. y offsets are in face units, negative = up.
_NEUTRAL: dict[str, float] = {
    "brow_in": 0.0, "brow_out": 0.0, "brow_arch": 0.0, "brow_gap": 0.0,
    "eye_up": 0.08, "eye_low": 0.045, "mouth_w": 0.29, "mouth_c": 0.0,
    "mouth_hu": 0.0, "mouth_hl": 0.0, "skew": 0.0, "lip": 1.0, "teeth": 0.0,
    "wrinkle": 0.0, "smile_lines": 0.0, "forehead": 0.0, "frown": 0.0,
}
_TARGETS: dict[str, dict[str, float]] = {
    "angry": {"brow_in": 0.15, "brow_out": -0.04, "brow_gap": -0.06, "eye_up": 0.04,
              "eye_low": 0.035, "mouth_w": 0.23, "mouth_c": 0.03, "lip": 0.3, "frown": 1.0},
    "disgust": {"brow_in": 0.09, "brow_out": 0.04, "brow_gap": -0.03, "eye_up": 0.045,
                "eye_low": 0.025, "mouth_w": 0.27, "mouth_c": 0.05, "mouth_hu": 0.03,
                "skew": 0.1, "teeth": 1.0, "wrinkle": 1.0},
    "fear": {"brow_in": -0.16, "brow_out": -0.06, "brow_arch": -0.03, "brow_gap": -0.03,
             "eye_up": 0.13, "eye_low": 0.065, "mouth_w": 0.37, "mouth_c": 0.05,
             "mouth_hu": 0.045, "mouth_hl": 0.1, "teeth": 1.0, "forehead": 0.7},
    "happy": {"brow_in": -0.02, "brow_out": -0.02, "eye_up": 0.06, "eye_low": 0.015,
              "mouth_w": 0.4, "mouth_c": -0.16, "lip": 1.3, "smile_lines": 1.0},
    "sad": {"brow_in": -0.11, "brow_out": 0.06, "brow_arch": -0.02, "eye_up": 0.055,
            "mouth_w": 0.25, "mouth_c": 0.09, "lip": 1.2},
    "surprise": {"brow_in": -0.17, "brow_out": -0.15, "brow_arch": 0.07, "eye_up": 0.14,
                 "eye_low": 0.07, "mouth_w": 0.15, "mouth_hu": 0.09, "mouth_hl": 0.13,
                 "forehead": 1.0},
    "neutral": {},
}
# Variants some samples of a class take instead (an open smile, bared teeth).
_VARIANTS: dict[str, tuple[float, dict[str, float]]] = {
    "happy": (0.5, {"mouth_hu": 0.01, "mouth_hl": 0.09, "teeth": 1.0}),
    "angry": (0.3, {"mouth_hu": 0.03, "mouth_hl": 0.03, "teeth": 1.0, "mouth_w": 0.27}),
}
# Person-to-person spread added to every sample, whatever the class (makes classes overlap).
_JITTER: dict[str, float] = {
    "brow_in": 0.025, "brow_out": 0.025, "eye_up": 0.012, "eye_low": 0.008,
    "mouth_w": 0.025, "mouth_c": 0.02,
}

_SKINS = np.array([[200, 215, 240], [165, 190, 230], [120, 160, 210], [90, 125, 175],
                   [60, 85, 125], [175, 200, 225]], np.float32)          # BGR
_HAIRS = np.array([[20, 20, 25], [30, 45, 70], [40, 70, 110], [90, 150, 200],
                   [150, 150, 155], [30, 60, 140]], np.float32)
_IRIS = np.array([[30, 50, 80], [140, 100, 50], [80, 110, 60], [40, 40, 45]], np.float32)


@dataclass(frozen=True)
class _Frame:
    """Maps face units to canvas pixels: rotate, scale by `a`, shift to (cx, cy)."""

    cx: float
    cy: float
    a: float
    cos: float
    sin: float

    def px(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fixed-point int32 (N, 2) pixel points for cv2 calls drawn with shift=_SHIFT."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        px = self.cx + self.a * (self.cos * x - self.sin * y)
        py = self.cy + self.a * (self.sin * x + self.cos * y)
        return np.round(np.stack([px, py], -1) * (1 << _SHIFT)).astype(np.int32)

    def width(self, t: float) -> int:
        """A line thickness of `t` face units in whole pixels (cv2 wants an int >= 1)."""
        return max(1, int(round(t * self.a)))


@dataclass(frozen=True)
class _Look:
    """One synthetic person: colours and proportions that do not depend on the emotion."""

    skin: tuple[float, ...]
    hair: tuple[float, ...]
    iris: tuple[float, ...]
    lip: tuple[float, ...]
    eye_dx: float
    eye_y: float
    eye_w: float
    eye_scale: float
    brow_y: float
    brow_th: float
    mouth_y: float
    hairline: float
    hair_style: int
    side: int                  # which side a one-sided feature (disgust snarl) is on


def render_face(label: str, rng: np.random.Generator, size: int = 64,
                color: bool = False) -> np.ndarray:
    """Draw one synthetic face showing `label`: (size, size) uint8 gray or (size, size, 3) BGR."""
    if label not in _TARGETS:
        raise ValueError(f"unknown demo label {label!r}; expected one of {list(CLASSES)}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    side = size * SUPERSAMPLE
    look, expr = sample_look(rng), sample_expression(label, rng)
    frame = sample_frame(rng, side)
    layer, mask = draw_head(frame, look, expr, rng, side)
    canvas = compose(make_background(rng, side), layer, mask, frame, rng)
    if rng.random() < 0.15:
        draw_occluder(canvas, frame, look, rng)
    return finish(canvas, size, color, rng)


def sample_look(rng: np.random.Generator) -> _Look:
    """Draw a random identity: skin/hair/eye colours and face proportions."""
    skin = _SKINS[rng.integers(len(_SKINS))] * rng.uniform(0.85, 1.1) + rng.normal(0, 6, 3)
    hair = _HAIRS[rng.integers(len(_HAIRS))] * rng.uniform(0.8, 1.2)
    lip = skin * np.array([0.7, 0.68, 0.92]) * rng.uniform(0.85, 1.0)
    return _Look(
        skin=_bgr(skin), hair=_bgr(hair), iris=_bgr(_IRIS[rng.integers(len(_IRIS))]),
        lip=_bgr(lip), eye_dx=rng.uniform(0.34, 0.42), eye_y=rng.uniform(-0.2, -0.1),
        eye_w=rng.uniform(0.15, 0.2), eye_scale=rng.uniform(0.85, 1.15),
        brow_y=rng.uniform(-0.47, -0.39), brow_th=rng.uniform(0.065, 0.105),
        mouth_y=rng.uniform(0.62, 0.72), hairline=rng.uniform(-1.2, -0.72),
        hair_style=int(rng.integers(4)), side=1 if rng.random() < 0.5 else -1,
    )


def sample_expression(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Feature settings for `label` at a random intensity, plus person-to-person jitter."""
    target = dict(_TARGETS[label])
    if label in _VARIANTS and rng.random() < _VARIANTS[label][0]:
        target.update(_VARIANTS[label][1])
    # Skewed towards strong expressions, but a share are subtle and overlap neighbours.
    strength = rng.beta(3.0, 1.0)
    expr = {k: v + strength * (target.get(k, v) - v) for k, v in _NEUTRAL.items()}
    for key, spread in _JITTER.items():
        expr[key] += rng.normal(0, spread)
    return expr


def sample_frame(rng: np.random.Generator, side: int) -> _Frame:
    """Random pose: rotation within +-15 deg, face oval 60-95 % of the frame tall, small shift.

    Crops come from a face detector, so most faces are near upright, centred and of a
    typical size; the extremes are rarer (as in real crops) rather than uniform.
    """
    fill = 0.6 + 0.35 * rng.beta(4, 4)
    a = fill * side / 2.6                       # the oval is 2.6 face units tall
    shift = np.clip(rng.normal(0, 0.015, 2), -0.04, 0.04) * side
    angle = np.deg2rad(np.clip(rng.normal(0, 6), -15, 15))
    return _Frame(cx=side / 2 + shift[0], cy=side / 2 + shift[1] + 0.05 * a,
                  a=a, cos=float(np.cos(angle)), sin=float(np.sin(angle)))


def draw_head(frame: _Frame, look: _Look, expr: dict[str, float], rng: np.random.Generator,
              side: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the head on a blank BGR layer; return it with its coverage mask."""
    layer = np.zeros((side, side, 3), np.uint8)
    mask = np.zeros((side, side), np.uint8)
    draw_back_hair(layer, mask, frame, look)
    draw_neck_and_ears(layer, mask, frame, look)
    oval = _face_outline(frame)
    cv2.fillPoly(layer, [oval], look.skin, _AA, _SHIFT)
    cv2.fillPoly(mask, [oval], 255, _AA, _SHIFT)
    draw_folds(layer, frame, look, expr)
    for s in (-1, 1):
        draw_eye(layer, frame, look, expr, s, rng)
        draw_brow(layer, frame, look, expr, s)
    draw_nose(layer, frame, look, expr)
    draw_mouth(layer, frame, look, expr)
    draw_fringe(layer, frame, look, rng)
    return layer, mask


def draw_back_hair(layer: np.ndarray, mask: np.ndarray, frame: _Frame, look: _Look) -> None:
    """Hair behind the head: none (style 0), short cap, or long hair down the sides."""
    if look.hair_style == 0:
        return
    t = np.linspace(np.pi, 2 * np.pi, 25)
    bottom = 0.1 if look.hair_style == 1 else 1.4
    x = np.concatenate([1.12 * np.cos(t), [1.12 * (1 + 0.1 * (look.hair_style == 3)), -1.12]])
    y = np.concatenate([-0.15 + 1.35 * np.sin(t), [bottom, bottom]])
    pts = frame.px(x, y)
    cv2.fillPoly(layer, [pts], look.hair, _AA, _SHIFT)
    cv2.fillPoly(mask, [pts], 255, _AA, _SHIFT)


def draw_neck_and_ears(layer: np.ndarray, mask: np.ndarray, frame: _Frame, look: _Look) -> None:
    """Neck (a little darker: in the chin's shadow) and two ears."""
    shade = _bgr(np.array(look.skin) * 0.8)
    neck = frame.px(np.array([-0.42, 0.42, 0.5, -0.5]), np.array([0.6, 0.6, 3.0, 3.0]))
    cv2.fillPoly(layer, [neck], shade, _AA, _SHIFT)
    cv2.fillPoly(mask, [neck], 255, _AA, _SHIFT)
    t = np.linspace(0, 2 * np.pi, 20)
    for s in (-1, 1):
        ear = frame.px(s * 0.98 + 0.14 * np.cos(t), -0.05 + 0.26 * np.sin(t))
        cv2.fillPoly(layer, [ear], _bgr(np.array(look.skin) * 0.9), _AA, _SHIFT)
        cv2.fillPoly(mask, [ear], 255, _AA, _SHIFT)


def _face_outline(frame: _Frame) -> np.ndarray:
    # An egg: the lower half narrows towards the chin.
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    y = 1.3 * np.sin(t)
    x = np.cos(t) * (1 - 0.22 * np.clip(np.sin(t), 0, None) ** 2)
    return frame.px(x, y)


def draw_folds(layer: np.ndarray, frame: _Frame, look: _Look, expr: dict[str, float]) -> None:
    """Skin folds: forehead lines (surprise/fear), frown lines (angry), smile lines (happy)."""
    fold = _bgr(np.array(look.skin) * 0.72)
    thin = frame.width(0.025)
    if expr["forehead"] > 0.3:
        for k in range(1 + int(expr["forehead"] * 2.5)):
            x = np.linspace(-0.4, 0.4, 12)
            y = look.brow_y - 0.15 - 0.11 * k - 0.05 * (1 - (x / 0.4) ** 2)
            cv2.polylines(layer, [frame.px(x, y)], False, fold, thin, _AA, _SHIFT)
    if expr["frown"] > 0.3:
        for s in (-1, 1):
            pts = frame.px(np.array([s * 0.06, s * 0.05]),
                           np.array([look.brow_y - 0.04, look.brow_y + 0.12]))
            cv2.polylines(layer, [pts], False, fold, thin, _AA, _SHIFT)
    if expr["smile_lines"] > 0.3:
        corner_y = look.mouth_y + expr["mouth_c"]
        for s in (-1, 1):
            v = np.linspace(0, 1, 10)
            x = s * (0.2 + (expr["mouth_w"] - 0.1) * v + 0.08 * np.sin(np.pi * v))
            y = 0.28 + (corner_y + 0.1 - 0.28) * v
            cv2.polylines(layer, [frame.px(x, y)], False, fold, frame.width(0.03), _AA, _SHIFT)


def draw_eye(layer: np.ndarray, frame: _Frame, look: _Look, expr: dict[str, float], s: int,
             rng: np.random.Generator) -> None:
    """An almond eye: sclera, iris and pupil, lids; openness comes from the expression."""
    u = np.linspace(-1, 1, 17)
    cx, cy = s * look.eye_dx, look.eye_y
    x = cx + look.eye_w * u
    up = max(expr["eye_up"], 0.015) * look.eye_scale
    low = max(expr["eye_low"], 0.01) * look.eye_scale
    upper = cy - up * (1 - u**2) ** 0.8
    lower = cy + low * (1 - u**2) ** 0.8
    sclera = _bgr(np.array([225, 232, 235]) * rng.uniform(0.8, 1.0))
    cv2.fillPoly(layer, [frame.px(np.r_[x, x[::-1]], np.r_[upper, lower[::-1]])], sclera,
                 _AA, _SHIFT)
    r = 0.075 * look.eye_scale
    center = frame.px(cx + rng.normal(0, 0.02), cy + 0.01)
    cv2.circle(layer, tuple(center), int(r * frame.a * (1 << _SHIFT)), look.iris, -1, _AA, _SHIFT)
    cv2.circle(layer, tuple(center), int(0.45 * r * frame.a * (1 << _SHIFT)), (10, 10, 10), -1,
               _AA, _SHIFT)
    # The iris is a whole disc; paint skin back over what sticks out above and below the lids.
    reach = max(up, low, r) + 0.03
    for edge, far in ((upper, cy - reach), (lower, cy + reach)):
        cover = frame.px(np.r_[x, x[-1], x[0]], np.r_[edge, far, far])
        cv2.fillPoly(layer, [cover], look.skin, _AA, _SHIFT)
    lash = _bgr(np.array(look.hair) * 0.5)
    cv2.polylines(layer, [frame.px(x, upper)], False, lash, frame.width(0.035), _AA, _SHIFT)
    cv2.polylines(layer, [frame.px(x, lower)], False, _bgr(np.array(look.skin) * 0.6),
                  frame.width(0.015), _AA, _SHIFT)


def draw_brow(layer: np.ndarray, frame: _Frame, look: _Look, expr: dict[str, float],
              s: int) -> None:
    """A tapered brow from the inner end (near the nose) to the outer end."""
    v = np.linspace(0, 1, 14)
    inner = 0.13 + expr["brow_gap"]
    x = s * (inner + (0.66 - inner) * v)
    y = (look.brow_y + expr["brow_in"] * (1 - v) + expr["brow_out"] * v
         - (0.05 + expr["brow_arch"]) * np.sin(np.pi * v * 0.9))
    half = look.brow_th * (1 - 0.55 * v) / 2
    pts = frame.px(np.r_[x, x[::-1]], np.r_[y - half, (y + half)[::-1]])
    cv2.fillPoly(layer, [pts], _bgr(np.array(look.hair) * 0.6), _AA, _SHIFT)


def draw_nose(layer: np.ndarray, frame: _Frame, look: _Look, expr: dict[str, float]) -> None:
    """Nostrils and the nose's lower edge; disgust raises them and wrinkles the bridge."""
    shadow = _bgr(np.array(look.skin) * 0.62)
    lift = 0.04 * expr["wrinkle"]
    y0 = 0.33 - lift
    t = np.linspace(0.15 * np.pi, 0.85 * np.pi, 12)
    edge = frame.px(0.13 * np.cos(t), y0 + 0.045 * np.sin(t) - 0.03)
    cv2.polylines(layer, [edge], False, shadow, frame.width(0.025), _AA, _SHIFT)
    flare = 1 + 0.4 * expr["wrinkle"]
    for s in (-1, 1):
        c = frame.px(s * 0.075 * flare, y0)
        axes = (int(0.04 * flare * frame.a * (1 << _SHIFT)), int(0.022 * frame.a * (1 << _SHIFT)))
        cv2.ellipse(layer, tuple(c), axes, np.degrees(np.arctan2(frame.sin, frame.cos)), 0,
                    360, shadow, -1, _AA, _SHIFT)
    if expr["wrinkle"] > 0.3:
        for k in range(3):
            x = np.array([-0.09, 0.0, 0.09])
            y = -0.04 + 0.06 * k + np.array([0.0, 0.03, 0.0])
            cv2.polylines(layer, [frame.px(x, y)], False, shadow, frame.width(0.02), _AA, _SHIFT)


def draw_mouth(layer: np.ndarray, frame: _Frame, look: _Look, expr: dict[str, float]) -> None:
    """Lips around an opening (dark, with teeth) or a closed line between them."""
    u = np.linspace(-1, 1, 25)
    w = max(expr["mouth_w"], 0.1)
    x = w * u
    base = look.mouth_y + expr["mouth_c"] * u**2
    bulge = (1 - u**2) ** 0.7
    snarl = expr["skew"] * np.clip(look.side * u + 0.2, 0, None)   # one side of the upper lip
    top = base - max(expr["mouth_hu"], 0) * bulge - snarl
    bottom = base + max(expr["mouth_hl"], 0) * bulge
    lip = max(expr["lip"], 0.15)
    outer_top = top - 0.045 * lip * (1 - u**2) ** 0.5 * (1 - 0.3 * np.exp(-(u / 0.15) ** 2))
    outer_bottom = bottom + 0.06 * lip * (1 - u**2) ** 0.5
    cv2.fillPoly(layer, [frame.px(np.r_[x, x[::-1]], np.r_[outer_top, outer_bottom[::-1]])],
                 look.lip, _AA, _SHIFT)
    dark = _bgr(np.array(look.lip) * 0.3)
    if np.max(bottom - top) > 0.025:
        draw_mouth_opening(layer, frame, x, top, bottom, expr["teeth"], dark)
    else:
        cv2.polylines(layer, [frame.px(x, (top + bottom) / 2)], False, dark,
                      frame.width(0.03 if lip > 0.5 else 0.04), _AA, _SHIFT)


def draw_mouth_opening(layer: np.ndarray, frame: _Frame, x: np.ndarray, top: np.ndarray,
                       bottom: np.ndarray, teeth: float, dark: tuple[float, ...]) -> None:
    """The dark inside of an open mouth, upper (and for wide openings lower) teeth."""
    cv2.fillPoly(layer, [frame.px(np.r_[x, x[::-1]], np.r_[top, bottom[::-1]])], dark,
                 _AA, _SHIFT)
    if teeth < 0.5:
        return
    white = (215, 225, 228)
    gap = bottom - top
    upper_teeth = top + np.minimum(0.05, 0.45 * gap)
    cv2.fillPoly(layer, [frame.px(np.r_[x, x[::-1]], np.r_[top, upper_teeth[::-1]])], white,
                 _AA, _SHIFT)
    if np.max(gap) > 0.08:
        lower_teeth = bottom - np.minimum(0.035, 0.25 * gap)
        cv2.fillPoly(layer, [frame.px(np.r_[x, x[::-1]], np.r_[lower_teeth, bottom[::-1]])],
                     white, _AA, _SHIFT)


def draw_fringe(layer: np.ndarray, frame: _Frame, look: _Look, rng: np.random.Generator) -> None:
    """A hair band over the top of the forehead down to a random, wavy hairline."""
    if look.hair_style == 0 and rng.random() < 0.5:
        return                                   # some heads are bald
    t = np.linspace(np.pi * 1.05, np.pi * 1.95, 20)
    x_top, y_top = 1.04 * np.cos(t), -0.05 + 1.33 * np.sin(t)
    xs = np.linspace(0.95, -0.95, 16)
    wave = 0.05 * np.sin(xs * rng.uniform(3, 9) + rng.uniform(0, 6))
    ys = look.hairline + 0.25 * (xs / 0.95) ** 2 + wave
    pts = frame.px(np.r_[x_top, xs], np.r_[y_top, ys])
    cv2.fillPoly(layer, [pts], look.hair, _AA, _SHIFT)


def make_background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A float32 BGR background: flat, a linear gradient, or a blurry noise texture."""
    kind = rng.integers(3)
    base = rng.uniform(20, 235, 3).astype(np.float32)
    if kind == 0:
        return np.broadcast_to(base, (side, side, 3)).astype(np.float32)
    if kind == 1:
        ramp = np.linspace(-1, 1, side, dtype=np.float32)
        ramp = ramp[:, None] if rng.random() < 0.5 else ramp[None, :]
        other = rng.uniform(20, 235, 3).astype(np.float32)
        return base + (ramp[..., None] + 1) / 2 * (other - base)
    coarse = rng.normal(0, rng.uniform(15, 50), (int(rng.integers(3, 9)),) * 2 + (3,))
    texture = cv2.resize(coarse.astype(np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + texture, 0, 255)


def compose(background: np.ndarray, layer: np.ndarray, mask: np.ndarray, frame: _Frame,
            rng: np.random.Generator) -> np.ndarray:
    """Shade the head (rounder at the edges, lit from one side) and lay it on the background."""
    side = layer.shape[0]
    gain = cv2.resize(head_shading(frame, rng, side), (side, side),
                      interpolation=cv2.INTER_LINEAR)[..., None]
    alpha = mask.astype(np.float32)[..., None] * np.float32(1 / 255)
    head = layer.astype(np.float32) * gain
    return background + alpha * (head - background)


def head_shading(frame: _Frame, rng: np.random.Generator, side: int) -> np.ndarray:
    """Brightness gain over the canvas, on a coarse grid (it is smooth; this is the hot loop)."""
    n = max(8, side // 4)
    grid = (np.arange(n, dtype=np.float32) + 0.5) * np.float32(side / n) - 0.5
    dx, dy = grid[None, :] - frame.cx, grid[:, None] - frame.cy
    u = (frame.cos * dx + frame.sin * dy) / frame.a
    v = (-frame.sin * dx + frame.cos * dy) / frame.a
    roundness = 1 - rng.uniform(0.1, 0.3) * np.clip(u**2 + (v / 1.3) ** 2, 0, 1.5)
    direction = rng.uniform(0, 2 * np.pi)
    light = 1 + rng.uniform(0, 0.4) * (np.cos(direction) * u + np.sin(direction) * v) / 1.3
    gain = roundness * np.clip(light, 0.4, 1.6) * rng.uniform(0.8, 1.15)
    return gain.astype(np.float32)


def draw_occluder(canvas: np.ndarray, frame: _Frame, look: _Look,
                  rng: np.random.Generator) -> None:
    """Cover part of the face: a bar, glasses, or a hand-like blob."""
    kind = rng.integers(3)
    if kind == 0:
        y, half = rng.uniform(-0.5, 0.9), rng.uniform(0.1, 0.2)
        x = np.array([-3.0, 3.0, 3.0, -3.0])
        tilt = rng.uniform(-0.25, 0.25) * x
        pts = frame.px(x, y + tilt + np.array([-half, -half, half, half]))
        cv2.fillPoly(canvas, [pts], tuple(rng.uniform(0, 255, 3).tolist()), _AA, _SHIFT)
    elif kind == 1:
        draw_glasses(canvas, frame, look, rng)
    else:
        draw_hand(canvas, frame, look, rng)


def draw_glasses(canvas: np.ndarray, frame: _Frame, look: _Look,
                 rng: np.random.Generator) -> None:
    """Round rims with a bridge; half of them are dark sunglasses."""
    rim = tuple(rng.uniform(0, 120, 3).tolist())
    t = np.linspace(0, 2 * np.pi, 24)
    r = rng.uniform(0.2, 0.26)
    dark = rng.random() < 0.5
    for s in (-1, 1):
        lens = frame.px(s * look.eye_dx + r * 1.15 * np.cos(t), look.eye_y + r * np.sin(t))
        if dark:
            cv2.fillPoly(canvas, [lens], (25, 25, 30), _AA, _SHIFT)
        cv2.polylines(canvas, [lens], True, rim, frame.width(0.04), _AA, _SHIFT)
    bridge = frame.px(np.array([-look.eye_dx + r, look.eye_dx - r]), np.full(2, look.eye_y))
    cv2.polylines(canvas, [bridge], False, rim, frame.width(0.04), _AA, _SHIFT)


def draw_hand(canvas: np.ndarray, frame: _Frame, look: _Look, rng: np.random.Generator) -> None:
    """A palm with four fingers reaching up over a cheek or the mouth."""
    skin = _bgr(np.array(look.skin) * rng.uniform(0.85, 1.1))
    s = 1 if rng.random() < 0.5 else -1
    px, py = s * rng.uniform(0.3, 0.9), rng.uniform(0.9, 1.4)
    t = np.linspace(0, 2 * np.pi, 24)
    palm = frame.px(px + 0.42 * np.cos(t), py + 0.5 * np.sin(t))
    cv2.fillPoly(canvas, [palm], skin, _AA, _SHIFT)
    for k in range(4):
        fx = px - 0.3 + 0.2 * k
        finger = frame.px(fx + 0.085 * np.cos(t), py - 0.55 + 0.35 * np.sin(t))
        cv2.fillPoly(canvas, [finger], skin, _AA, _SHIFT)
        cv2.polylines(canvas, [finger], True, _bgr(np.array(skin) * 0.75), 1, _AA, _SHIFT)


def finish(canvas: np.ndarray, size: int, color: bool, rng: np.random.Generator) -> np.ndarray:
    """Downsample to `size`, then slight blur and sensor noise; gray unless `color`."""
    img = cv2.resize(np.clip(canvas, 0, 255).astype(np.float32), (size, size),
                     interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.9))
    if not color:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    img = img + rng.normal(0, rng.uniform(1, 7), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _bgr(values: np.ndarray | Sequence[float]) -> tuple[float, ...]:
    # cv2 colours are plain tuples of Python floats, clipped to the 8-bit range.
    return tuple(float(c) for c in np.clip(np.asarray(values, np.float64), 0, 255))


def _image_rng(seed: int, split: str, label: str, index: int) -> np.random.Generator:
    # Derived from names, not loop order: an image is the same whatever else is generated.
    return np.random.default_rng([seed, zlib.crc32(split.encode()), CANONICAL.index(label), index])


def render_sample(seed: int, split: str, label: str, index: int,
                  sizes: tuple[int, int] = (48, 96), color_share: float = 0.2) -> np.ndarray:
    """The image generate_demo writes for (seed, split, label, index), without writing it."""
    rng = _image_rng(seed, split, label, index)
    size = int(rng.integers(sizes[0], sizes[1] + 1))
    color = bool(rng.random() < color_share)
    return render_face(label, rng, size, color)


def generate_demo(out_dir: Path, per_class: Mapping[str, int], seed: int,
                  classes: Sequence[str] = CLASSES, sizes: tuple[int, int] = (48, 96),
                  color_share: float = 0.2, overwrite: bool = False) -> dict[str, dict[str, int]]:
    """Write out_dir/<split>/<label>/<label>_<split>_<i:05d>.png; return {split: {label: n}}.

    `per_class` maps a split name to the number of images per class. The same seed gives
    byte-identical files. A non-empty out_dir is refused unless `overwrite`, which then
    deletes only the split folders named in `per_class` (and only if they hold demo PNGs).
    """
    out_dir = Path(out_dir)
    check_request(per_class, seed, classes, sizes, color_share)
    prepare_out_dir(out_dir, per_class, overwrite)
    counts = {split: dict.fromkeys(classes, 0) for split in per_class}
    total = sum(per_class.values()) * len(classes)
    with tqdm(total=total, desc="demo faces", unit="img", disable=None) as progress:
        for split, n in per_class.items():
            for label in classes:
                folder = out_dir / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for index in range(n):
                    image = render_sample(seed, split, label, index, sizes, color_share)
                    write_png(folder / f"{label}_{split}_{index:05d}.png", image)
                    counts[split][label] += 1
                    progress.update()
    return counts


def check_request(per_class: Mapping[str, int], seed: int, classes: Sequence[str],
                  sizes: tuple[int, int], color_share: float) -> None:
    """Reject arguments that would write something odd, before anything is written."""
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct labels among {list(CLASSES)}, got {classes}")
    for split, n in per_class.items():
        if not _SPLIT_NAME.fullmatch(split):
            raise ValueError(f"split name {split!r} must be letters, digits, '_' or '-'")
        if int(n) != n or n < 0:
            raise ValueError(f"per_class[{split!r}] must be a count >= 0, got {n!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 8 <= sizes[0] <= sizes[1]:
        raise ValueError(f"sizes must be (min, max) with 8 <= min <= max, got {sizes}")
    if not 0 <= color_share <= 1:
        raise ValueError(f"color_share must be in [0, 1], got {color_share}")


def prepare_out_dir(out_dir: Path, per_class: Mapping[str, int], overwrite: bool) -> None:
    """Refuse a non-empty folder; with overwrite, clear only the split folders we write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is not a folder")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise DataError(f"{out_dir} is not empty; pass --overwrite (overwrite=True) to replace "
                        f"its {'/'.join(per_class)} folder(s)")
    for split in per_class:
        folder = out_dir / split
        if folder.exists():
            check_owned(folder)
            shutil.rmtree(folder)


def check_owned(folder: Path) -> None:
    """Only delete what looks like our own output: <label>/ folders holding only PNGs."""
    for entry in folder.iterdir():
        if not (entry.is_dir() and entry.name in CLASSES
                and all(f.is_file() and f.suffix == ".png" for f in entry.iterdir())):
            raise DataError(f"{folder} holds {entry.name!r}, which generate_demo did not write; "
                            "not deleting it (move it away or pick another --out)")


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode with cv2 (fixed settings: the same pixels always give the same bytes)."""
    ok, blob = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise DataError(f"could not encode {path.name} as PNG")
    path.write_bytes(blob.tobytes())


DESCRIPTION = """\
Generate the synthetic demo faces that the default pipeline trains on.

These are cartoon faces drawn by code (OpenCV shapes), NOT photographs of people: no real
face dataset ships with the project. The expression (angry, disgust, fear, happy, sad,
surprise, neutral) changes the brows, eyes, mouth and nose at a random intensity; pose,
size, skin tone, hair, background, lighting, occluders, blur and noise vary at random.
A model trained on them proves the pipeline works; it says nothing about real faces.

Writes <out>/<split>/<label>/<label>_<split>_<index>.png. The same --seed always gives
byte-identical files, so the folder can be regenerated instead of stored.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m ferops.synthetic` (and `ferops demo-data`)."""
    parser = stage_parser("python -m ferops.synthetic", DESCRIPTION)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "example: python -m ferops.synthetic --out data/demo --train 220 --test 60"
    parser.add_argument("--out", type=Path, default=Path("data/demo"),
                        help="output folder (default: %(default)s)")
    for split, default in (("train", 220), ("val", 0), ("test", 60)):
        parser.add_argument(f"--{split}", type=int, default=default, metavar="N",
                            help=f"images per class in {split}/ (default: %(default)s; "
                                 "0 = no such folder)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default: %(default)s)")
    parser.add_argument("--min-side", type=int, default=48, help="smallest image side (pixels)")
    parser.add_argument("--max-side", type=int, default=96, help="largest image side (pixels)")
    parser.add_argument("--color-share", type=float, default=0.2,
                        help="fraction saved as 3-channel colour PNGs (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the split folders if --out is not empty")
    return parser


def run(args: argparse.Namespace) -> int:
    """Generate from parsed arguments; bad values become a one-line error."""
    per_class = {s: n for s in ("train", "val", "test") if (n := getattr(args, s)) > 0}
    if not per_class:
        raise DataError("nothing to generate: give --train, --val or --test a count > 0")
    try:
        counts = generate_demo(args.out, per_class, args.seed,
                               sizes=(args.min_side, args.max_side),
                               color_share=args.color_share, overwrite=args.overwrite)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    summary = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    log.info("wrote synthetic demo faces to %s (%s; %d classes)", args.out, summary,
             len(CLASSES))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: python -m ferops.synthetic --out data/demo --train 220 --test 60."""
    return run_stage(run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
