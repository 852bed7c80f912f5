"""The real `dvc repro` on the embedded demo data, in a temporary clone of the project."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT, noise_image, png_bytes
from tests.factories import copy_checkout

pytestmark = pytest.mark.slow
DATA_STAGES = ("ingest", "validate", "preprocess", "augment", "encode")


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd / "src"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The project's files as git would check them out (tracked + new, not ignored)."""
    dest = tmp_path_factory.mktemp("clone") / "ferops"
    copy_checkout(PROJECT, dest)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone"]):
        run(cmd, dest)
    run(["dvc", "pull", "-q", "data.dvc"], dest)
    return dest


def test_repro_builds_the_dataset_and_leaves_status_clean(clone: Path):
    run(["dvc", "repro", "encode"], clone)
    dataset = clone / "artifacts/dataset"
    label_map = json.loads((dataset / "label_map.json").read_text())
    assert label_map["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                    "neutral"]
    for split in ("train", "val", "test"):
        x, y = np.load(dataset / f"x_{split}.npy"), np.load(dataset / f"y_{split}.npy")
        assert x.shape[1:] == (48, 48, 1) and x.dtype == np.uint8 and len(x) == len(y) > 0
        assert set(np.unique(y)) == set(range(7))
    summary = json.loads((clone / "artifacts/validate/summary.json").read_text())
    assert summary["success"] is True
    assert (clone / "artifacts/validate/report.md").read_text().strip()
    status = run(["dvc", "status", *DATA_STAGES], clone).stdout
    assert "up to date" in status.lower(), status
    again = run(["dvc", "repro", "encode"], clone).stdout
    assert all(f"Stage '{s}' didn't change" in again for s in DATA_STAGES), again


def test_new_faces_in_the_drop_folder_reach_the_next_repro(clone: Path):
    before = json.loads((clone / "artifacts/ingest/report.json").read_text())["n_kept"]
    drop = clone / "data/incoming/happy"
    drop.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(7)
    for i in range(3):
        (drop / f"new_{i}.png").write_bytes(png_bytes(noise_image(g, 64)))
    (drop / "broken.png").write_bytes(b"")  # quarantined, does not stop the pipeline
    run(["dvc", "repro", "encode"], clone)
    report = json.loads((clone / "artifacts/ingest/report.json").read_text())
    assert report["n_kept"] == before + 3
    assert report["per_source"]["incoming"] == {"read": 4, "accepted": 3, "quarantined": 1,
                                                 "excluded": 0}
    run(["dvc", "add", "-q", "data"], clone)  # version the new raw data
    assert "up to date" in run(["dvc", "status", "data.dvc", *DATA_STAGES], clone).stdout.lower()


def test_bad_data_stops_the_pipeline_with_the_file_named(clone: Path):
    # contempt is a real emotion, but not in the 7-class set: validation must stop here
    stray = clone / "data/incoming/contempt/face.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(png_bytes(noise_image(np.random.default_rng(3), 48)))
    dataset = clone / "artifacts/dataset/x_train.npy"
    stamp = dataset.stat().st_mtime_ns
    proc = run(["dvc", "repro", "encode"], clone, check=False)
    assert proc.returncode != 0
    assert "label in allowed set" in proc.stderr
    assert "data/incoming/contempt/face.png" in proc.stderr
    assert dataset.stat().st_mtime_ns == stamp  # nothing bad got further than validate
    stray.unlink()  # the fix: remove the stray file; the rerun works
    run(["dvc", "repro", "encode"], clone)
    assert json.loads((clone / "artifacts/validate/summary.json").read_text())["success"]


def test_full_repro_trains_evaluates_registers_and_reports(clone: Path, tmp_path: Path,
                                                           monkeypatch):
    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("train:\n  profile: demo",
                                                 "train:\n  profile: demo\n  epochs: 2"))
    env_uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)  # run() passes os.environ on
    run(["dvc", "repro"], clone)
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], clone).stdout)
    values = next(iter(metrics.values()))["data"]["artifacts/eval/metrics.json"]["data"]
    assert 0.0 <= values["test_accuracy"] <= 1.0 and "test_single_pass_accuracy" in values
    assert "test_tta_flip_accuracy" not in values  # the model averages itself
    registered = json.loads((clone / "artifacts/registry/registered.json").read_text())
    assert registered["version"] == "1" and registered["git_commit"]
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], clone)
    assert (tmp_path / "plots/index.html").stat().st_size > 1000
    assert "up to date" in run(["dvc", "status"], clone).stdout.lower()


def test_status_reports_every_change_that_affects_a_stage(clone: Path):
    """After a full repro: a file imported only inside a function, a training default and the
    config reader each make `dvc status` report the stages they affect (issue 18)."""
    assert "up to date" in run(["dvc", "status"], clone).stdout.lower()

    def stale_stages() -> set[str]:
        out = json.loads(run(["dvc", "status", "--json"], clone).stdout)
        return {name.split(":")[-1] for name in out}

    def changed(path: str, edit) -> set[str]:
        file = clone / path
        before = file.read_text()
        file.write_text(edit(before))
        try:
            return stale_stages()
        finally:
            file.write_text(before)

    # lr.py is imported inside train's _fit: it was missing from the deps before
    assert changed("src/ferops/training/lr.py", lambda s: s + "\n# changed\n") == {"train"}
    # a default that only train_defaults holds (the demo profile does not set it)
    assert changed("params.yaml", lambda s: s.replace("  warmup_epochs: 1\n",
                                                      "  warmup_epochs: 2\n")) == {"train"}
    # the one reader of params.yaml: every stage that reads it
    assert changed("src/ferops/config.py", lambda s: s + "\n# changed\n") == {
        "ingest", "validate", "preprocess", "augment", "encode", "train", "evaluate",
        "register"}
    assert stale_stages() == set()
