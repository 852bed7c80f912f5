"""The drift monitor flow on a synthetic predictions log, with a real Prefect API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipelines.monitor import monitor_drift

from ferops.reference import REFERENCE_CACHE
from tests.factories import write_params
from tests.pipelines.conftest import latest_artifact, runs_of

pytestmark = pytest.mark.usefixtures("prefect_api")
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Training reference: happy 40 %, neutral 30 %, the rest 6 % each; version 3 on val: 0.9."""
    root = tmp_path / "proj"
    dataset = root / "artifacts/dataset"
    dataset.mkdir(parents=True)
    write_params(root, pipelines={"drift_window": 200, "drift_threshold": 0.2,
                                  "confidence_drop": 0.15})
    (dataset / "label_map.json").write_text(json.dumps({"classes": CLASSES}))
    y = [3] * 40 + [6] * 30 + [0, 1, 2, 4, 5] * 6
    np.save(dataset / "y_train.npy", np.array(y, np.int64))
    (root / REFERENCE_CACHE).parent.mkdir(parents=True)
    (root / REFERENCE_CACHE).write_text(json.dumps({"3": {"mean_confidence": 0.9}}))
    return root


def write_stats(root: Path, labels: list[str], confidence: float, version: str = "3") -> None:
    path = root / "artifacts/monitoring/predictions.jsonl"
    with open(path, "a") as f:
        for i, label in enumerate(labels):
            f.write(json.dumps({"ts": 1.7e9 + i, "model_version": version, "label": label,
                                "confidence": confidence}) + "\n")


def like_training(n: int) -> list[str]:
    block = ["happy"] * 4 + ["neutral"] * 3 + ["angry", "sad", "fear"]
    return (block * (n // len(block) + 1))[:n]


def artifact_text(key: str) -> str:
    return latest_artifact(key)


def drift_events(version: str, wait_s: float = 20.0) -> list[dict]:
    """ferops.drift.detected events for a model version (the server stores them shortly after)."""
    import time

    from prefect.client.orchestration import get_client
    deadline = time.time() + wait_s
    while True:
        with get_client(sync_client=True) as client:
            events = client.request("POST", "/events/filter", json={
                "filter": {"event": {"name": ["ferops.drift.detected"]}}, "limit": 50}
            ).json()["events"]
        found = [e for e in events if e["resource"].get("ferops.model.version") == version]
        if found or time.time() > deadline:
            return found
        time.sleep(1)


def test_no_predictions_is_not_drift(project: Path):
    assert monitor_drift(str(project))["status"] == "no-data"


def test_stable_predictions_are_ok_and_old_versions_ignored(project: Path):
    write_stats(project, ["surprise"] * 300, 0.3, version="2")  # the previous model: ignored
    write_stats(project, like_training(150), 0.88)
    result = monitor_drift(str(project))
    assert result["status"] == "ok" and result["n"] == 150 and result["model_version"] == "3"
    assert result["tv_distance"] < 0.2
    assert result["reference_confidence"] == 0.9
    text = artifact_text("ferops-drift")
    assert "**no drift**" in text and "| happy | 0.4000 |" in text


def test_label_shift_alerts_with_an_event(project: Path):
    write_stats(project, like_training(100) + ["angry"] * 100, 0.88, version="7")
    (project / REFERENCE_CACHE).write_text(json.dumps({"7": {"mean_confidence": 0.9}}))
    result = monitor_drift(str(project))
    assert result["status"] == "drift" and result["action"] == {"status": "alerted"}
    assert "TV distance" in result["reasons"][0] and result["n"] == 200  # the window
    assert "DRIFT: label distribution moved" in artifact_text("ferops-drift")
    events = drift_events("7")
    assert len(events) == 1 and events[0]["payload"]["n"] == 200
    assert events[0]["resource"]["prefect.resource.id"] == "ferops.model.ferops-emotion"


def test_confidence_drop_alone_is_drift(project: Path):
    write_stats(project, like_training(200), 0.6)
    result = monitor_drift(str(project))
    assert result["status"] == "drift" and len(result["reasons"]) == 1
    assert "mean confidence 0.600 is 0.300 below" in result["reasons"][0]


def test_too_few_predictions_give_no_verdict(project: Path):
    write_stats(project, ["angry"] * 20, 0.2)
    result = monitor_drift(str(project))
    assert result["status"] == "ok" and result["tv_distance"] is None
    assert "not enough predictions (20 < 100)" in artifact_text("ferops-drift")


def test_drift_action_retrain_starts_one_run_per_version(project: Path):
    from pipelines.common import RETRAIN_DEPLOYMENT
    from pipelines.retrain import retrain_flow
    write_params(project, pipelines={"drift_window": 200, "drift_action": "retrain"})
    dep_id = retrain_flow.to_deployment(name="retrain").apply()
    write_stats(project, ["angry"] * 200, 0.88, version="4")  # no cached confidence: unknown
    first = monitor_drift(str(project))
    assert first["reference_confidence"] is None and first["action"]["status"] == "launched"
    second = monitor_drift(str(project))
    assert second["action"]["status"] in ("busy", "already-launched")
    from prefect.client.orchestration import get_client
    runs = runs_of(dep_id)
    with get_client(sync_client=True) as client:
        assert [r.parameters["trigger"] for r in runs] == ["drift"]
        assert client.read_deployment_by_name(RETRAIN_DEPLOYMENT).id == dep_id
        for run in runs:
            client.delete_flow_run(run.id)
