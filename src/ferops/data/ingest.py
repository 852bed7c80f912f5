"""Stage 1, ingest: every configured source -> one table (image, label, split, source, hash).

Exact duplicates are removed, the same image in two splits (leakage) is reported and kept
only in the evaluation split, and an image labelled two ways is quarantined. Every file or
row that is not kept is listed with a reason: nothing is dropped silently. Rows a source's
own labelling protocol leaves unlabelled (FER+ votes without a majority) are listed apart, in
excluded.csv: they are not damaged, so they do not count as quarantine.

    python -m ferops.data.ingest [--params params.yaml] [--out artifacts/ingest]
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ferops.config import FacesConfig, IngestConfig, load_params
from ferops.data.records import SourceRead
from ferops.data.sources import read_source
from ferops.data.table import META_COLUMNS, ImageTable, save_table
from ferops.errors import DataError
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}  # which copy survives leakage


def hash_image(image: np.ndarray) -> str:
    """Content hash of the decoded pixels and shape (the same picture in PNG and BMP matches)."""
    h = hashlib.sha256(f"{image.shape[0]}x{image.shape[1]}:".encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


def assign_splits(splits: list[str | None], hashes: list[str], val_fraction: float,
                  test_fraction: float) -> list[str]:
    """Fill in missing splits from the content hash, so they never change as data grows.

    A source with no split at all is divided into train/val/test; a source with train but
    no val gives val_fraction of its train images to val (same for test when it has none).
    """
    present = {s for s in splits if s is not None}
    unit = [int(h[:13], 16) / 16**13 for h in hashes]  # uniform in [0, 1), stable per image
    out = []
    for split, u in zip(splits, unit, strict=True):
        if split is None or (split == "train" and "test" not in present and "val" not in present):
            split = "test" if u < test_fraction else "val" if u < test_fraction + val_fraction \
                else "train"
        elif split == "train" and "val" not in present:
            split = "val" if u < val_fraction else "train"
        out.append(split)
    return out


def build_frame(read: SourceRead, source: str, cfg: IngestConfig) -> pd.DataFrame:
    """Metadata rows for one source's accepted images, splits filled in."""
    hashes = [hash_image(img) for img in read.images]
    return pd.DataFrame({
        "sha256": hashes,
        "label": read.labels,
        "split": assign_splits(read.splits, hashes, cfg.val_fraction, cfg.test_fraction),
        "source": source,
        "origin": read.origins,
        "height": [img.shape[0] for img in read.images],
        "width": [img.shape[1] for img in read.images],
        "votes": read.votes,
    }, columns=list(META_COLUMNS))


def resolve_duplicates(meta: pd.DataFrame, leakage: str, protect: tuple[str, ...] = ()
                       ) -> tuple[pd.Series, pd.DataFrame, list[dict[str, str]]]:
    """Decide which rows survive: returns (keep mask, removed-duplicates table, quarantine).

    Same hash + same label: one copy is kept, in the highest-priority split (test > val >
    train) and the first origin within it. Same hash + different labels: the label is
    unknowable, so the copies are quarantined. Rows in a protected split are never removed
    (the published test set stays comparable); the other copies of them are.
    """
    meta = meta.assign(_prio=meta["split"].map(SPLIT_PRIORITY), _pos=np.arange(len(meta)),
                       _protected=meta["split"].isin(protect))
    dup = meta[meta.duplicated("sha256", keep=False)].sort_values(["sha256", "_prio", "_pos"])
    keep = pd.Series(True, index=meta.index)
    removed, refused = [], []
    for _, group in dup.groupby("sha256", sort=False):
        guarded = group[group["_protected"]]
        keepers = guarded if len(guarded) else group.iloc[:1]
        others = group.drop(index=keepers.index)
        if group["label"].nunique() > 1:
            labels = " vs ".join(sorted(group["label"].unique()))
            victims = others if len(guarded) else group
            refused += [{"origin": o, "source": s, "reason": f"same image labelled differently "
                         f"elsewhere ({labels}); copies: {', '.join(group['origin'])}"}
                        for o, s in zip(victims["origin"], victims["source"], strict=True)]
            keep[victims.index] = False
            continue
        first = keepers.iloc[0]
        for idx, row in others.iterrows():
            kind = "duplicate" if row["split"] == first["split"] else "leakage"
            removed.append({"origin": row["origin"], "split": row["split"], "kind": kind,
                            "kept": first["origin"], "kept_split": first["split"]})
            keep[idx] = False
    removed_df = pd.DataFrame(removed, columns=["origin", "split", "kind", "kept", "kept_split"])
    if leakage == "fail" and (removed_df["kind"] == "leakage").any():
        examples = removed_df[removed_df["kind"] == "leakage"].head(5)
        raise DataError("the same image appears in two splits (ingest.leakage: fail): "
                        + "; ".join(f"{r.origin} ({r.split}) = {r.kept} ({r.kept_split})"
                                    for r in examples.itertuples()))
    return keep, removed_df, refused


