"""Small real things many test tiers need: a synthetic face dataset, a free port."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import numpy as np

from ferops.config import load_params
from ferops.data.demo import CLASSES, render_face
from ferops.data.encode import build_label_map, compute_class_weights, write_dataset
from ferops.faces import normalize_face

# The project's own parameters: tests change a value with PARAMS.<section>.replace(key=...).
PARAMS = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
PER_CLASS = {"train": 40, "val": 10, "test": 10}


def make_dataset(out: Path) -> None:
    splits = {}
    for s, (split, n) in enumerate(PER_CLASS.items()):
        x, y = [], []
        for c, label in enumerate(CLASSES):
            for i in range(n):
                rng = np.random.default_rng([s, c, i])
                x.append(normalize_face(render_face(label, rng, 48), 48))
                y.append(c)
        splits[split] = (np.stack(x)[..., None], np.array(y, np.int64))
    weights = compute_class_weights(splits["train"][1], len(CLASSES), "balanced")
    write_dataset(out, splits, weights, build_label_map(PARAMS.classes, PARAMS.faces), {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def copy_checkout(project: Path, dest: Path) -> Path:
    """Copy the project's files as git would check them out (tracked + new, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=project,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (project / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes((project / rel).read_bytes())
    return dest
