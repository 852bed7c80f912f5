"""The new-data trigger with a real Prefect API: too few faces wait; a burst is one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipelines.common import RETRAIN_DEPLOYMENT
from pipelines.newdata import record_attempt, snapshot

from tests.pipelines.conftest import add_faces, runs_of

pytestmark = pytest.mark.usefixtures("prefect_api")


def retrain_runs() -> list:
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        return runs_of(client.read_deployment_by_name(RETRAIN_DEPLOYMENT).id)


def fail_run(run_id) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Failed
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run_id, Failed(message="test: validation failed"),
                                  force=True)


@pytest.fixture
def retrain_deployment():
    """The retrain deployment registered on the API (nothing executes its runs here)."""
    from pipelines.retrain import retrain_flow
    retrain_flow.to_deployment(name="retrain").apply()
    yield RETRAIN_DEPLOYMENT
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:  # leave no runs for other tests
        for run in retrain_runs():
            client.delete_flow_run(run.id)


def test_watcher_waits_then_starts_exactly_one_run_per_burst(small_project: Path,
                                                             retrain_deployment: str):
    from pipelines.watch import watch_new_data
    root = small_project
    add_faces(root, "happy", 3, seed=1)
    (root / "data/incoming/happy/writing.png.part").write_bytes(b"half")  # pending: not a face
    (root / "data/incoming/stray.png").write_bytes(b"x")                  # no label folder
    first = watch_new_data(str(root))
    assert first["status"] == "waiting" and first["new"] == 3 and first["needed"] == 4
    assert retrain_runs() == []

    add_faces(root, "sad", 1, seed=2)
    launched = watch_new_data(str(root))
    assert launched["status"] == "launched" and launched["per_label"] == {"happy": 3, "sad": 1}
    runs = retrain_runs()
    assert len(runs) == 1 and runs[0].parameters == {"project_dir": str(root),
                                                     "trigger": "new-data"}

    # The burst goes on while that run waits to start: no second run.
    assert watch_new_data(str(root))["status"] == "busy"
    add_faces(root, "sad", 2, seed=3)
    assert watch_new_data(str(root))["status"] == "busy"
    assert len(retrain_runs()) == 1

    # The run started on all 6 faces and failed (say, validation): not retried as is...
    record_attempt(root, snapshot(root, "data/incoming"))
    fail_run(runs[0].id)
    assert watch_new_data(str(root))["status"] == "already-tried"
    assert len(retrain_runs()) == 1
    # ...but a changed drop folder is a new reason to try.
    add_faces(root, "happy", 1, seed=4)
    assert watch_new_data(str(root))["status"] == "launched"
    assert len(retrain_runs()) == 2


def test_watcher_threshold_comes_from_params(small_project: Path, retrain_deployment: str):
    from pipelines.watch import watch_new_data
    add_faces(small_project, "fear", 2, seed=5)
    assert watch_new_data(str(small_project))["needed"] == 4
    assert watch_new_data(str(small_project), min_new_faces=2)["status"] == "launched"
