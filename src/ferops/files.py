"""Atomic file writes: a reader (or a crash) never leaves or sees half a file.

The data is written to a temporary file in the same folder, flushed, then renamed over the
target (rename is atomic on one filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path`.

    The temporary name is hidden (ingest and the drop-folder watcher skip dot-files) and
    keeps the suffix, for writers that insist on one (Keras: .keras). On an error it is
    removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():  # some writers make a folder
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write data (text as UTF-8) to path atomically, synced to disk. Returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def save_npy_atomic(path: str | Path, array) -> Path:
    """np.save, atomically (np.save on a name would append .npy to a temporary one)."""
    import numpy as np
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """JSON (indented, sorted keys, trailing newline), written atomically."""
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
