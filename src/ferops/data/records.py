"""What a source reader returns: accepted images and a quarantine list with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SourceRead:
    images: list[np.ndarray] = field(default_factory=list)   # each (H, W) uint8
    labels: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)   # None: the source has no split
    origins: list[str] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)          # files still being written

    def add(self, image: np.ndarray, label: str, split: str | None, origin: str) -> None:
        self.images.append(image)
        self.labels.append(label)
        self.splits.append(split)
        self.origins.append(origin)

    def refuse(self, origin: str, reason: str) -> None:
        self.quarantine.append({"origin": origin, "reason": reason})


def rel_path(path: Path, root: Path) -> str:
    """path relative to the project root when it is inside it (stable across machines)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
