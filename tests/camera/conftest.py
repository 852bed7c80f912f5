"""Fixtures for the camera client tests: a real face video, a real HTTP service, real params."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ferops.config import Params, load_params
from tests.camera.fakes import FakeService, make_face_video
from tests.conftest import PROJECT

VIDEO_FRAMES = 40


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    return make_face_video(tmp_path_factory.mktemp("video") / "face.mp4", VIDEO_FRAMES)


@pytest.fixture
def fake_service():
    service = FakeService().start()
    yield service
    service.stop()


@pytest.fixture
def params_file(tmp_path) -> Path:
    """The project's params.yaml with the camera's drop folder and consent file in tmp_path."""
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    raw["camera"] = {**raw.get("camera", {}), "drop_folder": str(tmp_path / "incoming"),
                     "consent_file": str(tmp_path / "consent" / "labeling-consent")}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture
def params(params_file) -> Params:
    return load_params(params_file)


def with_camera(params: Params, **changes) -> Params:
    return params.replace(camera=params.camera.replace(**changes))
