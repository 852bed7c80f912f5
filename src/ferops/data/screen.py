"""Screening new labeled faces before anything is versioned.

A face dropped into the drop folder (`camera.drop_folder`) becomes part of a data version
only after `dvc add data`. Anything that ingest or validate would refuse file by file
(an unreadable or truncated file, no face or several, a label outside the class set, an
image smaller than `validate.min_side`, a blank frame) is moved aside first, to
`pipelines.rejected_folder`, and kept there with its reason in `rejected.csv`: it never
reaches `data.dvc`, the DVC remote or a model, and the good faces go on. The checks are the
ingest and validate code itself (ferops.data.sources.read_face, allowed_labels), not a copy.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferops.config import Params, load_params
from ferops.data.expectations import allowed_labels
from ferops.data.sources import PENDING_SUFFIXES, label_of, read_face
from ferops.faces import ImageError
from ferops.stage import run_stage, stage_parser

LOG_NAME = "rejected.csv"
LOG_FIELDS = ("rejected_at", "path", "kept_at", "reason")


@dataclass(frozen=True)
class Rejected:
    path: str      # where the file was (project-relative)
    kept_at: str   # where it is now (project-relative)
    reason: str


def drop_files(root: Path, params: Params) -> list[str]:
    """Project-relative paths of every file ingest will read from the drop folder: all but
    hidden files and pending writes (*.part and friends, picked up once complete)."""
    drop = root / params.camera.drop_folder
    if not drop.is_dir():
        return []
    out = []
    for path in sorted(drop.rglob("*")):
        rel = path.relative_to(drop)
        if (path.is_file() and not any(p.startswith(".") for p in rel.parts)
                and not path.name.lower().endswith(PENDING_SUFFIXES)):
            out.append(path.relative_to(root).as_posix())
    return out


def problem(root: Path, rel: str, params: Params) -> str | None:
    """Why the drop-folder file at project-relative path rel must not be versioned, or None."""
    drop = Path(params.camera.drop_folder)
    under = Path(rel).relative_to(drop)
    if len(under.parts) < 2:
        return "file outside a label folder"
    label = label_of(under)
    if label is None:
        return f"unknown label folder '{under.parts[0]}'"
    allowed = allowed_labels(params.classes)
    if label not in allowed:
        return (f"label '{label}' is not in the class set ({', '.join(allowed)}); "
                "see classes in params.yaml")
    try:
        face = read_face(root / rel, _faces_mode(params), params.faces)
    except ImageError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read file: {exc.strerror or exc}"
    return face_problem(face, params)


def face_problem(face: np.ndarray, params: Params) -> str | None:
    """The validate stage's per-image critical rules (expectations.py), on one face."""
    v = params.validate
    h, w = face.shape[:2]
    if min(h, w) < v.min_side:
        return f"{w}x{h} pixels: smaller than validate.min_side ({v.min_side} px)"
    std = float(face.std())
    if std < v.min_std:
        return f"blank image (pixel std {std:.2f} < validate.min_std {v.min_std:g})"
    return None


def _faces_mode(params: Params) -> str:
    """The `faces` mode of the ingest source that reads the drop folder (auto if none does)."""
    drop = Path(params.camera.drop_folder)
    for src in params.ingest.catalog.values():
        if src.kind == "folder" and Path(src.path) == drop:
            return src.faces
    return "auto"


def screen(root: Path, params: Params, files: Sequence[str] | None = None) -> list[Rejected]:
    """Check each drop-folder file (default: all of drop_files); move the bad ones aside
    (kept, with the reason, in <rejected_folder>/<UTC time>/<path under the drop folder>)."""
    todo = drop_files(root, params) if files is None else files
    bad = [(rel, why) for rel in tqdm(todo, desc="screen drop folder", unit="file",
                                       disable=None)
           if (why := problem(root, rel, params))]
    if not bad:
        return []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(params.pipelines.rejected_folder)
    drop = Path(params.camera.drop_folder)
    out = []
    for rel, why in bad:
        kept = _free_path(root / folder / stamp / Path(rel).relative_to(drop))
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(root / rel, kept)   # a rename on one filesystem
        out.append(Rejected(rel, kept.relative_to(root).as_posix(), why))
    _append_log(root / folder / LOG_NAME, stamp, out)
    return out


def _free_path(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def _append_log(path: Path, stamp: str, rows: list[Rejected]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(LOG_FIELDS)
        writer.writerows([stamp, r.path, r.kept_at, r.reason] for r in rows)
        f.flush()
        os.fsync(f.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(
        "ferops screen",
        "Check every file in the drop folder (camera.drop_folder) the way ingest and validate "
        "will, and move the ones they would refuse to pipelines.rejected_folder, each with "
        "its reason in rejected.csv. The retraining flow does this before `dvc add data`; "
        "run it before your own.")
    parser.add_argument("--dry-run", action="store_true",
                        help="only list what would be moved (exit 1 if anything)")

    def body(args: argparse.Namespace) -> int:
        root = Path(args.params).resolve().parent
        params = load_params(args.params)
        if args.dry_run:
            bad = [(rel, why) for rel in drop_files(root, params)
                   if (why := problem(root, rel, params))]
            for rel, why in bad:
                print(f"would move {rel}: {why}")
            print(f"{len(bad)} file(s) would be moved aside")
            return 1 if bad else 0
        moved = screen(root, params)
        for r in moved:
            print(f"moved {r.path} -> {r.kept_at}: {r.reason}")
        print(f"{len(moved)} file(s) moved aside"
              + (f"; reasons in {Path(params.pipelines.rejected_folder) / LOG_NAME}"
                 if moved else ""))
        return 0

    return run_stage(body, parser, list(argv) if argv is not None else None)


if __name__ == "__main__":
    raise SystemExit(main())
