"""Where a model came from: the raw data's DVC version, the pipeline's lock, the git commit.

One reader of data.dvc for the register stage (model card, MLflow tags) and the flows.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml


def data_md5(root: Path) -> str | None:
    """The md5 of data/ in data.dvc (the raw data version), if any."""
    try:
        return str(yaml.safe_load((root / "data.dvc").read_text())["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return None


def data_version(root: Path) -> dict[str, str]:
    """The raw data's DVC hash and a hash of dvc.lock (every stage's inputs and outputs)."""
    out = {}
    if (md5 := data_md5(root)) is not None:
        out["data_md5"] = md5
    lock = root / "dvc.lock"
    if lock.is_file():
        out["dvc_lock_sha256"] = hashlib.sha256(lock.read_bytes()).hexdigest()
    return out


def git_commit(root: Path) -> str:
    """HEAD's sha, with -dirty when tracked files changed; unknown outside a repository."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
