"""The containerised stack, started with the README's command (`bash deploy/stack.sh up`), on
a temporary copy of the project (the tests run in file order and share the stack):
PostgreSQL, MLflow, the Prefect server and worker, the service, all on 127.0.0.1 (host
networking). The operator's loop end to end: a first model
from the retrain deployment, then labeled faces in the drop folder -> the watcher deployment
(scheduled by the Prefect server, run by the worker) -> `dvc repro` in the worker -> a new
MLflow version on PostgreSQL -> the gate -> the service container answers with it, while a
light /classify load sees no failed request. Then faults: MLflow down while the service
runs, PostgreSQL restarted, MLflow stopped while the worker trains.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import PROJECT
from tests.factories import copy_checkout, free_port, write_params
from tests.pipelines.conftest import add_faces

pytestmark = [pytest.mark.slow, pytest.mark.stack]
# Its own compose project name and free ports: a stack someone runs on the defaults (or a
# second test run) on the same Docker host is left alone and does not break this one.
NAME = f"ferops-test-{os.getpid()}"
PORTS = {"PGPORT": free_port(), "MLFLOW_PORT": free_port(), "PREFECT_PORT": free_port(),
         "FEROPS_WHEELS_PORT": free_port()}
SERVICE_PORT = free_port()
SERVICE = f"http://127.0.0.1:{SERVICE_PORT}"
PREFECT_API = f"http://127.0.0.1:{PORTS['PREFECT_PORT']}/api"
MLFLOW = f"http://127.0.0.1:{PORTS['MLFLOW_PORT']}"
MODEL = "ferops-emotion"


def stack_params(dest: Path, **train) -> None:
    """The stack project's params.yaml: this training recipe, the gate open, this run's port."""
    write_params(dest, train={"profile": "demo", **train}, registry={"floor": 0.0},
                 pipelines={"min_new_faces": 4, "push_data": False},
                 serving={"port": SERVICE_PORT}, camera={"service_url": SERVICE})


def git(args: list[str], cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


def stack(proj: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, **{k: str(v) for k, v in PORTS.items()}, "FEROPS_STACK_NAME": NAME}
    return subprocess.run(["bash", str(proj / "deploy/stack.sh"), *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def proj(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("stack") / "ferops"
    copy_checkout(PROJECT, dest)
    # A weak first model (1 epoch, 300 images), so the second one (more epochs) beats it.
    stack_params(dest, epochs=1, max_train_images=300)
    git(["init", "-q"], dest)
    git(["add", "-A"], dest)
    git(["commit", "-qm", "stack test"], dest)
    from pipelines.common import dvc_cmd, project_env
    subprocess.run(dvc_cmd("pull", "-q", "data.dvc"), cwd=dest, env=project_env(dest),
                   check=True, capture_output=True)
    up = stack(dest, "up")
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield dest
    finally:
        (dest / "stack.log").write_text(stack(dest, "logs").stdout)
        stack(dest, "wipe", timeout=300)


@pytest.fixture(scope="module")
def headers(proj: Path) -> dict:
    env = dict(line.split("=", 1) for line in (proj / "deploy/.env").read_text().split())
    return {"Authorization": f"Bearer {env['FEROPS_API_KEY']}"}


@pytest.fixture(autouse=True)
def stack_clients(monkeypatch):
    """Prefect and MLflow clients of this process talk to the stack. A settings context, not
    only the variable: in a whole-suite run the pipelines tests' temporary Prefect server
    (a session fixture) is the active setting, and it has deployments of the same names."""
    from prefect.settings import PREFECT_API_URL, temporary_settings
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", MLFLOW)
    with temporary_settings({PREFECT_API_URL: PREFECT_API}):
        yield


def info(headers: dict) -> dict:
    r = requests.post(f"{SERVICE}/info", json={}, headers=headers, timeout=10)
    return r.json() if r.ok else {}


def mlflow_state() -> tuple[list[str], str | None]:
    from ferops import registry
    client = registry.connect(MLFLOW)
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL}'"))
    return versions, registry.alias_version(client, MODEL, "champion")


def container(service: str) -> str:
    """The id of a stack service's container (compose v1 and v2 name them differently)."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=com.docker.compose.project={NAME}", "--filter",
                          f"label=com.docker.compose.service={service}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == 1, f"{service}: {out}"
    return out[0]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True,
                          check=True).stdout


def healthy(service: str) -> bool:
    return docker("inspect", "-f", "{{.State.Health.Status}}",
                  container(service)).strip() == "healthy"


