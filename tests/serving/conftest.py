"""A real `bentoml serve` process on 127.0.0.1 serving a small model trained for the tests.

The model is trained, evaluated, registered in a real MLflow store and promoted (which
exports it to a real BentoML model store) by the real `ferops` CLI, once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import PROJECT
from tests.factories import free_port, make_dataset, write_params

BIN = Path(sys.executable).parent
# model_threads: 1 also runs the service's TensorFlow thread setting for real.
LIMITS = {"max_crops": 8, "max_faces": 2, "max_body_mb": 1, "reload_poll_s": 1,
          "batch_max_latency_ms": 2000, "model_threads": 1, "body_timeout_s": 2}


def ferops(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ferops.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode:
        raise AssertionError(f"ferops {args}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def serving_params(root: Path, name: str, train: dict, stats: Path) -> Path:
    return write_params(root, name, train={"profile": "demo", **train},
                        registry={"floor": 0.0},
                        serving={**LIMITS, "record_stats": True, "stats_path": str(stats)})


def train_and_promote(root: Path, params: Path, env: dict) -> dict:
    """train -> evaluate -> register -> promote with the real CLI; the decision JSON."""
    import json
    for stage in ("train", "evaluate", "register"):
        ferops([stage, "-q", "--params", str(params)], root, env)
    out = ferops(["promote", "-q", "--params", str(params)], root, env)
    return json.loads(out.stdout)


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict:
    """A project folder with a promoted champion (version 1, deliberately weak) and its env."""
    root = tmp_path_factory.mktemp("served")
    for name in ("data.dvc", "dvc.lock"):
        shutil.copy(PROJECT / name, root / name)
    make_dataset(root / "artifacts/dataset")
    stats = root / "stats/predictions.jsonl"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
           "BENTOML_HOME": str(root / "bentoml"), "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": f"{PROJECT / 'src'}{os.pathsep}{PROJECT}",
           "BENTOML_DO_NOT_TRACK": "True"}
    # Version 1 sees 35 faces for one epoch: near chance, so a later real model beats it.
    weak = serving_params(root, "params_weak.yaml",
                        {"epochs": 1, "max_train_images": 35}, stats)
    decision = train_and_promote(root, weak, env)
    assert decision["action"] == "promoted", decision
    # Version 2 (trained by the hot-swap test) must beat it every time: 20 epochs with early
    # stopping once scored 0.129 against the champion's 0.143 (the gate rightly kept it), so
    # it trains 40 epochs with no early stop; the best epoch on val is kept.
    strong = serving_params(root, "params.yaml",
                          {"epochs": 40, "batch_size": 32, "patience": 40}, stats)
    env["FEROPS_PARAMS"] = str(strong)
    return {"root": root, "env": env, "params": strong, "stats": stats}


class Server:
    """`bentoml serve serving.service:EmotionService` on a free 127.0.0.1 port."""

    def __init__(self, env: dict, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [str(BIN / "bentoml"), "serve", "serving.service:EmotionService",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=PROJECT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_live(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"bentoml serve exited:\n{self.log.read_text()[-4000:]}")
            try:
                if requests.get(self.url + "/livez", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(0.5)
        raise AssertionError(f"service not live in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until /readyz says a champion is loaded (every worker: each answers alike)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"service not ready in {timeout} s:\n{self.log.read_text()[-4000:]}")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True,
                             text=True).stdout.split()
        return [int(p) for p in out]

    def rss_mb(self) -> float:
        """Resident memory of the server and every descendant (its workers run in another
        process group, so `pgrep -g` saw only the arbiter)."""
        from benchmarks.soak import tree_rss_mb
        return tree_rss_mb(self.proc.pid)

    def stop(self) -> None:
        import signal
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:  # already gone (e.g. it refused to start)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def server(served: dict, tmp_path_factory):
    srv = Server(served["env"], tmp_path_factory.mktemp("logs") / "serve.log")
    try:
        srv.wait_live()
        srv.wait_ready()  # with several workers: once every one has loaded the champion
        yield srv
    finally:
        srv.stop()


def post_json(url: str, body, **kw) -> requests.Response:
    return requests.post(url, json=body, timeout=kw.pop("timeout", 30), **kw)
