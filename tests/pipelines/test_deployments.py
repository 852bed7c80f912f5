"""prefect.yaml and pipelines/deployments.py describe the same deployments, scheduled from
params."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipelines.common import RETRAIN_DEPLOYMENT

from ferops.config import load_params
from tests.conftest import PROJECT

NAMES = ["retrain", "watch-new-data", "monitor-drift"]


# `prefect deploy` (3.8.8) needs fastapi <= 0.150: newer rejects the null limit/offset it
# sends when it looks for workers (422 after the first deployment). requirements.lock pins it.


def prefect_yaml(path: str = "prefect.yaml") -> dict:
    return yaml.safe_load((PROJECT / path).read_text())


@pytest.mark.parametrize("path,pool", [("prefect.yaml", "ferops-local"),
                                       ("deploy/prefect.yaml", "ferops-process")])
def test_prefect_yaml_matches_params_and_entrypoints(path: str, pool: str):
    cfg = load_params(PROJECT / "params.yaml").pipelines
    deployments = {d["name"]: d for d in prefect_yaml(path)["deployments"]}
    assert list(deployments) == NAMES
    assert deployments["retrain"]["schedules"] == [{"cron": cfg.retrain_cron,
                                                    "timezone": "UTC"}]
    assert deployments["watch-new-data"]["schedules"] == [{"interval": cfg.watch_interval_s}]
    for d in deployments.values():
        assert d["work_pool"]["name"] == pool
        path, func = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert hasattr(getattr(module, func), "to_deployment"), d["entrypoint"]  # a flow


def test_serve_builds_the_same_deployments():
    from pipelines.deployments import build_deployments
    cfg = load_params(PROJECT / "params.yaml").pipelines
    built = build_deployments(PROJECT, monitor_interval_s=600)
    assert [d.name for d in built] == NAMES
    assert f"{built[0].flow_name}/{built[0].name}" == RETRAIN_DEPLOYMENT
    yml = {d["name"]: d for d in prefect_yaml()["deployments"]}
    for d in built:
        assert d.entrypoint == yml[d.name]["entrypoint"]
        assert d.parameters["project_dir"] == str(PROJECT)
        assert d.concurrency_limit == 1
    assert built[0].schedules[0].schedule.cron == cfg.retrain_cron
    assert built[1].schedules[0].schedule.interval.total_seconds() == cfg.watch_interval_s


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_prefect_deploy_accepts_prefect_yaml(tmp_path: Path):
    """The real `prefect deploy --all` against the test API, from a copy of the project."""
    import prefect.settings
    from prefect.client.orchestration import get_client
    root = tmp_path / "proj"
    shutil.copytree(PROJECT / "pipelines", root / "pipelines",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("prefect.yaml", "params.yaml"):
        shutil.copy(PROJECT / name, root / name)
    env = {**os.environ, "PREFECT_API_URL": prefect.settings.PREFECT_API_URL.value(),
           "PYTHONPATH": str(PROJECT / "src")}
    prefect = [sys.executable, "-m", "prefect"]
    for args in (["work-pool", "create", "ferops-local", "--type", "process"],
                 ["--no-prompt", "deploy", "--all"]):
        proc = subprocess.run([*prefect, *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name(RETRAIN_DEPLOYMENT)
        watch = client.read_deployment_by_name("ferops-watch-new-data/watch-new-data")
    # A concurrency_limit mapping in prefect.yaml becomes a global concurrency limit object.
    gcl = retrain.global_concurrency_limit
    assert retrain.work_pool_name == "ferops-local" and gcl is not None and gcl.limit == 1
    assert retrain.schedules[0].schedule.cron == "0 3 * * 0"
    assert watch.parameters == {"project_dir": "."}
    step = retrain.pull_steps[0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == str(root)


@pytest.mark.parametrize("name", ["docker.json", "kubernetes-gpu.json"])
def test_work_pool_templates_render(name: str):
    """Every placeholder has a variable; with the defaults, the job asks for what it should."""
    import json

    from prefect.utilities.templating import apply_values, find_placeholders
    template = json.loads((PROJECT / "deploy/work-pools" / name).read_text())
    variables = template["variables"]["properties"]
    used = {p.name for p in find_placeholders(template["job_configuration"])}
    assert used <= set(variables), used - set(variables)
    values = {k: v["default"] for k, v in variables.items() if "default" in v}
    job = apply_values(template["job_configuration"], {**values, "command": "x", "env": {}},
                       remove_notset=True)
    if name == "kubernetes-gpu.json":
        pod = job["job_manifest"]["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert resources["requests"]["nvidia.com/gpu"] == 1
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "ferops-project"
    else:
        assert job["image"] == "ferops:latest" and job["networks"] == ["ferops_default"]
