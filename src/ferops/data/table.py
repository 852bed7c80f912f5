"""The ingested image table: one metadata row per image plus a ragged grayscale pixel store.

On disk (a directory):
  meta.parquet   columns META_COLUMNS, one row per kept image, in a stable order
  pixels.npy     1-D uint8, every image's pixels row-major, concatenated; row i lives at
                 pixels[offset_i : offset_i + height_i * width_i]
Images keep their own size until preprocess makes them 48x48, so the validation stage
can see what actually arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ferops.files import atomic_path, save_npy_atomic

# votes: JSON {label: count} of the source's annotators (FER+), or "" where there are none.
META_COLUMNS = ("sha256", "label", "split", "source", "origin", "height", "width", "votes")


@dataclass
class ImageTable:
    meta: pd.DataFrame            # columns META_COLUMNS
    images: list[np.ndarray]      # each (height, width) uint8

    def __post_init__(self) -> None:
        if len(self.meta) != len(self.images):
            raise ValueError(f"{len(self.meta)} metadata rows for {len(self.images)} images")
        if "votes" not in self.meta:   # a table built without them: no votes known
            self.meta = self.meta.assign(votes="")

    def __len__(self) -> int:
        return len(self.images)


def empty_meta() -> pd.DataFrame:
    """A metadata frame with the right columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("height", "width") else "object")
                         for c in META_COLUMNS})


def save_table(table: ImageTable, out_dir: Path) -> None:
    """Write meta.parquet and pixels.npy (written to temp names, then renamed: no half files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = table.meta.loc[:, list(META_COLUMNS)].reset_index(drop=True)
    meta = meta.astype({"height": "int64", "width": "int64"})
    sizes = np.array([img.size for img in table.images], dtype=np.int64)
    meta["offset"] = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)[:len(sizes)]
    flat = (np.concatenate([img.reshape(-1) for img in table.images])
            if table.images else np.zeros(0, np.uint8))
    with atomic_path(out_dir / "meta.parquet") as tmp:
        meta.to_parquet(tmp, index=False)
    save_npy_atomic(out_dir / "pixels.npy", flat.astype(np.uint8, copy=False))


def load_table(in_dir: Path) -> ImageTable:
    """Read a table written by save_table (pixels are views into one memory block)."""
    meta = pd.read_parquet(in_dir / "meta.parquet")
    flat = np.load(in_dir / "pixels.npy")
    images = [
        flat[o: o + h * w].reshape(h, w)
        for o, h, w in zip(meta["offset"], meta["height"], meta["width"], strict=True)
    ]
    return ImageTable(meta.drop(columns=["offset"]), images)
