"""The drift monitor flow: recent predictions vs the training reference, alert or retrain.

    python -m pipelines.monitor [--project-dir .]

Reference: the label distribution of the training split (artifacts/dataset/y_train.npy with
label_map.json) and the mean top-class confidence of the model version on the val split
(ferops.reference: computed once per version from the local artifacts, cached). Unknown for a
model not built here: the confidence check is then skipped.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from pipelines import drift
from pipelines.common import (
    RETRAIN_DEPLOYMENT,
    project_params,
    read_json,
    resolve_project,
)
from pipelines.launch import launch_retrain
from pipelines.report import table
from pipelines.steps import reference_confidence

ARTIFACT_KEY = "ferops-drift"
EVENT = "ferops.drift.detected"


def training_reference(root: Path) -> dict[str, float] | None:
    label_map = read_json(root / "artifacts/dataset/label_map.json")
    y_path = root / "artifacts/dataset/y_train.npy"
    if not label_map or not y_path.is_file():
        return None
    return drift.training_distribution(np.load(y_path), label_map["classes"])


def drift_markdown(rep: drift.DriftReport, source: str, action: str) -> str:
    verdict = ("DRIFT: " + "; ".join(rep.reasons)) if rep.drifted else (
        "no drift" if rep.tv_distance is not None else
        f"not enough predictions ({rep.n} < {rep.min_n}): no verdict")
    rows = [[c, rep.reference.get(c), rep.observed.get(c)]
            for c in dict.fromkeys([*rep.reference, *rep.observed])]
    return "\n".join([
        f"# ferops drift monitor: model version {rep.model_version}", "",
        f"**{verdict}** (action on drift: {action})", "",
        f"Predictions: last {rep.n} of this version from `{source}`.", "",
        table(["check", "value", "limit"], [
            ["total-variation distance", rep.tv_distance, rep.threshold],
            ["mean confidence", rep.mean_confidence, None],
            ["reference mean confidence", rep.reference_confidence, None],
            ["confidence drop", rep.confidence_drop, rep.confidence_drop_limit]]), "",
        "## Predicted labels vs training labels", "",
        table(["label", "training share", "predicted share"], rows)]) + "\n"


@flow(name="ferops-monitor-drift")
def monitor_drift(project_dir: str = ".", stats_path: str | None = None,
                  min_predictions: int = 100,
                  retrain_deployment: str | None = RETRAIN_DEPLOYMENT) -> dict[str, Any]:
    """Judge the last pipelines.drift_window predictions; alert or retrain on drift.

    stats_path: None reads serving.stats_path. min_predictions: fewer gives no verdict
    (capped at the window).
    """
    root = resolve_project(project_dir)
    params = project_params(root)
    cfg, log = params.pipelines, get_run_logger()
    source = stats_path or params.serving.stats_path
    preds = drift.recent_predictions(root / source, cfg.drift_window)
    reference = training_reference(root)
    if not preds or reference is None:
        why = (f"no predictions in {source} (serving.record_stats is "
               f"{params.serving.record_stats})" if not preds else
               "no training reference (artifacts/dataset): run `dvc repro` first")
        log.info("drift monitor: %s", why)
        return {"status": "no-data", "reason": why}
    version = preds[-1].model_version
    rep = drift.assess(preds, reference, reference_confidence(root, version),
                       cfg.drift_threshold, cfg.confidence_drop,
                       min(min_predictions, cfg.drift_window))
    create_markdown_artifact(drift_markdown(rep, source, cfg.drift_action), key=ARTIFACT_KEY,
                             description=f"drift check of model version {version}")
    result = {"status": "drift" if rep.drifted else "ok", **asdict(rep)}
    if rep.drifted:
        result["action"] = _act(root, rep, params.registry.model_name, cfg.drift_action,
                                retrain_deployment)
    return result


def _act(root: Path, rep: drift.DriftReport, model_name: str, action: str,
         deployment: str | None) -> dict[str, Any]:
    get_run_logger().warning("drift detected for %s version %s: %s", model_name,
                             rep.model_version, "; ".join(rep.reasons))
    emit_event(EVENT, resource={"prefect.resource.id": f"ferops.model.{model_name}",
                                "prefect.resource.name": model_name,
                                "ferops.model.version": str(rep.model_version)},
               payload={"reasons": rep.reasons, "tv_distance": rep.tv_distance,
                        "mean_confidence": rep.mean_confidence,
                        "reference_confidence": rep.reference_confidence, "n": rep.n})
    if action != "retrain":
        return {"status": "alerted"}
    # One retraining per drifting version: retraining on unchanged data changes nothing.
    return launch_retrain(root, "drift", str(rep.model_version), deployment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one drift check now.")
    parser.add_argument("--project-dir", default=".")
    args = parser.parse_args(argv)
    print(monitor_drift(args.project_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
