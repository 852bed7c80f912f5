"""The whole loop, end to end, with every real component.

New labeled faces land in the drop folder -> the watcher flow (a real Prefect flow run)
fires once enough have arrived -> the retraining flow versions the data with DVC, runs
`dvc repro` (validate, train, evaluate, register in MLflow), gates, promotes, exports to
BentoML and tells the running `bentoml serve` to reload -> the service answers with the new
version. A worse model is registered but not promoted, and the service keeps the old one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT
from tests.factories import copy_checkout, write_params
from tests.pipelines.conftest import add_faces
from tests.serving.conftest import Server, post_json

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
WEAK = {"profile": "demo", "epochs": 1, "max_train_images": 60}   # about chance
STRONG = {"profile": "demo", "epochs": 8}                          # well above chance


def git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """A fresh clone with its own MLflow and BentoML stores, and a service on it (no model)."""
    base = tmp_path_factory.mktemp("loop")
    clone = base / "ferops"
    copy_checkout(PROJECT, clone)
    git(["init", "-q"], clone)
    git(["add", "-A"], clone)
    git(["commit", "-qm", "clone"], clone)
    from pipelines.common import dvc_cmd, project_env
    subprocess.run(dvc_cmd("pull", "-q", "data.dvc"), cwd=clone, env=project_env(clone),
                   check=True, capture_output=True)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{clone}/mlflow.db",
           "BENTOML_HOME": str(base / "bentoml"), "FEROPS_PARAMS": str(clone / "params.yaml")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("FEROPS_API_KEY", raising=False)
        # No polling: the new model must arrive because the flow asked the service to reload.
        settings(clone, WEAK, service_url="http://127.0.0.1:1")
        server_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                      "PYTHONPATH": f"{PROJECT / 'src'}{os.pathsep}{PROJECT}"}
        srv = Server(server_env, base / "serve.log")
        try:
            srv.wait_live()
            settings(clone, WEAK, service_url=srv.url)
            yield {"clone": clone, "server": srv}
        finally:
            srv.stop()


def settings(clone: Path, train: dict, service_url: str) -> None:
    write_params(clone, train=train, registry={"floor": 0.0, "margin": 0.002},
                 pipelines={"min_new_faces": 6}, camera={"service_url": service_url},
                 serving={"reload_poll_s": 0})


def served_version(srv: Server) -> str | None:
    return post_json(srv.url + "/info", {}).json().get("model_version")


def versions() -> list[str]:
    from ferops import registry
    client = registry.connect()
    return sorted(str(v.version) for v in client.search_model_versions("name='ferops-emotion'"))


def watch(clone: Path) -> dict:
    from pipelines.watch import watch_new_data
    return watch_new_data(str(clone), retrain_deployment=None)


def decision(clone: Path) -> dict:
    return json.loads((clone / "artifacts/registry/decision.json").read_text())


def test_new_faces_become_the_served_model_and_a_worse_one_never_does(loop: dict):
    clone, srv = loop["clone"], loop["server"]
    assert requests.get(srv.url + "/readyz", timeout=5).status_code == 503  # no champion yet

    # 1. Below the threshold nothing runs; at the threshold one run makes the first champion.
    add_faces(clone, "happy", 3, seed=1)
    assert watch(clone)["status"] == "waiting" and versions() == []
    add_faces(clone, "sad", 3, seed=2)
    assert watch(clone)["status"] == "retrained"
    assert versions() == ["1"] and decision(clone)["action"] == "promoted"
    assert requests.get(srv.url + "/readyz", timeout=5).status_code == 200
    assert served_version(srv) == "1"
    assert watch(clone)["status"] == "waiting"  # the same faces never trigger twice

    # 2. More faces and a better training recipe: version 2 wins the gate and is served.
    settings(clone, STRONG, service_url=srv.url)
    add_faces(clone, "angry", 6, seed=3)
    assert watch(clone)["status"] == "retrained"
    d = decision(clone)
    assert versions() == ["1", "2"] and d["action"] == "promoted", d
    assert d["challenger_score"] > d["champion_score"]
    assert served_version(srv) == "2"

    # 3. More faces, a weak recipe: version 3 is registered, loses, and is never served.
    settings(clone, WEAK, service_url=srv.url)
    add_faces(clone, "fear", 6, seed=4)
    assert watch(clone)["status"] == "retrained"
    d = decision(clone)
    assert versions() == ["1", "2", "3"] and d["action"] == "kept", d
    assert served_version(srv) == "2"
    crop = [[128] * 48] * 48
    answer = post_json(srv.url + "/classify", {"crops": [crop]}).json()
    assert answer[0]["model_version"] == "2"
