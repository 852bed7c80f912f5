"""Where a model came from: the raw data's DVC version, the pipeline's lock, the git commit.

One reader of data.dvc for the register stage (model card, MLflow tags) and the flows.
`lineage_files` writes what `ferops checkout` (ferops.lineage) needs to restore a registered
version: data.dvc and dvc.lock are versioned by every retraining run but committed by
nobody, so they travel with the model (MLflow artifacts `lineage/`), as does any change to
tracked code or parameters since the commit.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import yaml

# Files the pipeline itself rewrites (the data version and the stage lock): recorded
# whole in the lineage, so they do not make the code "dirty".
PIPELINE_FILES = ("data.dvc", "dvc.lock")
LINEAGE_JSON = "lineage.json"
CODE_PATCH = "code.patch"


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


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True).stdout


def code_patch(root: Path) -> str:
    """`git diff HEAD` of tracked files, the pipeline's own files excluded ("" if clean)."""
    return _git(root, "diff", "--binary", "HEAD", "--", ".",
                *(f":(exclude){f}" for f in PIPELINE_FILES))


def git_commit(root: Path) -> str:
    """HEAD's sha, with -dirty when tracked code or parameters changed (data.dvc and dvc.lock
    do not count: the lineage records them); unknown outside a repository."""
    try:
        sha = _git(root, "rev-parse", "HEAD").strip()
        return sha + ("-dirty" if code_patch(root) else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def lineage_files(root: Path, out: Path) -> Path:
    """Write into out/ what restores this model's inputs: data.dvc, dvc.lock, params.yaml,
    code.patch (when tracked files differ from the commit) and lineage.json."""
    out.mkdir(parents=True, exist_ok=True)
    for name in (*PIPELINE_FILES, "params.yaml"):
        if (root / name).is_file():
            shutil.copyfile(root / name, out / name)
    info: dict = {"git_commit": "unknown", "code_patch": False, "untracked": [],
                  **data_version(root)}
    try:
        info["git_commit"] = _git(root, "rev-parse", "HEAD").strip()
        patch = code_patch(root)
        if patch:
            (out / CODE_PATCH).write_text(patch)
            info["code_patch"] = True
        # Untracked files are not in the patch; checkout names them.
        info["untracked"] = _git(root, "ls-files", "--others", "--exclude-standard").split()
    except (OSError, subprocess.CalledProcessError):
        pass
    (out / LINEAGE_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return out