def refuse_blank(read: SourceRead, min_std: float) -> None:
    """Move images with (almost) no contrast, e.g. FER2013's black frames, to quarantine."""
    keep = []
    for i, image in enumerate(read.images):
        std = float(image.std()) if image.size else 0.0
        if std < min_std:
            read.refuse(read.origins[i], f"blank or constant image (pixel std {std:.2f} "
                                         f"< {min_std:g})")
        else:
            keep.append(i)
    if len(keep) < len(read.images):
        read.keep_only(keep)


class Ingested(NamedTuple):
    table: ImageTable
    quarantine: pd.DataFrame   # origin, source, reason: damaged or contradictory rows
    removed: pd.DataFrame      # duplicates and leaked copies
    report: dict
    excluded: pd.DataFrame     # origin, source, reason: left unlabelled by the source's protocol


def ingest(sources: list, cfg: IngestConfig, faces: FacesConfig, root: Path,
           min_std: float = 0.0) -> Ingested:
    """Read every source; return (table, quarantine, removed duplicates, report, excluded).

    Images whose pixel std is below min_std are blank and quarantined (the validate
    stage's own blank-image expectation uses the same threshold as a second guard).
    """
    frames, images, quarantine, excluded, pending, per_source = [], [], [], [], [], {}
    for src in sources:
        read = read_source(src, faces, root, cfg.ferplus_min_share)
        refuse_blank(read, min_std)
        frames.append(build_frame(read, src.name, cfg))
        images += read.images
        quarantine += [{**q, "source": src.name} for q in read.quarantine]
        excluded += [{**q, "source": src.name} for q in read.excluded]
        pending += read.pending
        per_source[src.name] = {
            "read": len(read.images) + len(read.quarantine) + len(read.excluded),
            "accepted": len(read.images), "quarantined": len(read.quarantine),
            "excluded": len(read.excluded)}
    meta = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    keep, removed, refused = resolve_duplicates(meta, cfg.leakage, cfg.protect_splits)
    quarantine += refused
    kept = ImageTable(meta[keep].reset_index(drop=True),
                      [img for img, k in zip(images, keep, strict=True) if k])
    qdf = pd.DataFrame(quarantine, columns=["origin", "source", "reason"])
    xdf = pd.DataFrame(excluded, columns=["origin", "source", "reason"])
    report = build_report(kept, qdf, removed, pending, per_source, xdf)
    return Ingested(kept, qdf, removed, report, xdf)


def build_report(table: ImageTable, quarantine: pd.DataFrame, removed: pd.DataFrame,
                 pending: list[str], per_source: dict, excluded: pd.DataFrame) -> dict:
    """The JSON summary a person (and the validate stage) reads."""
    counts = table.meta.groupby(["split", "label"]).size()
    return {
        "n_kept": len(table),
        "n_quarantined": len(quarantine),
        "n_excluded": len(excluded),
        "n_duplicates_removed": int((removed["kind"] == "duplicate").sum()),
        "n_leakage_removed": int((removed["kind"] == "leakage").sum()),
        "n_pending": len(pending),
        "pending": pending[:100],
        "per_source": per_source,
        "counts": {s: {lab: int(n) for lab, n in counts[s].items()}
                   for s in counts.index.get_level_values(0).unique()},
        "quarantine_reasons": _reason_counts(quarantine),
        "excluded_reasons": _reason_counts(excluded),
    }


def _reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    # Group similar reasons ("row 7: 2303 pixel values" and "row 9: ...") by their wording.
    keys = (quarantine["reason"].str.split(";").str[0]
            .str.replace(r"\d+", "N", regex=True).str.slice(0, 100))
    return {k: int(v) for k, v in keys.value_counts().items()}


def write_outputs(out: Path, result: Ingested) -> None:
    table, quarantine, removed, report, excluded = result
    save_table(table, out)
    quarantine.to_csv(out / "quarantine.csv", index=False)
    excluded.to_csv(out / "excluded.csv", index=False)
    removed.to_csv(out / "duplicates.csv", index=False)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops ingest", "Read every configured source into one image table.")
    parser.add_argument("--out", type=Path, default=Path("artifacts/ingest"))
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="project root that source paths are relative to")

    def body(args) -> None:
        params = load_params(args.params)
        result = ingest(params.ingest.selected(), params.ingest, params.faces, args.root,
                        min_std=params.validate.min_std)
        write_outputs(args.out, result)
        report = result.report
        log.info("kept %d images, quarantined %d, removed %d duplicates and %d leaked copies"
                 "%s%s -> %s", report["n_kept"], report["n_quarantined"],
                 report["n_duplicates_removed"], report["n_leakage_removed"],
                 f", {report['n_excluded']} excluded by the source's labelling protocol"
                 if report["n_excluded"] else "",
                 f", {report['n_pending']} pending" if report["n_pending"] else "", args.out)
        for reason, n in report["excluded_reasons"].items():
            log.info("excluded %d: %s", n, reason)
        reasons = list(report["quarantine_reasons"].items())
        for reason, n in reasons[:5]:
            log.warning("quarantined %d: %s", n, reason)
        if len(reasons) > 5:
            log.warning("... %d more kinds of reason: see %s", len(reasons) - 5,
                        args.out / "quarantine.csv")

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
