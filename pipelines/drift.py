"""Drift math on prediction statistics: pure functions, no Prefect, no model.

The service (opt-in, `serving.record_stats`) appends one JSON line per prediction:
`{"ts": 1732170000.5, "model_version": "3", "label": "happy", "confidence": 0.91}`.
Drift is judged on the most recent window of one model version against the training
reference: the total-variation distance between predicted-label and training-label
distributions, and the drop of mean confidence below the reference mean confidence.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OTHER = "(other)"   # a predicted label outside the reference classes
CHUNK = 1 << 16


@dataclass(frozen=True)
class Prediction:
    ts: float
    model_version: str
    label: str
    confidence: float


def parse_line(line: str) -> Prediction | None:
    """One JSONL record, or None for a malformed one (a half-written last line, a bad row)."""
    try:
        r = json.loads(line)
        return Prediction(float(r["ts"]), str(r["model_version"]), str(r["label"]),
                          float(r["confidence"]))
    except (ValueError, KeyError, TypeError):
        return None


def _lines_backwards(path: Path) -> Iterator[str]:
    """The file's lines, last first, reading fixed-size blocks from the end (the log grows)."""
    with open(path, "rb") as f:
        pos, rest = f.seek(0, os.SEEK_END), b""
        while pos > 0:
            step = min(CHUNK, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines.pop(0)  # may be cut at the block boundary: completed next round
            for raw in reversed(lines):
                if raw.strip():
                    yield raw.decode("utf-8", errors="replace")
        if rest.strip():
            yield rest.decode("utf-8", errors="replace")


def recent_predictions(path: Path, window: int,
                       model_version: str | None = None) -> list[Prediction]:
    """The last `window` predictions of model_version (None: the newest record's version),
    oldest first. A missing file is no predictions."""
    if not path.is_file() or window <= 0:
        return []
    out: list[Prediction] = []
    for line in _lines_backwards(path):
        p = parse_line(line)
        if p is None:
            continue
        model_version = model_version or p.model_version
        if p.model_version == model_version:
            out.append(p)
            if len(out) >= window:
                break
    return out[::-1]


def distribution(labels: Iterable[str], classes: Sequence[str]) -> dict[str, float]:
    """Share of each class (labels outside classes pooled as OTHER); empty input: all zero."""
    counts = Counter(label if label in classes else OTHER for label in labels)
    total = sum(counts.values())
    keys = [*classes, *([OTHER] if counts[OTHER] else [])]
    return {k: (counts[k] / total if total else 0.0) for k in keys}


def training_distribution(y_train: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The label distribution of the training split (integer ids into classes)."""
    counts = np.bincount(np.asarray(y_train, np.int64), minlength=len(classes))
    total = counts.sum()
    return {c: (float(counts[i]) / total if total else 0.0) for i, c in enumerate(classes)}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """TV(p, q) = 1/2 sum |p_i - q_i| over the union of keys; 0 = same, 1 = disjoint."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


@dataclass
class DriftReport:
    model_version: str | None
    n: int
    min_n: int
    tv_distance: float | None = None
    threshold: float = 0.2
    mean_confidence: float | None = None
    reference_confidence: float | None = None
    confidence_drop_limit: float = 0.15
    observed: dict[str, float] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        return bool(self.reasons)

    @property
    def confidence_drop(self) -> float | None:
        if self.mean_confidence is None or self.reference_confidence is None:
            return None
        return self.reference_confidence - self.mean_confidence


def assess(preds: Sequence[Prediction], reference: Mapping[str, float],
           reference_confidence: float | None, threshold: float, confidence_drop: float,
           min_n: int) -> DriftReport:
    """Compare a window of predictions with the reference; too few predictions: no verdict."""
    version = preds[-1].model_version if preds else None
    rep = DriftReport(version, len(preds), min_n, threshold=threshold,
                      reference_confidence=reference_confidence,
                      confidence_drop_limit=confidence_drop, reference=dict(reference))
    if len(preds) < max(min_n, 1):
        return rep
    rep.observed = distribution((p.label for p in preds), list(reference))
    rep.tv_distance = total_variation(rep.observed, reference)
    rep.mean_confidence = float(np.mean([p.confidence for p in preds]))
    if rep.tv_distance > threshold:
        rep.reasons.append(f"label distribution moved: TV distance {rep.tv_distance:.3f} > "
                           f"{threshold:.3f}")
    drop = rep.confidence_drop
    if drop is not None and drop > confidence_drop:
        rep.reasons.append(f"mean confidence {rep.mean_confidence:.3f} is {drop:.3f} below the "
                           f"reference {reference_confidence:.3f} (limit {confidence_drop:.3f})")
    return rep
