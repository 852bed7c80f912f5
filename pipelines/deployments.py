"""Serve the three deployments from this process: the simplest local way (no work pool, no worker).

    python -m pipelines.deployments [--project-dir .]     # from the repository root

retrain (cron `pipelines.retrain_cron`), watch-new-data (every `pipelines.watch_interval_s`)
and monitor-drift (every --monitor-interval seconds) run as subprocesses of this one.
Needs a Prefect API (`prefect server start`, PREFECT_API_URL); scripts/stack.sh starts both.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from pipelines.common import project_params, resolve_project
from pipelines.monitor import monitor_drift
from pipelines.retrain import retrain_flow
from pipelines.watch import watch_new_data
from pipelines.zombies import ensure as crash_zombie_runs

MONITOR_INTERVAL_S = 600   # a drift window of hundreds of predictions fills in minutes, not seconds


def build_deployments(root: Path, monitor_interval_s: int = MONITOR_INTERVAL_S
                      ) -> list[RunnerDeployment]:
    """The deployments, with schedules from params.yaml and this project as parameter."""
    cfg = project_params(root).pipelines
    project = {"project_dir": str(root)}
    # Server-side guard on top of the project lock: retraining runs queue, one at a time;
    # a watcher or monitor run that finds its predecessor still running is dropped.
    queue = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    drop = ConcurrencyLimitConfig(limit=1,
                                  collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    return [
        retrain_flow.to_deployment(
            name="retrain", schedule=Cron(cfg.retrain_cron, timezone="UTC"),
            concurrency_limit=queue,
            parameters={**project, "trigger": "schedule"}, tags=["ferops"],
            description="Retrain: dvc add + dvc repro + ferops promote + service reload."),
        watch_new_data.to_deployment(
            name="watch-new-data", interval=cfg.watch_interval_s, concurrency_limit=drop,
            parameters=project, tags=["ferops"],
            description=f"Start retraining once {cfg.min_new_faces} new labeled faces arrive."),
        monitor_drift.to_deployment(
            name="monitor-drift", interval=monitor_interval_s, concurrency_limit=drop,
            parameters=project, tags=["ferops"],
            description="Compare recent predictions with the training reference."),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the ferops Prefect deployments.")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--monitor-interval", type=int, default=MONITOR_INTERVAL_S)
    args = parser.parse_args(argv)
    root = resolve_project(args.project_dir)
    heartbeat_s = project_params(root).pipelines.heartbeat_s
    # The flow runs are subprocesses of this one and read the frequency from the environment.
    os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(heartbeat_s)
    crash_zombie_runs(heartbeat_s)
    serve(*build_deployments(root, args.monitor_interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
