"""What a source reader returns: accepted images, a quarantine list with reasons, and rows
the source's own labelling protocol leaves without a label (excluded, also with reasons)."""

from __future__ import annotations

import os
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
    # Not broken data: e.g. FER+ faces whose votes have no majority. Listed, not quarantined,
    # so they neither need review nor count against validate's quarantine ceiling.
    excluded: list[dict[str, str]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)          # files still being written
    # Per image: the annotators' votes as JSON {label: count} where the source has them
    # (FER+), else "" (the label is all there is). encode turns them into soft targets.
    votes: list[str] = field(default_factory=list)

    def add(self, image: np.ndarray, label: str, split: str | None, origin: str,
            votes: str = "") -> None:
        self.images.append(image)
        self.labels.append(label)
        self.splits.append(split)
        self.origins.append(origin)
        self.votes.append(votes)

    def keep_only(self, indices: list[int]) -> None:
        """Keep these accepted images (every per-image list alike), drop the rest."""
        for name in ("images", "labels", "splits", "origins", "votes"):
            values = getattr(self, name)
            setattr(self, name, [values[i] for i in indices])

    def refuse(self, origin: str, reason: str) -> None:
        self.quarantine.append({"origin": origin, "reason": reason})

    def exclude(self, origin: str, reason: str) -> None:
        self.excluded.append({"origin": origin, "reason": reason})


def rel_path(path: Path, root: Path) -> str:
    """path relative to the project root (stable across machines and checkouts)."""
    # abspath, not resolve(): a symlinked dataset keeps its name inside the project
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()
