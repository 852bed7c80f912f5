"""Which labeled faces in the drop folder are new.

Definition: a face is **new** when it is an image file (`.png`, `.jpg`, `.jpeg`) inside a label
folder of the drop folder (`camera.drop_folder`, e.g. `data/incoming/<label>/...`), neither
hidden nor pending (`*.part` and friends are not images yet), and its path is not in the
baseline. The baseline is the manifest that the retraining flow writes after each successful
run (`artifacts/pipelines/processed.json`: every drop-folder file it trained on); before the
first such run it is the DVC-tracked state (the file list of `data.dvc`'s directory in the DVC
cache). Paths, not contents: a face is new once, however often it is read.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ferops.provenance import data_md5
from pipelines.common import STATE_DIR, read_json, write_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MANIFEST = STATE_DIR / "processed.json"
ATTEMPT = STATE_DIR / "attempt.json"      # the set of new faces the last retraining run saw


@dataclass(frozen=True)
class DropSnapshot:
    """The drop folder at one moment, against the baseline."""
    files: tuple[str, ...]            # every labeled face now there (project-relative paths)
    new: tuple[str, ...]              # those not in the baseline
    baseline: str                     # "manifest", "dvc" or "none"
    per_label: dict[str, int] = field(default_factory=dict)  # new faces per label folder

    @property
    def digest(self) -> str:
        """Identifies this set of new faces (a changed set means a new reason to retrain)."""
        return hashlib.sha256("\n".join(self.new).encode()).hexdigest()[:16]


def list_faces(root: Path, drop_folder: str) -> list[str]:
    """Project-relative paths of the labeled image files under <drop>/<label>/, sorted."""
    drop = root / drop_folder
    if not drop.is_dir():
        return []
    out = []
    for path in drop.rglob("*"):
        rel = path.relative_to(drop)
        if (len(rel.parts) < 2 or any(p.startswith(".") for p in rel.parts)
                or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file()):
            continue  # loose files, hidden files, pending writes and non-images are not faces
        out.append(path.relative_to(root).as_posix())
    return sorted(out)


def dvc_tracked(root: Path) -> set[str] | None:
    """Project-relative paths in the DVC-tracked version of data/, or None if unknown."""
    md5 = data_md5(root)
    if not md5 or not md5.endswith(".dir"):
        return None
    entries = read_json(root / ".dvc/cache/files/md5" / md5[:2] / md5[2:])
    if not isinstance(entries, list):
        return None  # the DVC cache is not pulled here: the baseline is unknown
    return {f"data/{e['relpath']}" for e in entries if "relpath" in e}


def baseline(root: Path) -> tuple[set[str], str]:
    manifest = read_json(root / MANIFEST)
    if manifest is not None:
        return set(manifest.get("files", [])), "manifest"
    tracked = dvc_tracked(root)
    return (tracked, "dvc") if tracked is not None else (set(), "none")


def snapshot(root: Path, drop_folder: str) -> DropSnapshot:
    """The drop folder now: all labeled faces, the new ones and their count per label."""
    files = list_faces(root, drop_folder)
    known, source = baseline(root)
    new = tuple(f for f in files if f not in known)
    depth = len(Path(drop_folder).parts)
    per_label = Counter(Path(f).parts[depth] for f in new)
    return DropSnapshot(tuple(files), new, source, dict(sorted(per_label.items())))


def write_manifest(root: Path, snap: DropSnapshot, data_md5: str | None) -> None:
    """Record the faces a successful retraining run consumed: they are no longer new."""
    write_json(root / MANIFEST, {"files": list(snap.files), "data_md5": data_md5,
                                 "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                             time.gmtime())})


def record_attempt(root: Path, snap: DropSnapshot) -> None:
    """Remember which set of new faces a retraining run started on (success or not), so the
    watcher does not start another run on exactly the same set after a failure."""
    write_json(root / ATTEMPT, {"digest": snap.digest, "n_new": len(snap.new),
                                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def last_attempt_digest(root: Path) -> str | None:
    return (read_json(root / ATTEMPT) or {}).get("digest")
