"""`ferops checkout VERSION`: the code, parameters and data of a registered model, restored.

Every registered version carries its lineage (ferops.provenance.lineage_files, logged to
MLflow as `lineage/`): the git commit, any change to tracked files since it, params.yaml,
data.dvc and dvc.lock. A retraining run versions data but commits nothing, so this is what
makes an older model reproducible after newer ones exist. The restore goes into a separate
git worktree (the checkout you work in is never touched), whose DVC cache and remotes are
this project's: `dvc checkout` brings back data/ and every stage output of that version,
and `dvc status` there proves that code, parameters and data hash to what the lock says.

    ferops checkout 3                      # -> ../<project>-v3
    ferops checkout @champion --into /tmp/champ
    cd ../ferops-v3 && dvc repro evaluate   # up to date: nothing to rebuild
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ferops import registry
from ferops.config import load_params
from ferops.errors import FeropsError
from ferops.provenance import CODE_PATCH, LINEAGE_JSON, PIPELINE_FILES
from ferops.stage import run_stage, stage_parser


class CheckoutError(FeropsError):
    """The version cannot be restored here (no commit, no data, destination in use)."""


def _run(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CheckoutError(f"`{' '.join(cmd)}` failed in {cwd}:\n"
                            f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def restore(root: Path, lineage: Path, dest: Path) -> dict:
    """Make dest a worktree of root at the lineage's commit, with its patch, params, data
    version and lock, sharing root's DVC cache and remotes; then `dvc checkout`."""
    info = json.loads((lineage / LINEAGE_JSON).read_text())
    commit = info.get("git_commit", "unknown")
    if commit == "unknown":
        raise CheckoutError("this version was not trained in a git checkout; its code "
                            "cannot be restored")
    if dest.exists() and any(dest.iterdir()):
        raise CheckoutError(f"{dest} exists and is not empty; choose another --into")
    _run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], root)
    _run(["git", "worktree", "add", "--detach", str(dest), commit], root)
    if info.get("code_patch"):
        _run(["git", "apply", "--binary", str(lineage / CODE_PATCH)], dest)
    for name in (*PIPELINE_FILES, "params.yaml"):
        if (lineage / name).is_file():
            shutil.copyfile(lineage / name, dest / name)
    _share_dvc(root, dest)
    pulled = subprocess.run(_dvc("checkout", "--quiet"), cwd=dest, capture_output=True,
                            text=True)
    if pulled.returncode != 0:   # objects not in the local cache: fetch them from a remote
        _run(_dvc("pull", "--quiet"), dest)
    return info


def _share_dvc(root: Path, dest: Path) -> None:
    """dest uses root's DVC cache, and root's remotes with their paths made absolute (a
    relative local remote such as ../dvc-remote would otherwise point into dest)."""
    _run(_dvc("cache", "dir", "--local", str(root / ".dvc/cache")), dest)
    for line in _run(_dvc("remote", "list"), root).splitlines():
        name, _, url = line.partition("\t") if "\t" in line else line.partition(" ")
        url = url.strip()
        if name and url and "://" not in url and not os.path.isabs(url):
            url = str((root / ".dvc" / url).resolve())
            _run(_dvc("remote", "modify", "--local", name, "url", url), dest)


BUILD_TARGET = "evaluate"   # the model and its metrics; register is an MLflow side effect


def status(dest: Path) -> str:
    """`dvc status evaluate` in dest: "" when the code, parameters, data and outputs of every
    stage up to the model's evaluation match the restored lock."""
    proc = subprocess.run(_dvc("status", BUILD_TARGET), cwd=dest, capture_output=True,
                          text=True)
    text = (proc.stdout + proc.stderr).strip()
    return "" if proc.returncode == 0 and "up to date" in text else text


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(
        "ferops checkout",
        "Restore the code, parameters and data of a registered model version into a new "
        "git worktree (sharing this project's DVC cache), so it can be inspected or rebuilt.")
    parser.add_argument("version", help="a version number, or @champion / @previous / ...")
    parser.add_argument("--into", type=Path,
                        help="destination folder (default: ../<project>-v<version>)")

    def body(args: argparse.Namespace) -> int:
        root = Path(args.params).resolve().parent
        name = load_params(args.params).registry.model_name
        with tempfile.TemporaryDirectory() as tmp, registry.reporting_failures():
            version, lineage = registry.download_lineage(name, args.version, Path(tmp))
            dest = (args.into or root.parent / f"{root.name}-v{version}").resolve()
            info = restore(root, lineage, dest)
        drift = status(dest)
        print(f"{name} version {version} restored in {dest}")
        print(f"  code: {info['git_commit']}" + (" + its recorded changes" if
                                                 info.get("code_patch") else ""))
        print(f"  data: {info.get('data_md5', '?')} (data.dvc), dvc.lock as registered")
        if info.get("untracked"):
            print(f"  not restored (untracked when it was trained): "
                  f"{', '.join(info['untracked'][:10])}")
        if drift:
            print(f"  dvc status is NOT clean:\n{drift}")
            return 1
        print(f"  dvc status {BUILD_TARGET}: up to date. `cd {dest} && dvc repro "
              f"{BUILD_TARGET}` rebuilds nothing; add --force to retrain from these inputs.")
        return 0

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
