"""Stage 5, encode: labels -> the configured class set, integer ids, label map, class weights.

Outputs (artifacts/dataset/):
  x_<split>.npy (N, S, S, 1) uint8 and y_<split>.npy (N,) int64 for train, val, test
  t_train.npy (N, K) float32: soft targets of the training rows, the annotators' vote
                      shares where the source has votes (FER+), else one-hot of y
  label_map.json      classes in id order, merges, and the input spec; travels with the model
  class_weights.json  {class: weight}, balanced on the training split
  summary.json        counts per split and class, and how many rows were dropped and why

    python -m ferops.data.encode [--in artifacts/augment] [--out artifacts/dataset]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ferops.config import SPLITS, ClassesConfig, FacesConfig, load_params
from ferops.data.arrays import load_arrays
from ferops.errors import DataError
from ferops.files import save_npy_atomic
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def map_labels(labels: pd.Series, classes: ClassesConfig) -> np.ndarray:
    """Canonical labels -> class ids (-1 for labels dropped by classes.others: drop)."""
    index = {name: i for i, name in enumerate(classes.names)}
    mapped = labels.map(lambda lab: index.get(classes.merge.get(lab, lab), -1)).to_numpy()
    unknown = sorted(set(labels[mapped < 0]))
    if unknown and classes.others == "fail":
        raise DataError(f"labels {unknown} are not in classes.names {list(classes.names)} "
                        "nor classes.merge; add a merge or set classes.others: drop")
    return mapped.astype(np.int64)


def soft_targets(votes: pd.Series, ids: np.ndarray, classes: ClassesConfig) -> np.ndarray:
    """(N,) vote JSON or "" and class ids -> (N, K) float32 rows that sum to 1.

    Votes go through classes.merge like labels do; votes for classes the set drops
    (classes.others: drop) are left out before normalising. A row without votes, or whose
    votes all fall outside the set, is the one-hot of its label.
    """
    index = {name: i for i, name in enumerate(classes.names)}
    out = np.zeros((len(ids), len(classes.names)), np.float32)
    for row, (text, label_id) in enumerate(zip(votes, ids, strict=True)):
        for label, count in (json.loads(text) if text else {}).items():
            k = index.get(classes.merge.get(label, label), -1)
            if k >= 0:
                out[row, k] += count
        total = out[row].sum()
        if total > 0:
            out[row] /= total
        else:
            out[row, label_id] = 1.0
    return out


def compute_class_weights(y: np.ndarray, n_classes: int, mode: str,
                          max_weight: float | None = None) -> np.ndarray:
    """balanced: n / (k * n_c), so every class carries the same total weight in the loss.

    max_weight caps it: with a class of ~100 images among 25,000 (FER+ contempt, disgust)
    the balanced weight is ~30, so a handful of images would dominate the gradient noise
    and pull predictions towards classes the test set barely has.
    """
    if mode == "none":
        return np.ones(n_classes)
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise DataError(f"class ids {missing} have no training images: cannot weight them")
    weights = len(y) / (n_classes * counts)
    return weights if max_weight is None else np.minimum(weights, max_weight)


def build_label_map(classes: ClassesConfig, faces: FacesConfig) -> dict:
    """Everything a consumer needs to turn a face into model input and an output into a label."""
    return {
        "classes": list(classes.names),
        "merge": dict(classes.merge),
        "input": {"height": faces.size, "width": faces.size, "channels": 1, "dtype": "uint8",
                  "value_range": [0, 255], "scaling": "inside the model (x / 255)",
                  "color": "grayscale (ITU-R 601 luma)"},
        # How photo faces were framed for this model (serving frames them the same way).
        "faces": {"detector": faces.detector, "crop": faces.crop[faces.detector].model_dump(),
                  "align": faces.align},
    }


def encode(images: np.ndarray, meta: pd.DataFrame, classes: ClassesConfig, weights_mode: str,
           max_weight: float | None = None
           ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, dict]:
    """-> ({split: (x (N, S, S, 1) uint8, y (N,) int64)}, class weights (K,), summary,
    soft targets of the train split (N_train, K) float32)."""
    ids = map_labels(meta["label"], classes)
    keep = ids >= 0
    dropped = meta.loc[~keep, "label"].value_counts()
    splits = {}
    for split in SPLITS:
        rows = np.flatnonzero(keep & (meta["split"].to_numpy() == split))
        splits[split] = (images[rows][..., None], ids[rows])
    train_rows = np.flatnonzero(keep & (meta["split"].to_numpy() == "train"))
    votes = (meta["votes"].iloc[train_rows].fillna("") if "votes" in meta
             else pd.Series("", index=train_rows))
    targets = soft_targets(votes, ids[train_rows], classes)
    weights = compute_class_weights(splits["train"][1], len(classes.names), weights_mode,
                                    max_weight)
    summary = {
        "counts": {s: {c: int((y == i).sum()) for i, c in enumerate(classes.names)}
                   for s, (_, y) in splits.items()},
        "n_augmented_train": int(meta.loc[keep, "augmented"].sum()) if "augmented" in meta else 0,
        "dropped_by_label": {str(k): int(v) for k, v in dropped.items()},
        # Training rows whose target is a vote distribution rather than a one-hot label.
        "n_soft_train": int((votes != "").sum()),
    }
    return splits, weights, summary, targets


def write_dataset(out: Path, splits: dict, weights: np.ndarray, label_map: dict,
                  summary: dict, targets: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(out / "t_train.npy", targets)
    for split, (x, y) in splits.items():
        for name, arr in ((f"x_{split}", x), (f"y_{split}", y)):
            save_npy_atomic(out / f"{name}.npy", arr)
    classes = label_map["classes"]
    files = {"label_map.json": label_map, "summary.json": summary,
             "class_weights.json": {c: round(float(w), 6) for c, w in zip(classes, weights,
                                                                          strict=True)}}
    for name, obj in files.items():
        (out / name).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops encode", "Map labels onto the class set; write training arrays.")
    parser.add_argument("--in", dest="src", type=Path, default=Path("artifacts/augment"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/dataset"))

    def body(args) -> None:
        params = load_params(args.params)
        images, meta = load_arrays(args.src)
        splits, weights, summary, targets = encode(images, meta, params.classes,
                                                   params.encode.class_weights,
                                                   params.encode.max_class_weight)
        write_dataset(args.out, splits, weights, build_label_map(params.classes, params.faces),
                      summary, targets)
        log.info("encoded %s over %d classes -> %s",
                 ", ".join(f"{s}={len(y)}" for s, (_, y) in splits.items()),
                 len(params.classes.names), args.out)
        if summary["dropped_by_label"]:
            log.warning("dropped (classes.others: drop): %s", summary["dropped_by_label"])

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
