"""The retraining flow: version new data, `dvc repro`, promote, reload the service.

    python -m pipelines.retrain [--project-dir .] [--service-url URL]

Idempotent: with nothing new, `dvc add` changes nothing, `dvc repro` skips every stage, no
model version is registered and promotion is not re-run, so no alias moves. One run at a
time per project (an OS file lock, see pipelines.common.retrain_lock); a run that finds the
lock taken ends at once as "skipped".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from ferops.promotion import needs_gate
from ferops.provenance import data_md5
from pipelines import report
from pipelines.common import (
    RETRAIN_FLOW,
    project_params,
    read_json,
    resolve_project,
    retrain_lock,
)
from pipelines.newdata import record_attempt, snapshot, write_manifest
from pipelines.steps import (
    DECISION,
    REGISTERED,
    DataValidationError,
    RegistryUnavailableError,
    build,
    check_registry,
    promote,
    reference_confidence,
    register,
    reload_service,
    screen_drop_folder,
    validate_data,
    version_data,
)

ARTIFACT_KEY = "ferops-retrain"


@dataclass(frozen=True)
class Options:
    service_url: str              # "" turns the reload call off
    api_key_env: str
    push: bool
    mlflow_retries: int
    mlflow_retry_delay_s: float
    repro_timeout_s: float
    step_timeout_s: float

    def mlflow(self, task):
        """The task with this run's retry policy (an MLflow outage is worth waiting for)."""
        return task.with_options(retries=self.mlflow_retries,
                                 retry_delay_seconds=self.mlflow_retry_delay_s)


@flow(name=RETRAIN_FLOW)
def retrain_flow(project_dir: str = ".", service_url: str | None = None,
                 trigger: str = "manual", push: bool | None = None, mlflow_retries: int = 3,
                 mlflow_retry_delay_s: float = 30.0, repro_timeout_s: float = 6 * 3600.0,
                 step_timeout_s: float = 1800.0) -> dict[str, Any]:
    """Retrain on the project's current data; publish what happened as a markdown artifact.

    service_url: the running service (None: params camera.service_url; "": do not call it).
    trigger: why this run started (schedule, new-data, drift, manual): shown in the report.
    push: `dvc push` the new data version (None: params pipelines.push_data).
    """
    root = resolve_project(project_dir)
    params = project_params(root)
    opts = Options(params.camera.service_url if service_url is None else service_url,
                   params.serving.api_key_env,
                   params.pipelines.push_data if push is None else push, mlflow_retries,
                   mlflow_retry_delay_s, repro_timeout_s, step_timeout_s)
    with retrain_lock(root) as acquired:
        if not acquired:
            get_run_logger().warning("another retraining run holds %s; skipping", root)
            return {"status": "skipped", "reason": "another retraining run is in progress"}
        summary = report.RunSummary(str(root), trigger)
        try:
            _run(root, params.camera.drop_folder, summary, opts)
        except DataValidationError as exc:
            summary.stages += exc.stages
            _publish(_validation_report(root, summary), "retraining stopped: data invalid")
            raise
        except Exception as exc:
            summary.stages += getattr(exc, "stages", [])
            _publish(report.failure_markdown(summary, summary.step, str(exc)),
                     f"retraining failed at {summary.step}")
            raise
        _publish(report.retrain_markdown(summary, _quarantine(root)), "retraining run")
        return _result(summary)


def _result(s: report.RunSummary) -> dict[str, Any]:
    """The flow's return value; decision is None when the gate did not run in this run."""
    return {"status": "completed", "trigger": s.trigger, "new_faces": len(s.snapshot.new),
            "new_version": s.new_version, "stages": s.stages,
            "decision": (s.decision or {}).get("action") if s.decided_now else None,
            "reload": s.reload}


def _run(root: Path, drop_folder: str, s: report.RunSummary, opts: Options) -> None:
    s.step = "screen"
    s.rejected = screen_drop_folder(root)
    s.step = "snapshot"   # after screening: the faces this run may version
    s.snapshot = snapshot(root, drop_folder)
    record_attempt(root, s.snapshot)
    s.step = "check-registry"
    try:
        opts.mlflow(check_registry)()
    except RegistryUnavailableError as exc:
        raise RegistryUnavailableError(f"{exc} (gave up after {opts.mlflow_retries + 1} "
                                       "attempts; nothing was changed)") from exc
    s.step = "validate-data"
    s.data_before = data_md5(root)
    s.stages = validate_data(root, opts.repro_timeout_s)
    s.step = "version-data"
    s.data_after, s.push = version_data(root, opts.push, opts.step_timeout_s)
    s.step = "build"
    s.stages += build(root, opts.repro_timeout_s)
    s.step = "register"
    ran, s.new_version = opts.mlflow(register)(root, opts.step_timeout_s)
    s.stages += ran
    if s.new_version:  # cache the drift monitor's reference while this model is on disk
        reference_confidence(root, s.new_version, return_state=True)
    s.metrics = read_json(root / "artifacts/eval/metrics.json")
    s.step = "promote"
    _promote(root, s, opts)
    s.step = "reload"
    _reload(s, opts)
    s.confusion = _confusion(root)
    write_manifest(root, s.snapshot, s.data_after)


def _promote(root: Path, s: report.RunSummary, opts: Options) -> None:
    """Run the gate unless the current @challenger was already decided (no alias moves then)."""
    version = (read_json(root / REGISTERED) or {}).get("version")
    last = read_json(root / DECISION)
    if version is None:
        s.decision_note = "No registered model: nothing to promote."
    elif not needs_gate(version, s.new_version, last):
        s.decision, s.decision_note = last, (
            f"No new model version; version {version} was already decided "
            "(the last decision, not re-run):")
    else:
        s.decision = opts.mlflow(promote)(root, opts.step_timeout_s)
        s.decided_now = True


def _reload(s: report.RunSummary, opts: Options) -> None:
    if not s.decided_now or (s.decision or {}).get("action") != "promoted":
        s.reload = "not needed (the champion did not change)"
    elif not opts.service_url:
        s.reload = "off (no service URL)"
    else:
        state = reload_service(opts.service_url, opts.api_key_env, return_state=True)
        if state.is_completed():
            s.reload = state.result()
        else:  # the service also polls the registry every serving.reload_poll_s
            s.reload = (f"WARNING: {state.message}; the service picks the new champion up "
                        "on its next poll")
            get_run_logger().warning("service reload failed: %s", state.message)


def _confusion(root: Path) -> str:
    label_map = read_json(root / "artifacts/dataset/label_map.json") or {}
    return report.confusion_table(root / "artifacts/eval/plots/confusion_test.csv",
                                  label_map.get("classes"))


def _quarantine(root: Path) -> str:
    return report.quarantine_table(root / "artifacts/ingest/quarantine.csv")


def _validation_report(root: Path, s: report.RunSummary) -> str:
    path = root / "artifacts/validate/report.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else f"({path} is missing)"
    return report.validation_markdown(s, text, _quarantine(root))


def _publish(markdown: str, description: str) -> None:
    create_markdown_artifact(markdown, key=ARTIFACT_KEY, description=description)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one retraining now (a Prefect flow run).")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--service-url", default=None)
    parser.add_argument("--no-push", dest="push", action="store_false", default=None,
                        help="do not `dvc push` the new data version (default: params "
                             "pipelines.push_data)")
    args = parser.parse_args(argv)
    result = retrain_flow(args.project_dir, args.service_url, push=args.push)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