def postgres_rows(sql: str) -> list[str]:
    """Query MLflow's backend store inside the PostgreSQL container."""
    out = subprocess.run(
        ["docker", "exec", container("postgres"), "bash", "-c",
         'PGPASSWORD="$POSTGRES_PASSWORD" /usr/lib/postgresql/15/bin/psql -h 127.0.0.1 '
         f'-U ferops -d mlflow -Atc "{sql}"'], capture_output=True, text=True, check=True)
    return out.stdout.split()


def wait_for(predicate, timeout: float, what: str, every: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Load(threading.Thread):
    """A light /classify load (about 10 requests/s) that counts every failure."""

    def __init__(self, headers: dict) -> None:
        super().__init__(daemon=True)
        crop = np.random.default_rng(0).integers(0, 256, (48, 48)).tolist()
        self.body, self.headers = {"crops": [crop]}, headers
        self.ok, self.failed, self.versions = 0, [], set()
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as s:
            while not self.stop.is_set():
                try:
                    r = s.post(f"{SERVICE}/classify", json=self.body, headers=self.headers,
                               timeout=10)
                    if r.status_code == 200:
                        self.ok += 1
                        answers = r.json()
                        answers = answers.get("results", answers) if isinstance(
                            answers, dict) else answers
                        self.versions.add(answers[0].get("model_version"))
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:200]}")
                except requests.RequestException as exc:
                    self.failed.append(repr(exc))
                time.sleep(0.1)


@pytest.mark.timeout(2400)
def test_the_operator_loop_through_the_containers(proj: Path, headers: dict):
    from prefect.deployments import run_deployment
    t0 = time.monotonic()
    first = run_deployment("ferops-retrain/retrain", timeout=1200,
                           parameters={"project_dir": "/opt/ferops", "trigger": "manual"})
    assert first.state.is_completed(), first.state.message
    wait_for(lambda: info(headers).get("model_version") == "1", 120, "the service on v1")
    assert mlflow_state() == (["1"], "1")
    assert postgres_rows("select version from model_versions") == ["1"]  # MLflow on PostgreSQL
    first_s = time.monotonic() - t0

    # A much stronger second model (the demo recipe, ~75 %), started by new labeled faces
    # through the watcher deployment.
    stack_params(proj, epochs=20, max_train_images=0)
    load = Load(headers)
    load.start()
    t1 = time.monotonic()
    add_faces(proj, "happy", 3, seed=21)
    add_faces(proj, "sad", 2, seed=22)
    wait_for(lambda: info(headers).get("model_version") == "2", 900, "the service on v2",
             every=5)
    loop_s = time.monotonic() - t1
    time.sleep(3)
    load.stop.set()
    load.join(30)

    assert not load.failed, load.failed[:5]
    assert load.ok > 50 and load.versions == {"1", "2"}   # served through the switch
    assert mlflow_state() == (["1", "2"], "2")
    assert sorted(postgres_rows("select version from model_versions")) == ["1", "2"]
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("ferops-retrain/retrain")
        runs = client.request("POST", "/flow_runs/filter", json={
            "deployments": {"id": {"any_": [str(dep.id)]}}, "sort": "START_TIME_ASC",
            "limit": 10, "offset": 0}).json()
    ran = [r for r in runs if r["state_type"] != "SCHEDULED"]  # not the cron's future runs
    assert [r["parameters"].get("trigger") for r in ran] == ["manual", "new-data"]
    assert all(r["state_type"] == "COMPLETED" for r in ran)
    print(f"\nstack loop: first model {first_s:.0f} s, faces -> service on v2 {loop_s:.0f} s, "
          f"{load.ok} /classify answered, 0 failed")


def classify_ok(headers: dict) -> bool:
    body = {"crops": [np.zeros((48, 48), int).tolist()]}
    try:
        return requests.post(f"{SERVICE}/classify", json=body, headers=headers,
                             timeout=10).status_code == 200
    except requests.RequestException:
        return False


def test_the_service_keeps_serving_the_champion_while_mlflow_is_down(proj: Path,
                                                                       headers: dict):
    docker("stop", container("mlflow"))
    try:
        assert all(classify_ok(headers) for _ in range(20))
        assert requests.get(f"{SERVICE}/readyz", timeout=10).status_code == 200
        assert info(headers)["model_version"] == "2"
    finally:
        docker("start", container("mlflow"))
    wait_for(lambda: healthy("mlflow"), 120, "MLflow healthy again")
    assert mlflow_state() == (["1", "2"], "2")


