"""Small real things many test tiers need: a synthetic face dataset, a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ferops.config import load_params
from ferops.data.encode import build_label_map, compute_class_weights, write_dataset
from ferops.faces import normalize_face
from ferops.synthetic import CLASSES, render_face

# The project's own parameters: tests change a value with PARAMS.<section>.replace(key=...).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PARAMS = PROJECT_ROOT / "params.yaml"
PARAMS = load_params(PROJECT_PARAMS)
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
    onehot = np.eye(len(CLASSES), dtype=np.float32)[splits["train"][1]]
    write_dataset(out, splits, weights, build_label_map(PARAMS.classes, PARAMS.faces), {},
                  onehot)


def write_params(root: Path, name: str = "params.yaml", **sections: dict[str, Any]) -> Path:
    """The project's params.yaml under root/name, with some keys of some sections replaced
    (every key is required, so tests start from the real file)."""
    raw = yaml.safe_load(PROJECT_PARAMS.read_text())
    for section, values in sections.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    path = root / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


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


def bench(script: str, args: list[str], out: Path, env: dict | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a benchmark script as its README command does, writing JSON into out."""
    run_env = {**(env or os.environ), "FEROPS_BENCH_RESULTS": str(out),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "benchmarks" / script), *args],
                          cwd=PROJECT_ROOT, env=run_env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc
