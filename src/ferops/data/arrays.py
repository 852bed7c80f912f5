"""The fixed-size dataset format shared by preprocess, augment and encode.

A directory with images.npy, (N, S, S) uint8, and meta.parquet, one row per image
(sha256, label, split, source, origin[, augmented]). Written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def save_arrays(out_dir: Path, images: np.ndarray, meta: pd.DataFrame) -> None:
    if len(images) != len(meta):
        raise ValueError(f"{len(images)} images for {len(meta)} metadata rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_img, tmp_meta = out_dir / "images.npy.tmp", out_dir / "meta.parquet.tmp"
    with open(tmp_img, "wb") as fh:
        np.save(fh, np.ascontiguousarray(images, dtype=np.uint8))
    meta.reset_index(drop=True).to_parquet(tmp_meta, index=False)
    tmp_img.replace(out_dir / "images.npy")
    tmp_meta.replace(out_dir / "meta.parquet")


def load_arrays(in_dir: Path) -> tuple[np.ndarray, pd.DataFrame]:
    return np.load(in_dir / "images.npy"), pd.read_parquet(in_dir / "meta.parquet")
