"""Fixtures for the Prefect flow tests: one temporary Prefect API for the session, projects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import png_bytes
from tests.factories import write_params


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect server (temporary SQLite) for every flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness
    with pytest.MonkeyPatch.context() as mp:
        # No telemetry: it cannot get out from here and its writes contend for the test DB.
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with prefect_test_harness(server_startup_timeout=180):
            yield


def runs_of(deployment_id) -> list:
    """The flow runs of a deployment (the sync client needs explicit sort and limit)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200)


def latest_artifact(key: str) -> str:
    """The markdown of the newest artifact with this key.

    A plain POST with sort and limit given: with the pinned fastapi, this Prefect server
    answers 422 to the nulls that the client's read_artifacts sends for unset fields.
    """
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json={
            "artifacts": {"key": {"any_": [key]}},
            "sort": "CREATED_DESC", "limit": 1, "offset": 0})
    arts = response.json()
    assert arts, f"no artifact {key}"
    return arts[0]["data"]


def add_faces(root: Path, label: str, n: int, seed: int, start: int = 0) -> list[Path]:
    """n synthetic faces (the demo renderer) in data/incoming/<label>/; returns their paths."""
    from ferops.synthetic import render_face
    folder = root / "data/incoming" / label
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        # Any class renders a face; the folder name is the label (contempt tests bad labels).
        drawn = label if label in ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                   "neutral") else "neutral"
        image = render_face(drawn, np.random.default_rng([seed, i]), 64)
        path = folder / f"face_{seed}_{i:04d}.png"
        path.write_bytes(png_bytes(image))
        paths.append(path)
    return paths


@pytest.fixture
def small_project(tmp_path: Path) -> Path:
    """A project folder with params.yaml only (no data, no DVC): enough for the watcher."""
    root = tmp_path / "proj"
    root.mkdir()
    write_params(root, pipelines={"min_new_faces": 4})
    return root


def copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)
