"""Start a retraining run for a trigger, at most once per reason, never two at a time.

A trigger (new data, drift) names its reason with a key: the digest of the set of new faces,
or the drifting model version. A run is started only when

- no retraining is in progress: the project lock is free and no run this module started
  earlier is still scheduled, pending or running (so a burst of arrivals becomes one run:
  the run that starts consumes every face present when it starts), and
- the key differs from the last key launched for that trigger (so data that failed
  validation is not retried every minute; adding or removing a face changes the key).

With a `retrain` deployment registered (pipelines/deployments.py or prefect.yaml) the run is
created on it (`run_deployment`, not waited for; the deployment's runner or worker executes
it). Without one, the retraining runs inline as a subflow of the caller.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from pipelines.common import STATE_DIR, read_json, retrain_running, write_json

LAUNCHES = STATE_DIR / "launches.json"


def active_run(root: Path) -> str | None:
    """Why a new retraining must not start now, or None."""
    if retrain_running(root):
        return "a retraining run holds the project lock"
    launches = read_json(root / LAUNCHES) or {}
    ids = [rec["flow_run_id"] for rec in launches.values() if rec.get("flow_run_id")]
    if not ids:
        return None
    with get_client(sync_client=True) as client:
        for run_id in ids:
            try:
                run = client.read_flow_run(UUID(run_id))
            except (ObjectNotFound, ValueError):
                continue  # another Prefect server, or deleted: not ours to wait for
            if run.state is not None and not run.state.is_final():
                return f"retraining flow run {run.name} ({run_id}) is {run.state.name}"
    return None


def deployment_exists(name: str) -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
    return True


def launch_retrain(root: Path, trigger: str, key: str, deployment: str | None,
                   push: bool | None = None) -> dict[str, Any]:
    """Start one retraining run for (trigger, key) if allowed; say what happened.

    push: the run's `dvc push` of new data (None: params pipelines.push_data)."""
    log = get_run_logger()
    busy = active_run(root)
    if busy:
        log.info("not starting a retraining run: %s", busy)
        return {"status": "busy", "reason": busy}
    last = (read_json(root / LAUNCHES) or {}).get(trigger, {})
    if last.get("key") == key:
        log.info("a retraining run was already started for this %s (%s)", trigger, key)
        return {"status": "already-launched", "flow_run_id": last.get("flow_run_id")}
    if deployment and deployment_exists(deployment):
        parameters: dict[str, Any] = {"project_dir": str(root), "trigger": trigger}
        if push is not None:
            parameters["push"] = push
        run = run_deployment(deployment, parameters=parameters,
                             timeout=0, idempotency_key=f"{trigger}:{key}",
                             as_subflow=False, tags=["ferops", trigger])
        _record(root, trigger, key, str(run.id))
        log.info("started retraining flow run %s on %s", run.name, deployment)
        return {"status": "launched", "flow_run_id": str(run.id), "deployment": deployment}
    return _run_inline(root, trigger, key, push)


def _run_inline(root: Path, trigger: str, key: str, push: bool | None) -> dict[str, Any]:
    from pipelines.retrain import retrain_flow  # heavy; only needed without a deployment
    get_run_logger().info("no retrain deployment registered: retraining inline")
    _record(root, trigger, key, None)
    state = retrain_flow(project_dir=str(root), trigger=trigger, push=push, return_state=True)
    status = "retrained" if state.is_completed() else "retrain-failed"
    return {"status": status, "state": state.name, "message": state.message}


def _record(root: Path, trigger: str, key: str, flow_run_id: str | None) -> None:
    launches = read_json(root / LAUNCHES) or {}
    launches[trigger] = {"key": key, "flow_run_id": flow_run_id,
                         "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(root / LAUNCHES, launches)
