"""The retraining flow end to end in a temporary clone: real dvc, training, MLflow, BentoML.

One full `dvc repro` (2 short epochs), then cheap runs on the same clone: nothing new, MLflow
down, bad files moved aside (one more short training), a dataset that fails validation. The
tests run in file order and share the clone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pipelines.newdata import MANIFEST, snapshot

from tests.conftest import PROJECT, png_bytes
from tests.factories import copy_checkout, free_port, write_params
from tests.pipelines.conftest import add_faces, latest_artifact

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
MODEL = "ferops-emotion"


def git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The project as git would check it out (tracked + new files), data pulled, fast params."""
    dest = tmp_path_factory.mktemp("clone") / "ferops"
    copy_checkout(PROJECT, dest)
    # Two short epochs on a subset; floor 0 so the first model is promoted whatever it scores.
    write_params(dest, train={"profile": "demo", "epochs": 2, "max_train_images": 800},
                 registry={"floor": 0.0})
    git(["init", "-q"], dest)
    git(["add", "-A"], dest)
    git(["commit", "-qm", "clone"], dest)
    from pipelines.common import dvc_cmd, project_env
    subprocess.run(dvc_cmd("pull", "-q", "data.dvc"), cwd=dest, env=project_env(dest),
                   check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module", autouse=True)
def stores(clone: Path, tmp_path_factory):
    """MLflow (sqlite) and the BentoML model store inside the test's folders."""
    bento = tmp_path_factory.mktemp("bentoml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{clone}/mlflow.db")
        mp.setenv("BENTOML_HOME", str(bento))
        mp.delenv("FEROPS_API_KEY", raising=False)
        yield {"bento": bento}


def registry_state() -> tuple[dict[str, str | None], list[str]]:
    """(aliases, registered versions) of the model in the current MLflow store."""
    from ferops import registry
    client = registry.connect()
    aliases = {a: registry.alias_version(client, MODEL, a)
               for a in ("challenger", "champion", "previous")}
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    return aliases, versions


def test_retrain_versions_data_registers_promotes_and_reports(clone: Path, stores: dict):
    from pipelines.retrain import retrain_flow
    data_before = (clone / "data.dvc").read_text()
    add_faces(clone, "happy", 5, seed=11)
    add_faces(clone, "sad", 3, seed=12)
    closed = f"http://127.0.0.1:{free_port()}"  # no service there: reload is only a warning
    result = retrain_flow(str(clone), service_url=closed, mlflow_retry_delay_s=1)

    assert result["status"] == "completed" and result["new_faces"] == 8
    assert result["new_version"] == "1" and result["decision"] == "promoted"
    assert {"ingest", "validate", "train", "evaluate", "register"} <= set(result["stages"])
    assert result["reload"].startswith("WARNING") and "/reload failed" in result["reload"]
    assert registry_state() == ({"challenger": "1", "champion": "1", "previous": None}, ["1"])
    decision = json.loads((clone / "artifacts/registry/decision.json").read_text())
    assert decision["action"] == "promoted" and decision["challenger"] == "1"
    assert (clone / "data.dvc").read_text() != data_before  # the new faces are versioned
    assert (stores["bento"] / "models" / MODEL).is_dir()     # exported for the service
    assert len(json.loads((clone / MANIFEST).read_text())["files"]) == 8
    cache = json.loads((clone / "artifacts/monitoring/reference.json").read_text())
    assert 0 < cache["1"]["mean_confidence"] <= 1           # the drift reference, cached

    text = latest_artifact("ferops-retrain")
    for part in ("# ferops retraining: new model version 1", "| happy | 5 |", "| sad | 3 |",
                 "dvc push: pushed", "| accuracy |", "test_single_pass", "**promoted**",
                 "Reason: first model", "actual \\ predicted", "Service reload: WARNING"):
        assert part in text, part


def test_rerun_without_new_data_registers_nothing_and_moves_no_alias(clone: Path):
    from pipelines.retrain import retrain_flow
    before = registry_state()
    registered = (clone / "artifacts/registry/registered.json").read_text()
    result = retrain_flow(str(clone), service_url="")
    assert result["status"] == "completed" and result["new_faces"] == 0
    assert result["new_version"] is None and result["stages"] == []
    assert result["decision"] is None  # the gate was not re-run
    assert registry_state() == before
    assert (clone / "artifacts/registry/registered.json").read_text() == registered
    text = latest_artifact("ferops-retrain")
    assert "no new model version" in text and "stages run: none (up to date)" in text
    assert "version 1 was already decided" in text


def test_unreachable_mlflow_retries_then_fails_with_a_clear_message(clone: Path, monkeypatch):
    from pipelines.retrain import retrain_flow
    from prefect.client.orchestration import get_client
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    state = retrain_flow(str(clone), service_url="", mlflow_retries=2,
                         mlflow_retry_delay_s=0.2, return_state=True)
    assert state.is_failed()
    assert f"MLflow at {url} is unreachable" in state.message
    assert "gave up after 3 attempts" in state.message
    with get_client(sync_client=True) as client:
        runs = client.request("POST", "/task_runs/filter", json={
            "flow_runs": {"id": {"any_": [str(state.state_details.flow_run_id)]}},
            "sort": "ID_DESC", "limit": 50, "offset": 0}).json()
    check = [r for r in runs if r["name"].startswith("check-registry")]
    assert len(check) == 1 and check[0]["run_count"] == 3
    assert not any(r["name"].startswith(("version-data", "build")) for r in runs)
    assert "failed at step `check-registry`" in latest_artifact("ferops-retrain")


def remote_objects(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "dvc-remote").rglob("*")
            if p.is_file()}