def test_mlflow_and_prefect_recover_from_a_postgres_restart(proj: Path, headers: dict):
    docker("restart", container("postgres"))
    wait_for(lambda: healthy("postgres"), 120, "PostgreSQL healthy again")

    def mlflow_back():
        try:
            return mlflow_state() == (["1", "2"], "2")
        except Exception:
            return False

    def prefect_back():
        from prefect.client.orchestration import get_client
        try:
            with get_client(sync_client=True) as client:
                return client.read_deployment_by_name("ferops-retrain/retrain") is not None
        except Exception:
            return False

    wait_for(mlflow_back, 120, "MLflow answering from PostgreSQL again")   # no manual step
    wait_for(prefect_back, 120, "the Prefect server answering again")
    assert classify_ok(headers)


@pytest.mark.timeout(1800)
def test_mlflow_stopped_mid_run_fails_the_run_clearly_and_changes_no_alias(proj: Path,
                                                                            headers: dict):
    """MLflow goes away while the worker trains: the register step retries, then the run
    fails with one clear error; no version is half-registered and no alias moves."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    stack_params(proj, epochs=6, max_train_images=600)
    run = run_deployment("ferops-retrain/retrain", timeout=0, parameters={
        "project_dir": "/opt/ferops", "trigger": "manual", "mlflow_retries": 1,
        "mlflow_retry_delay_s": 2.0})

    def training():
        # This run's own log lines on the Prefect server (the worker streams them there).
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run.id).state
            logs = client.request("POST", "/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [str(run.id)]}},
                "sort": "TIMESTAMP_DESC", "limit": 200, "offset": 0}).json()
        assert state is None or not state.is_final(), f"ended before training: {state}"
        return any("Epoch 2/6" in line["message"] for line in logs)

    wait_for(training, 600, "the worker training", every=2)
    docker("stop", container("mlflow"))
    try:
        def final():
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(run.id).state
            return state if state is not None and state.is_final() else None

        state = wait_for(final, 900, "the retraining run to end", every=5)
    finally:
        docker("start", container("mlflow"))
    assert state.is_failed(), state
    assert f"MLflow at {MLFLOW}" in (state.message or ""), state.message
    wait_for(lambda: healthy("mlflow"), 120, "MLflow healthy again")
    assert mlflow_state() == (["1", "2"], "2")          # nothing registered, no alias moved
    assert info(headers)["model_version"] == "2"


def flow_run_state(run_id):
    from prefect.client.orchestration import get_client
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def flow_run_logs(run_id) -> list[str]:
    """A flow run's log lines on the Prefect server (the worker streams them there)."""
    from prefect.client.orchestration import get_client
    lines: list[str] = []
    with get_client(sync_client=True) as client:
        while page := client.request("POST", "/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [str(run_id)]}},
                "sort": "TIMESTAMP_ASC", "limit": 200, "offset": len(lines)}).json():
            lines += [line["message"] for line in page]
    return lines


@pytest.mark.timeout(1800)
def test_a_worker_killed_mid_training_is_crashed_and_the_next_run_resumes(proj: Path,
                                                                           headers: dict):
    """SIGKILL to the worker container while it trains: the server marks the orphaned run
    Crashed when its heartbeats stop (pipelines/zombies.py), which frees the retrain
    deployment's slot; the next run resumes training from the checkpoint."""
    import json

    from prefect.deployments import run_deployment
    stack_params(proj, epochs=8, max_train_images=600, checkpoint_every=0)
    resume = proj / "artifacts/work/resume/resume.json"   # the worker's checkout is proj
    params = {"project_dir": "/opt/ferops", "trigger": "manual"}
    killed = run_deployment("ferops-retrain/retrain", timeout=0, parameters=params)

    def checkpointed() -> bool:
        state = flow_run_state(killed.id)
        assert state is None or not state.is_final(), f"ended before the kill: {state}"
        return resume.exists() and json.loads(resume.read_text())["next_epoch"] >= 2

    wait_for(checkpointed, 600, "a checkpoint of epoch 2", every=1)
    docker("kill", container("prefect-worker"))          # SIGKILL, the flow run's process too
    next_epoch = json.loads(resume.read_text())["next_epoch"]
    docker("start", container("prefect-worker"))
    state = wait_for(lambda: (s := flow_run_state(killed.id)) is not None and s.is_final()
                     and s, 600, "the killed run marked final", every=5)
    assert state.is_crashed(), state
    assert "No heartbeat" in (state.message or ""), state.message

    again = run_deployment("ferops-retrain/retrain", timeout=1500, parameters=params)
    assert again.state.is_completed(), again.state.message
    logs = "\n".join(flow_run_logs(again.id))
    assert f"resuming from artifacts/work/resume at epoch {next_epoch + 1}" in logs
    assert not resume.exists()                           # a finished run clears its checkpoint
    versions, champion = mlflow_state()
    assert versions == ["1", "2", "3"] and champion in {"2", "3"}
    assert info(headers)["model_version"] == champion
