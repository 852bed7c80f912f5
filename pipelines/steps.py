"""The retraining steps as Prefect tasks, each one `dvc`/`ferops` command or one HTTP call.

Timeouts are enforced on the child process group (killed on expiry) rather than by Prefect's
`timeout_seconds`, which cannot stop a child process. Retries: only the steps that talk to
MLflow retry (a `retry_condition_fn` keeps them from retrying anything but an MLflow failure);
`dvc repro` of the data and training stages never retries: a Great Expectations failure is a
fact about the data, and a crashed training resumes from its checkpoint on the next run.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from prefect import get_run_logger, task

from ferops.data.screen import screen
from ferops.provenance import PIPELINE_FILES, data_md5
from pipelines.common import (
    StepError,
    dvc_cmd,
    ferops_cmd,
    project_params,
    read_json,
    run_command,
)

BUILD_TARGET = "evaluate"      # everything before the MLflow side effect (the register stage)
VALIDATE_TARGET = "validate"   # ingest + Great Expectations, on the working tree
REGISTER_STAGE = "register"
REGISTERED = Path("artifacts/registry/registered.json")
DECISION = Path("artifacts/registry/decision.json")


@task(name="reference-confidence")
def reference_confidence(root: Path, version: str) -> float | None:
    """The drift monitor's reference confidence of a model version (ferops.reference; loads
    Keras only when the version is not cached yet)."""
    from ferops.reference import reference_confidence as compute
    return compute(root, version)


class DataValidationError(StepError):
    """Great Expectations stopped the pipeline (validate exited 2)."""


class RegistryUnavailableError(StepError):
    """MLflow could not be reached or failed; worth retrying."""


def mlflow_failed(task, task_run, state) -> bool:
    """retry_condition_fn: retry only when MLflow was the problem."""
    try:
        state.result()
    except RegistryUnavailableError:
        return True
    except Exception:
        return False
    return False


def _log_line(line: str) -> None:
    get_run_logger().info(line)


def _fail(result, root: Path) -> StepError:
    """The exception for a failed command: which stage, why (from the stages' own event
    records, not their log text), and the last lines of output."""
    tail = "\n".join(result.output.splitlines()[-25:])
    failed = result.failure() or {}
    stage, kind = failed.get("stage"), failed.get("kind")
    if stage == "validate" and kind == "data":
        err: StepError = DataValidationError(
            f"data validation failed; see {root / 'artifacts/validate/report.md'}\n{tail}")
    elif kind == "registry_unavailable":
        err = RegistryUnavailableError(f"{result.describe()}: {failed.get('message', '')}")
    else:
        err = StepError(f"{result.describe()}{f' in stage {stage!r}' if stage else ''}:\n{tail}")
    err.stages = result.stages_run()
    return err


@task(name="check-registry", retries=3, retry_delay_seconds=30)
def check_registry(timeout_s: float = 10.0) -> str:
    """Fail fast, before hours of training, when the MLflow server cannot be reached."""
    from ferops.registry import tracking_uri
    uri = tracking_uri()
    if urllib.parse.urlparse(uri).scheme not in ("http", "https"):
        return f"local store {uri}"
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RegistryUnavailableError(f"MLflow at {uri} is unreachable: {reason}") from exc
    return f"MLflow server {uri}"


@task(name="screen-drop-folder")
def screen_drop_folder(root: Path) -> list[dict]:
    """Move drop-folder files that ingest or validate would refuse aside, with their reason
    (ferops.data.screen), before anything is versioned."""
    moved = screen(root, project_params(root))
    for r in moved:
        get_run_logger().warning("moved aside %s -> %s: %s", r.path, r.kept_at, r.reason)
    return [vars(r) for r in moved]


@task(name="validate-data")
def validate_data(root: Path, timeout_s: float) -> list[str]:
    """`dvc repro validate` on the working tree, before `dvc push`: data that fails the
    Great Expectations suite never becomes a data version nor reaches the remote.

    `dvc repro` itself records a changed data source in data.dvc ("Verifying data sources"),
    so on failure data.dvc and dvc.lock are put back byte for byte: the data version stays
    the last one that passed."""
    saved = {name: (root / name).read_bytes() for name in PIPELINE_FILES
             if (root / name).is_file()}
    result = run_command(dvc_cmd("repro", VALIDATE_TARGET), root, timeout_s, _log_line)
    if not result.ok:
        for name, data in saved.items():
            (root / name).write_bytes(data)
        raise _fail(result, root)
    return result.stages_run()


@task(name="version-data")
def version_data(root: Path, push: bool, timeout_s: float) -> tuple[str | None, str]:
    """`dvc add data` (data.dvc changes when data did), then `dvc push data.dvc` to the remote."""
    result = run_command(dvc_cmd("add", "-q", "data"), root, timeout_s, _log_line)
    if not result.ok:
        raise _fail(result, root)
    after = data_md5(root)
    if not push:
        return after, "skipped (push=False)"
    remotes = run_command(dvc_cmd("remote", "list"), root, 60)
    if not remotes.ok or not remotes.output.strip():
        return after, "skipped (no DVC remote configured)"
    pushed = run_command(dvc_cmd("push", "-q", "data.dvc"), root, timeout_s, _log_line)
    if not pushed.ok:  # the data is versioned locally; the next run pushes it
        get_run_logger().warning("dvc push failed: %s", pushed.output[-500:])
        return after, f"FAILED ({pushed.describe()}); retried on the next run"
    return after, f"pushed to `{remotes.output.split()[-1]}`"


@task(name="build")
def build(root: Path, timeout_s: float) -> list[str]:
    """`dvc repro evaluate`: ingest, validate, ... train, evaluate; only what changed."""
    result = run_command(dvc_cmd("repro", BUILD_TARGET), root, timeout_s, _log_line)
    if not result.ok:
        raise _fail(result, root)
    return result.stages_run()


@task(name="register", retries=3, retry_delay_seconds=30, retry_condition_fn=mlflow_failed)
def register(root: Path, timeout_s: float) -> tuple[list[str], str | None]:
    """`dvc repro --single-item register` (upstream is built): a new @challenger if it ran.

    --single-item, so faces that arrived during training do not start a second training here.
    """
    before = (read_json(root / REGISTERED) or {}).get("version")
    result = run_command(dvc_cmd("repro", "--single-item", REGISTER_STAGE), root, timeout_s,
                         _log_line)
    if not result.ok:
        raise _fail(result, root)
    ran = result.stages_run()
    after = (read_json(root / REGISTERED) or {}).get("version")
    return ran, (after if REGISTER_STAGE in ran and after != before else None)


@task(name="promote", retries=3, retry_delay_seconds=30, retry_condition_fn=mlflow_failed)
def promote(root: Path, timeout_s: float) -> dict:
    """`ferops promote`: re-score @challenger vs @champion; export a new champion to BentoML."""
    result = run_command(ferops_cmd("promote", "-q"), root, timeout_s, _log_line)
    if not result.ok:
        raise _fail(result, root)
    decision = read_json(root / DECISION)
    if decision is None:
        raise StepError(f"ferops promote wrote no {DECISION}")
    return decision


@task(name="reload-service", retries=2, retry_delay_seconds=5)
def reload_service(url: str, api_key_env: str, timeout_s: float = 90.0) -> str:
    """POST {url}/reload so the service swaps in the new champion now (it also polls).

    The answer comes once every worker serves the new model: loading takes seconds."""
    headers = {"Content-Type": "application/json"}
    if key := os.environ.get(api_key_env):
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url.rstrip("/") + "/reload", data=json.dumps({}).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            body = resp.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        raise StepError(f"{url}/reload answered {exc.code}: {exc.read(300)!r}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StepError(f"{url}/reload failed: {getattr(exc, 'reason', exc)}") from exc
    return f"{url}/reload: {resp.status} {body.strip()[:200]}"
