"""The fixed-size dataset format shared by preprocess, augment and encode.

A directory with images.npy, (N, S, S) uint8, and meta.parquet, one row per image
(sha256, label, split, source, origin, height, width, votes[, augmented]). Written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ferops.files import atomic_path, save_npy_atomic


def save_arrays(out_dir: Path, images: np.ndarray, meta: pd.DataFrame) -> None:
    if len(images) != len(meta):
        raise ValueError(f"{len(images)} images for {len(meta)} metadata rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(out_dir / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    with atomic_path(out_dir / "meta.parquet") as tmp:
        meta.reset_index(drop=True).to_parquet(tmp, index=False)


def load_arrays(in_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    return np.load(in_dir / "images.npy"), pd.read_parquet(in_dir / "meta.parquet")
