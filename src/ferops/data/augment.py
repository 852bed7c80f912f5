"""Stage 4, augment: seeded offline augmentation of the training split only.

Each training image gets (multiplier - 1) augmented copies: horizontal flip, small rotation,
shift and zoom, brightness/contrast jitter and cutout. The random draws of a copy depend
only on (seed, copy number, image hash), so adding new images never changes the copies
of old ones, and a rerun is byte-identical. Validation and test rows pass through untouched.

    python -m ferops.data.augment [--in artifacts/preprocess] [--out artifacts/augment]
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from ferops.config import AugmentConfig, load_params
from ferops.data.arrays import load_arrays, save_arrays
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def augment_image(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """One random label-preserving variant of a (S, S) uint8 face."""
    side = image.shape[0]
    out = image[:, ::-1] if rng.random() < cfg.flip else image
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = 1.0 + rng.uniform(-cfg.zoom, cfg.zoom)
    matrix = cv2.getRotationMatrix2D((side / 2 - 0.5, side / 2 - 0.5), angle, scale)
    matrix[:, 2] += rng.uniform(-cfg.shift, cfg.shift, size=2) * side
    out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (side, side),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    out = out.astype(np.float32)
    contrast = 1.0 + rng.uniform(-cfg.contrast, cfg.contrast)
    brightness = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    out = (out - out.mean()) * contrast + out.mean() + brightness
    if rng.random() < cfg.cutout:
        patch = max(1, int(round(cfg.cutout_frac * side)))
        y, x = rng.integers(0, side - patch + 1, size=2)
        out[y: y + patch, x: x + patch] = out.mean()  # mean, not black: no new dark blob cue
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment(images: np.ndarray, meta: pd.DataFrame, cfg: AugmentConfig, seed: int
            ) -> tuple[np.ndarray, pd.DataFrame]:
    """Append (multiplier - 1) augmented copies of each train row; returns (images, meta).

    images (N, S, S) uint8 -> (N + (multiplier - 1) * N_train, S, S) uint8; meta gains a
    boolean column `augmented`.
    """
    meta = meta.assign(augmented=False)
    train_idx = np.flatnonzero(meta["split"].to_numpy() == "train")
    copies, rows = [], []
    for k in range(1, cfg.multiplier):
        for i in tqdm(train_idx, desc=f"augment copy {k}", unit="img", disable=None):
            rng = np.random.default_rng([seed, k, int(meta["sha256"].iat[i][:15], 16)])
            copies.append(augment_image(images[i], cfg, rng))
        rows.append(meta.iloc[train_idx].assign(augmented=True,
                                                origin=meta["origin"].iloc[train_idx] + f"#aug{k}"))
    if not copies:
        return images, meta
    return (np.concatenate([images, np.stack(copies)]),
            pd.concat([meta, *rows], ignore_index=True))


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops augment", "Seeded offline augmentation of the training split.")
    parser.add_argument("--in", dest="src", type=Path, default=Path("artifacts/preprocess"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/augment"))

    def body(args) -> None:
        params = load_params(args.params)
        images, meta = load_arrays(args.src)
        out_images, out_meta = augment(images, meta, params.augment, params.seed)
        save_arrays(args.out, out_images, out_meta)
        log.info("train %d -> %d images (x%d); val/test untouched -> %s",
                 int((meta["split"] == "train").sum()), int((out_meta["split"] == "train").sum()),
                 params.augment.multiplier, args.out)

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