def test_bad_files_are_moved_aside_before_anything_is_versioned(clone: Path):
    """A 12x12 image (fails validate.min_side) and a label outside the class set: both are
    moved aside with their reason before `dvc add`, the good face is versioned and trained."""
    from pipelines.newdata import dvc_tracked
    from pipelines.retrain import retrain_flow
    stray = add_faces(clone, "contempt", 1, seed=13)[0]
    tiny = clone / "data/incoming/happy/tiny.png"
    tiny.write_bytes(png_bytes(np.full((12, 12), 90, np.uint8) + np.eye(12, dtype=np.uint8) * 80))
    good = add_faces(clone, "happy", 1, seed=14, start=100)[0]
    bad = {p.relative_to(clone).as_posix(): p.read_bytes() for p in (stray, tiny)}

    result = retrain_flow(str(clone), service_url="")

    assert result["status"] == "completed" and result["new_faces"] == 1
    assert "train" in result["stages"]
    tracked = dvc_tracked(clone)
    assert good.relative_to(clone).as_posix() in tracked
    assert not set(bad) & tracked and not stray.exists() and not tiny.exists()
    remote = remote_objects(clone)
    for data in bad.values():   # never pushed: no remote object has their content hash
        md5 = hashlib.md5(data).hexdigest()
        assert f"dvc-remote/files/md5/{md5[:2]}/{md5[2:]}" not in remote
    with open(clone / "artifacts/rejected/rejected.csv", newline="") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(bad)
    assert "smaller than validate.min_side" in rows[tiny.relative_to(clone).as_posix()]["reason"]
    for rel, data in bad.items():
        assert (clone / rows[rel]["kept_at"]).read_bytes() == data      # kept, as it was
    text = latest_artifact("ferops-retrain")
    assert "2 file(s) moved aside before versioning" in text
    assert "label 'contempt' is not in the class set" in text
    assert "## Quarantined by ingest" in text


def test_failed_validation_versions_nothing_and_keeps_the_champion(clone: Path):
    """A dataset-level failure (too few training images per class): data.dvc, the DVC
    remote and every alias stay exactly as they were; the good faces stay in the drop folder."""
    from pipelines.retrain import retrain_flow
    before = registry_state()
    data_dvc, remote = (clone / "data.dvc").read_text(), remote_objects(clone)
    params = (clone / "params.yaml").read_text()
    write_params(clone, train={"profile": "demo", "epochs": 2, "max_train_images": 800},
                 registry={"floor": 0.0}, validate={"min_per_class": 100_000})
    try:
        good = add_faces(clone, "sad", 2, seed=15, start=200)
        state = retrain_flow(str(clone), service_url="", return_state=True)
    finally:
        (clone / "params.yaml").write_text(params)
    assert state.is_failed() and "data validation failed" in state.message
    assert (clone / "data.dvc").read_text() == data_dvc
    assert remote_objects(clone) == remote
    assert registry_state() == before
    assert all(p.is_file() for p in good)
    text = latest_artifact("ferops-retrain")
    assert text.startswith("# ferops retraining stopped: data validation failed")
    assert "Nothing was versioned" in text and "training images per class" in text
    assert "stages run: ingest, validate" in text and "not versioned" in text
    new = snapshot(clone, "data/incoming").new  # still new: the manifest was not advanced
    assert {p.relative_to(clone).as_posix() for p in good} <= set(new)


def test_checkout_restores_version_1_after_version_2_exists(clone: Path, tmp_path: Path,
                                                             capsys):
    """`ferops checkout 1` rebuilds version 1's inputs from its lineage: the worktree's code,
    parameters, data and every stage output hash to version 1's lock (dvc status clean, so
    `dvc repro evaluate` there rebuilds nothing), not to the newer version's."""
    from pipelines.common import dvc_cmd, project_env

    from ferops import registry
    from ferops.lineage import main
    _, versions = registry_state()
    assert {"1", "2"} <= set(versions)
    dest = tmp_path / "v1"
    assert main(["--params", str(clone / "params.yaml"), "1", "--into", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "version 1 restored" in out and "dvc status evaluate: up to date" in out
    lineage = json.loads((clone / "artifacts/registry/lineage/lineage.json").read_text())
    client = registry.connect()
    v1 = client.get_model_version(MODEL, "1")
    restored = (dest / "data.dvc").read_text()
    assert v1.tags["data_md5"] in restored and lineage["data_md5"] not in restored
    # The happy face of the moved-aside test came after version 1; seed 11's before it.
    assert not (dest / "data/incoming/happy/face_14_0100.png").exists()
    assert (dest / "data/incoming/happy/face_11_0000.png").is_file()
    repro = subprocess.run(dvc_cmd("repro", "evaluate"), cwd=dest, env=project_env(dest),
                           capture_output=True, text=True)
    assert repro.returncode == 0, repro.stderr
    assert "Running stage" not in repro.stdout           # nothing rebuilt: same model hashes
    assert (dest / "artifacts/model/model.keras").is_file()
    metrics = json.loads((dest / "artifacts/eval/metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(
        client.get_run(v1.run_id).data.metrics["test_accuracy"])   # version 1's own figures
    assert (clone / "data.dvc").read_text() != restored  # the working checkout is untouched
