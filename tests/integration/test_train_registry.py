"""Real training, a real MLflow store, real BentoML export: the heart of the pipeline.

A few hundred synthetic faces, a few short epochs; every component is the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ferops.config import load_params
from ferops.data.encode import build_label_map
from ferops.synthetic import CLASSES
from ferops.training.lr import ALPHA
from tests.conftest import PROJECT
from tests.factories import PARAMS, free_port, make_dataset

pytestmark = pytest.mark.slow
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder with params.yaml (short training), a dataset, data.dvc and dvc.lock."""
    root = tmp_path_factory.mktemp("proj")
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"] = {"profile": "demo", "epochs": 4, "checkpoint_every": 2, "patience": 10}
    raw["registry"]["floor"] = 0.0  # a few epochs on 280 faces: the floor is tested apart
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    for name in ("data.dvc", "dvc.lock"):
        shutil.copy(PROJECT / name, root / name)
    make_dataset(root / "artifacts/dataset")
    return root


@pytest.fixture(scope="module")
def env(project: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db",
            "BENTOML_HOME": str(project / "bentoml"), "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(PROJECT / "src")}


def ferops(args: list[str], project: Path, env: dict, check: bool = True):
    proc = subprocess.run([sys.executable, "-m", "ferops.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode:
        raise AssertionError(f"ferops {args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module", autouse=True)
def tracking_uri(env: dict):
    """In-process registry calls use this module's store; the variable is restored after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", env["MLFLOW_TRACKING_URI"])
        yield env["MLFLOW_TRACKING_URI"]


def client(env: dict):
    from ferops import registry
    return registry.connect(env["MLFLOW_TRACKING_URI"])


def aliases(env: dict) -> dict[str, str | None]:
    from ferops import registry
    c = client(env)
    return {a: registry.alias_version(c, "ferops-emotion", a)
            for a in ("challenger", "champion", "previous")}


def test_train_evaluate_register_promote_export(project: Path, env: dict):
    ferops(["train", "-q"], project, env)
    train = json.loads((project / "artifacts/model/train.json").read_text())
    losses = [h["loss"] for h in train["history"]]
    assert len(losses) == 4 and losses[-1] < losses[0]  # it learns
    assert (project / "artifacts/model/model.keras").stat().st_size > 10_000
    assert not (project / "artifacts/work/resume/resume.json").exists()  # cleaned up

    ferops(["evaluate", "-q"], project, env)
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["test_n"] == 70
    assert (project / "artifacts/eval/confusion_test.png").stat().st_size > 1000

    ferops(["register", "-q"], project, env)
    registered = json.loads((project / "artifacts/registry/registered.json").read_text())
    assert registered["version"] == "1" and registered["data_md5"].endswith(".dir")
    assert aliases(env) == {"challenger": "1", "champion": None, "previous": None}
    from mlflow.models import Model
    mlmodel = Model.load("models:/ferops-emotion/1")
    assert mlmodel.signature is not None and mlmodel.saved_input_example_info is not None
    run = client(env).get_run(registered["run_id"])
    assert run.data.tags["git_commit"] and run.data.params["train.epochs"] == "4"
    assert "val_accuracy" in run.data.metrics and "test_accuracy" in run.data.metrics
    history = client(env).get_metric_history(registered["run_id"], "loss")
    assert len(history) == 4  # per-epoch metrics

    out = ferops(["promote", "-q"], project, env)
    decision = json.loads(out.stdout)
    assert decision["action"] == "promoted" and decision["challenger"] == "1"
    assert decision["challenger_score"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)
    assert aliases(env)["champion"] == "1"
    store = subprocess.run([sys.executable, "-c", (
        "import bentoml, json; m = bentoml.models.get('ferops-emotion:latest');"
        "print(json.dumps(m.info.metadata))")], env=env, capture_output=True, text=True)
    meta = json.loads(store.stdout.strip().splitlines()[-1])
    assert meta["registry_version"] == "1" and meta["label_map"]["classes"] == list(CLASSES)
    assert meta["metrics"]["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-4)

    # An export lost after the alias moved (a crash, a full disk) is redone by a rerun.
    shutil.rmtree(Path(env["BENTOML_HOME"]) / "models/ferops-emotion")
    again = json.loads(ferops(["promote", "-q"], project, env).stdout)
    assert again["action"] == "nothing" and aliases(env)["champion"] == "1"
    assert list((Path(env["BENTOML_HOME"]) / "models/ferops-emotion").glob("*/model.yaml"))


def register_model(model, env: dict, tag: str, name: str = "ferops-emotion") -> str:
    from ferops import registry
    client(env)
    label_map = build_label_map(PARAMS.classes, PARAMS.faces)
    _, version = registry.log_and_register(model, name, label_map, {"kind": tag},
                                           [], {}, [], {"run_name": tag})
    return version


def easy_task() -> tuple[np.ndarray, np.ndarray]:
    """A bright square's position encodes the class: a short real training clearly wins."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 60)
    x = rng.normal(80, 10, (len(y), 48, 48, 1))
    for i, c in enumerate(y):
        x[i, 4 + 5 * c: 12 + 5 * c, 8:40] += 120
    return np.clip(x, 0, 255).astype(np.uint8), y


@pytest.fixture(scope="module")
def small_models():
    """(untrained, trained) real Keras models for the easy task, trained once per module."""
    import keras

    from ferops.training.model import build_model
    x, y = easy_task()
    keras.utils.set_random_seed(2)
    untrained = build_model("vgg", 7, 48, (8,), 1, 8, 0.0)
    trained = build_model("vgg", 7, 48, (8,), 1, 16, 0.0)
    trained.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    trained.fit(x.astype(np.float32), y, epochs=15, batch_size=32, verbose=0)
    return untrained, trained


def gate(**changes):
    """The project's gate settings, floor 0 and guards off unless a test sets them."""
    base = {"rule": "margin", "metric": "accuracy", "margin": 0.002, "floor": 0.0,
            "max_macro_f1_drop": 1.0, "max_class_recall_drop": None}
    return PARAMS.registry.replace(**{**base, **changes})


def tags_of(env: dict, name: str, version: str) -> dict:
    return client(env).get_model_version(name, version).tags


def test_gate_worse_tie_and_floor(env: dict, small_models):
    from ferops import registry
    name = "ferops-gate"
    x, y = easy_task()
    untrained, trained = small_models
    champion = register_model(trained, env, "champion", name)
    assert registry.promote(name, x, y, gate(floor=0.5)).action == "promoted"
    pred, _ = registry.predict_classes(trained, x)
    best = float(np.mean(pred == y))
    assert best > 0.8

    worse = register_model(untrained, env, "worse", name)
    d = registry.promote(name, x, y, gate())
    assert d.action == "kept" and "below the margin" in d.reason and d.challenger == worse
    assert d.champion_score == pytest.approx(best)  # re-scored now, not a stored number
    c = client(env)
    assert registry.alias_version(c, name, "champion") == champion
    tags = c.get_model_version(name, worse).tags
    assert tags["promotion.action"] == "kept"
    assert float(tags["promotion.champion_score"]) == pytest.approx(best)

    tie = register_model(trained, env, "tie", name)
    d = registry.promote(name, x, y, gate())
    assert d.action == "kept" and d.challenger == tie
    assert d.challenger_score == pytest.approx(d.champion_score)

    # A zero margin never promotes a model that is not strictly better, nor does the paired
    # rule at any significance level...
    register_model(untrained, env, "forced", name)
    assert registry.promote(name, x, y, gate(margin=0.0)).action == "kept"
    d = registry.promote(name, x, y, gate(rule="paired", alpha=0.99))
    assert d.action == "kept" and "McNemar" in d.reason
    assert d.stats["only_champion_right"] > d.stats["only_challenger_right"]
    assert tags_of(env, name, d.challenger)["promotion.stats.p_value"] == str(d.stats["p_value"])
    # ...and the floor is checked first, whatever the rule would say.
    register_model(untrained, env, "floor", name)
    d = registry.promote(name, x, y, gate(rule="paired", alpha=0.99, floor=1.0))
    assert d.action == "kept" and "floor" in d.reason
    assert registry.alias_version(c, name, "champion") == champion


def test_promote_then_rollback_in_one_step(env: dict, small_models):
    from ferops import registry
    from ferops.errors import FeropsError
    name = "ferops-rollback"
    x, y = easy_task()
    untrained, trained = small_models
    weak = register_model(untrained, env, "weak", name)
    assert registry.promote(name, x, y, gate()).action == "promoted"
    strong = register_model(trained, env, "strong", name)
    d = registry.promote(name, x, y, gate())
    assert d.action == "promoted", d.reason
    c = client(env)
    assert registry.alias_version(c, name, "champion") == strong
    assert registry.alias_version(c, name, "previous") == weak
    back = registry.rollback(name)
    assert back.action == "rolled_back"
    assert registry.alias_version(c, name, "champion") == weak
    assert registry.alias_version(c, name, "previous") is None
    with pytest.raises(FeropsError, match="no @previous"):
        registry.rollback(name)


def test_killed_training_resumes_and_leaves_aliases_alone(project: Path, env: dict):
    before = aliases(env)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["train"].update({"epochs": 6, "checkpoint_every": 1})
    (project / "resume.yaml").write_text(yaml.safe_dump(raw))
    args = [sys.executable, "-m", "ferops.training.train", "--params", "resume.yaml",
            "--out", "artifacts/model_resume", "--work", "artifacts/work_resume"]
    state = project / "artifacts/work_resume/resume/resume.json"
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["next_epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, as in a crash or OOM kill
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    next_epoch = json.loads(state.read_text())["next_epoch"]
    assert 2 <= next_epoch < 6
    assert not (project / "artifacts/model_resume/model.keras").exists()
    assert aliases(env) == before  # a killed run changes nothing in the registry

    rerun = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resuming from artifacts/work_resume/resume at epoch {next_epoch + 1}" in rerun.stderr
    train = json.loads((project / "artifacts/model_resume/train.json").read_text())
    assert [h["epoch"] for h in train["history"]][-1] == 5  # finished all 6 epochs
    # The learning rate went on along the same curve (read from the restored optimizer step),
    # so the resumed run still ended annealed, at the floor of its cosine. (A rate restarted
    # from step 0 would end above it. The resumed epoch is replayed whole from its mid-epoch
    # state, so the run may reach the floor up to one epoch early: hence <=.)
    lrs = [h["learning_rate"] for h in train["history"]]
    peak = load_params(project / "resume.yaml").train.lr
    assert lrs[-1] == pytest.approx(ALPHA * peak) and lrs[-1] <= min(lrs[:-1])
    assert not state.exists()


def test_against_a_real_mlflow_server(tmp_path: Path):
    import requests
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        import keras

        from ferops import registry
        from ferops.training.model import build_model
        env = {"MLFLOW_TRACKING_URI": url}
        model = build_model("vgg", 7, 48, (8,), 1, 8, 0.0)
        version = register_model(model, env, "server")
        assert aliases(env)["challenger"] == version
        loaded = registry.load_version("ferops-emotion", version)
        x = np.zeros((2, 48, 48, 1), np.float32)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                                   atol=1e-5)
        assert isinstance(loaded, keras.Model)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_unreachable_mlflow_is_one_clear_error(project: Path, env: dict):
    bad = {**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    proc = ferops(["rollback"], project, bad, check=False)
    assert proc.returncode == 2
    assert f"MLflow at {bad['MLFLOW_TRACKING_URI']} failed" in proc.stderr
    assert "Traceback" not in proc.stderr
