"""Follow faces from frame to frame by box overlap, so a slow answer still has a face to land on.

The service answers asynchronously; a prediction is stored on the track it was asked for, and
later frames draw the track's last known result until a newer one arrives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ferops.camera.client import Prediction
from ferops.faces import Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    box: Box
    last_seen: int                       # frame index
    prediction: Prediction | None = None
    predicted_at: int = -1               # frame index the prediction was made for


class Tracker:
    """Greedy IoU matching; thread-safe (the detector assigns, HTTP workers update)."""

    def __init__(self, min_iou: float = 0.3, max_age: int = 30):
        self.min_iou = min_iou
        self.max_age = max_age          # frames a face may go undetected before it is forgotten
        self._tracks: dict[int, Track] = {}
        self._next_id = 0
        self._lock = threading.Lock()

    def assign(self, boxes: list[Box], frame: int) -> list[int]:
        """One track id per box (same order): the best-overlapping live track, or a new one."""
        with self._lock:
            self._forget_old(frame)
            pairs = sorted(((iou(box, t.box), i, t.id) for i, box in enumerate(boxes)
                            for t in self._tracks.values()), reverse=True)
            ids: list[int | None] = [None] * len(boxes)
            used: set[int] = set()
            for score, i, tid in pairs:
                if score < self.min_iou:
                    break
                if ids[i] is None and tid not in used:
                    ids[i] = tid
                    used.add(tid)
            for i, box in enumerate(boxes):
                if ids[i] is None:
                    ids[i] = self._next_id
                    self._tracks[self._next_id] = Track(self._next_id, box, frame)
                    self._next_id += 1
                track = self._tracks[ids[i]]
                track.box, track.last_seen = box, frame
            return [int(i) for i in ids]  # type: ignore[arg-type]

    def update(self, track_id: int, prediction: Prediction, frame: int) -> None:
        """Store a prediction unless a newer frame's answer already arrived (answers may race)."""
        with self._lock:
            track = self._tracks.get(track_id)
            if track is not None and frame >= track.predicted_at:
                track.prediction, track.predicted_at = prediction, frame

    def last(self, track_id: int) -> tuple[Prediction | None, int]:
        """(last known prediction, the frame it was made for; -1 when none)."""
        with self._lock:
            track = self._tracks.get(track_id)
            return (track.prediction, track.predicted_at) if track else (None, -1)

    def _forget_old(self, frame: int) -> None:
        for tid in [t.id for t in self._tracks.values() if frame - t.last_seen > self.max_age]:
            del self._tracks[tid]
