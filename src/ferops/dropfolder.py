"""The drop folder of labeled faces: <folder>/<label>/<UTC time>-<hash>.png, written atomically.

Ingest's `incoming` source reads it (it skips dot-files, so a half-written file is never seen).
The camera client and the service's /label endpoint both write through save_crop: only the
48x48 grayscale crop the model sees is stored, never a frame.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import cv2
import numpy as np

from ferops.files import write_atomic


def save_crop(crop: np.ndarray, label: str, drop_folder: str | Path) -> Path:
    """Write crop as <drop_folder>/<label>/<UTC time>-<hash>.png, atomically; return the path."""
    ok, png = cv2.imencode(".png", np.asarray(crop, dtype=np.uint8))
    if not ok:
        raise ValueError(f"cannot encode a crop of shape {np.shape(crop)} as PNG")
    data = png.tobytes()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    folder = Path(drop_folder) / label
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stamp}-{hashlib.sha256(data).hexdigest()[:10]}.png"
    write_atomic(path, data)
    return path
