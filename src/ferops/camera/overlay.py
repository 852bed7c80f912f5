"""Drawing on frames: face boxes with label and confidence, the status bar, legend and notices.

All functions draw in place on a BGR uint8 frame and return it, so they chain.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ferops.camera.client import ServiceStatus
from ferops.camera.pipeline import FaceView

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, GREY, RED, BLACK = (255, 255, 255), (160, 160, 160), (40, 40, 230), (0, 0, 0)
# BGR, one colour per canonical emotion; anything else is drawn in grey.
COLORS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160),
          "happy": (30, 200, 240), "sad": (200, 120, 40), "surprise": (40, 170, 250),
          "neutral": (200, 200, 200), "contempt": (120, 120, 60)}


def draw_text(frame: np.ndarray, text: str, org: tuple[int, int], color=WHITE,
              scale: float = 0.5, bg=BLACK) -> np.ndarray:
    """Text on a filled background so it reads on any picture; org is the top-left corner."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    cv2.rectangle(frame, (x, y), (x + w + 6, y + h + base + 6), bg, cv2.FILLED)
    cv2.putText(frame, text, (x + 3, y + h + 3), FONT, scale, color, 1, cv2.LINE_AA)
    return frame


def draw_face(frame: np.ndarray, view: FaceView) -> np.ndarray:
    """Box plus 'label 0.93'; an older answer (service slow or away) is drawn thinner, with '~'."""
    b, pred = view.face.box, view.prediction
    color = COLORS.get(pred.label, GREY) if pred else GREY
    cv2.rectangle(frame, (b.x, b.y), (b.x + b.w, b.y + b.h), color, 2 if view.fresh else 1)
    text = "..." if pred is None else f"{pred.label} {pred.confidence:.2f}"
    if pred is not None and not view.fresh:
        text = "~" + text
    (_, h), base = cv2.getTextSize(text, FONT, 0.5, 1)
    y = b.y - h - base - 8 if b.y - h - base - 8 >= 0 else b.y + b.h + 2
    return draw_text(frame, text, (b.x, y), BLACK if pred else WHITE, bg=color)


def status_lines(fps: float, faces: int, status: ServiceStatus,
                 model_version: str | None = None) -> list[tuple[str, tuple[int, int, int]]]:
    """The status bar's lines with their colours: speed first, then the service's state."""
    head = f"{fps:4.1f} fps  faces {faces}"
    if model_version:
        head += f"  model {model_version}"
    lines = [(head, WHITE)]
    if not status.ok:
        retry = f" in {status.retry_in_s:.1f} s" if status.retry_in_s >= 0.1 else ""
        state = "service unavailable" if status.retryable else "service refused the request"
        lines.append((f"{state}, retrying{retry} (errors {status.errors})", RED))
        if status.last_error:
            lines.append((status.last_error[:70], RED))
    return lines


def draw_status(frame: np.ndarray, lines: Sequence[tuple[str, tuple[int, int, int]]]
                ) -> np.ndarray:
    y = 4
    for text, color in lines:
        draw_text(frame, text, (4, y), color)
        y += 22
    return frame


def draw_legend(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Bottom-left key legend (labeling mode)."""
    y = frame.shape[0] - 22 * len(lines) - 4
    for text in lines:
        draw_text(frame, text, (4, y), WHITE)
        y += 22
    return frame


def draw_notice(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A dimmed frame with a centred block of text (the consent notice)."""
    frame[:] = (frame * 0.35).astype(np.uint8)
    height = 24 * len(lines)
    y = max(4, (frame.shape[0] - height) // 2)
    for text in lines:
        draw_text(frame, text, (12, y), WHITE, scale=0.55)
        y += 24
    return frame


def annotate(frame: np.ndarray, views: Sequence[FaceView],
             status: Sequence[tuple[str, tuple[int, int, int]]],
             legend: Sequence[str] = (), notice: Sequence[str] = ()) -> np.ndarray:
    """Everything on one frame, in drawing order (a notice covers the rest)."""
    for view in views:
        draw_face(frame, view)
    draw_status(frame, status)
    if legend:
        draw_legend(frame, legend)
    if notice:
        draw_notice(frame, notice)
    return frame
