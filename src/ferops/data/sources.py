"""Readers for each kind of raw source: image folders, the FER2013 CSV, FER+ votes.

Each reader returns a SourceRead: the images it accepted (grayscale, any size), their
label, split (None when the source has no split) and origin, plus a quarantine list with
one reason per file or row it refused. Nothing is dropped without a quarantine entry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferops.config import FacesConfig, SourceConfig
from ferops.data import csvsource
from ferops.data.records import SourceRead, rel_path
from ferops.detection import find_faces
from ferops.errors import DataError
from ferops.faces import ImageError, Photo, crop_face, decode_photo
from ferops.labels import CANONICAL, normalize_label

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}
# Names a writer uses while a file is still being written; picked up on a later run.
PENDING_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", "~")


def read_source(src: SourceConfig, faces: FacesConfig, root: Path,
                ferplus_min_share: float) -> SourceRead:
    """Read one configured source (paths relative to root)."""
    path = root / src.path
    if not path.exists():
        if src.optional:
            log.info("source %s: %s does not exist (optional, skipped)", src.name, src.path)
            return SourceRead()
        raise DataError(f"source '{src.name}': {src.path} not found. "
                        f"See the README section 'Using real data' for where to put it.")
    if src.kind == "folder":
        return read_folder(path, src, faces, root)
    if src.kind == "fer2013":
        return csvsource.read_fer2013(path, root)
    return csvsource.read_ferplus(path, root / str(src.votes), root, ferplus_min_share)


def read_folder(path: Path, src: SourceConfig, faces: FacesConfig, root: Path) -> SourceRead:
    """Read <path>/[<split>/]<label>/**/<image>; the folder names give split and label."""
    out = SourceRead()
    jobs = list(_walk_folder(path, root, out))
    for file, label, split in tqdm(jobs, desc=f"ingest {src.name}", unit="img", disable=None):
        origin = rel_path(file, root)
        try:
            out.add(read_face(file, src.faces, faces), label, split, origin)
        except ImageError as exc:
            out.refuse(origin, str(exc))
        except OSError as exc:
            out.refuse(origin, f"cannot read file: {exc.strerror or exc}")
    return out


def _walk_folder(path: Path, root: Path, out: SourceRead):
    """Yield (file, label, split) for every image file; refuse or defer the rest."""
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():
            out.refuse(rel_path(child, root), "file outside a label folder")
        elif split := SPLIT_ALIASES.get(child.name.lower()):
            for label_dir in sorted(p for p in child.iterdir() if not p.name.startswith(".")):
                yield from _walk_label_dir(label_dir, split, root, out)
        else:
            yield from _walk_label_dir(child, None, root, out)


def _walk_label_dir(label_dir: Path, split: str | None, root: Path, out: SourceRead):
    if label_dir.is_file():
        out.refuse(rel_path(label_dir, root), "file outside a label folder")
        return
    label = normalize_label(label_dir.name)
    for file in sorted(p for p in label_dir.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in file.relative_to(label_dir).parts):
            continue
        if file.name.lower().endswith(PENDING_SUFFIXES):
            out.pending.append(rel_path(file, root))
        elif label is None:
            out.refuse(rel_path(file, root), f"unknown label folder '{label_dir.name}' "
                                         f"(known labels: {', '.join(CANONICAL)})")
        else:
            yield file, label, split


def read_face(file: Path, mode: str, cfg: FacesConfig) -> np.ndarray:
    """The face ingest takes from one image file; ImageError (or OSError) when there is none.
    The drop-folder screening (ferops.data.screen) calls this too, so both refuse alike."""
    photo = decode_photo(file.read_bytes(), cfg.max_pixels, cfg.detect_max_side)
    return _face_of(photo, mode, cfg)


def label_of(rel: Path) -> str | None:
    """The canonical label of a file from its path under a folder source
    (<label>/... or <split>/<label>/...), or None for an unknown label folder."""
    parts = rel.parts
    if len(parts) > 2 and parts[0].lower() in SPLIT_ALIASES:
        parts = parts[1:]
    return normalize_label(parts[0]) if len(parts) > 1 else None


def _face_of(photo: Photo, mode: str, cfg: FacesConfig) -> np.ndarray:
    """The face in an image: the image itself (a crop), or the single face detected in it."""
    gray = photo.gray
    if mode == "crop" or (mode == "auto" and max(gray.shape) <= cfg.crop_max_side):
        return gray
    found = find_faces(gray, cfg, photo.color)
    if not found:
        raise ImageError("no face found (use faces: crop for images that are face crops)")
    if len(found) > 1:
        raise ImageError(f"{len(found)} faces found; a labeled photo must show exactly one face")
    return crop_face(gray, found[0], cfg)
