"""The new-data trigger: a flow that looks at the drop folder every `pipelines.watch_interval_s`.

Why a polling watcher and not a Prefect event + DeploymentEventTrigger: faces arrive as
plain files (camera client, a person copying files), and nothing that writes them talks to
Prefect. A watcher needs no event emitter, counts exactly what `dvc add` will see, works with
no Prefect server at all (inline mode), and the same code is what the tests run.

    python -m pipelines.watch [--project-dir .]
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger

from pipelines.common import RETRAIN_DEPLOYMENT, project_params, resolve_project
from pipelines.launch import launch_retrain
from pipelines.newdata import last_attempt_digest, snapshot


@flow(name="ferops-watch-new-data")
def watch_new_data(project_dir: str = ".", min_new_faces: int | None = None,
                   retrain_deployment: str | None = RETRAIN_DEPLOYMENT,
                   push: bool | None = None) -> dict[str, Any]:
    """Start one retraining run once at least min_new_faces new labeled faces are there.

    min_new_faces: None reads params pipelines.min_new_faces. retrain_deployment: where to
    start the run ("<flow>/<deployment>"); None or not registered: retrain inline.
    push: the run's `dvc push` of the new data (None: params pipelines.push_data).
    """
    root = resolve_project(project_dir)
    params = project_params(root)
    needed = params.pipelines.min_new_faces if min_new_faces is None else min_new_faces
    snap = snapshot(root, params.camera.drop_folder)
    counts = {"new": len(snap.new), "needed": needed, "per_label": snap.per_label}
    get_run_logger().info("%d new labeled faces in %s (baseline: %s), %d needed",
                          len(snap.new), params.camera.drop_folder, snap.baseline, needed)
    if len(snap.new) < needed:
        return {"status": "waiting", **counts}
    if snap.digest == last_attempt_digest(root):
        # The last retraining run saw exactly these faces and did not absorb them (it
        # failed, e.g. on validation): wait until the drop folder changes.
        get_run_logger().info("the last retraining run already tried these faces; waiting")
        return {"status": "already-tried", **counts}
    return {**launch_retrain(root, "new-data", snap.digest, retrain_deployment, push),
            **counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check the drop folder once.")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--no-push", dest="push", action="store_false", default=None,
                        help="the retraining run does not `dvc push` the new data (default: "
                             "params pipelines.push_data)")
    args = parser.parse_args(argv)
    print(watch_new_data(args.project_dir, push=args.push))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
