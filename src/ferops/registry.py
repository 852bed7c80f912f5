"""MLflow and BentoML I/O: log runs, register models, move aliases, export. The only mlflow
importer; when a challenger may be promoted is ferops.promotion's decision.

Aliases: @challenger (newest registered), @champion (served), @previous (the champion it
replaced, for rollback). Promotion re-scores both models on the same current test set; the
numbers and the decision are written as model-version tags and returned to the caller.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ferops.config import RegistryConfig
from ferops.errors import FeropsError
from ferops.promotion import Decision, judge

DEFAULT_URI = "sqlite:///mlflow.db"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


class RegistryError(FeropsError):
    """The registry lacks the model or alias asked for."""

    kind = "registry"


class MLflowUnavailableError(RegistryError):
    """MLflow could not be reached or failed: worth retrying later."""

    kind = "registry_unavailable"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def connect(uri: str | None = None):
    """An MlflowClient on uri, $MLFLOW_TRACKING_URI, or the local sqlite store."""
    import mlflow
    mlflow.set_tracking_uri(uri or tracking_uri())
    return mlflow.MlflowClient()


@contextlib.contextmanager
def reporting_failures():
    """MLflow, network or store errors become one MLflowUnavailableError (the CLI: exit 2)."""
    try:
        yield
    except FeropsError:
        raise
    except Exception as exc:  # MLflow down, network, corrupt store: say so plainly
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise MLflowUnavailableError(f"MLflow at {tracking_uri()} failed: {type(exc).__name__}: "
                                     f"{detail}") from exc


def log_and_register(model, name: str, label_map: dict, params: dict, history: list[dict],
                     metrics: dict, artifacts: list[Path], tags: dict[str, str],
                     experiment: str = "ferops") -> tuple[str, str]:
    """Log one training run and register its model as @challenger; returns (run_id, version).

    mlflow.keras.log_model(input_example=...) fails in MLflow 3.17 (it writes the example
    before creating its folder), so the model is saved to a local folder first and logged
    from there: the version still carries its signature and input example.
    """
    import mlflow
    from mlflow.models import infer_signature
    client = connect()
    mlflow.set_experiment(experiment)
    size = label_map["input"]["height"]
    example = np.zeros((1, size, size, 1), np.float32)
    with mlflow.start_run(run_name=tags.get("run_name")) as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        for h in history:
            mlflow.log_metrics({k: float(v) for k, v in h.items() if k != "epoch"},
                               step=int(h["epoch"]))
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                            if isinstance(v, int | float)})
        mlflow.set_tags(tags)
        for path in artifacts:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            elif path.is_file():
                mlflow.log_artifact(str(path))
        local = Path(tmp) / "model"
        local.mkdir()
        signature = infer_signature(example, model.predict(example, verbose=0))
        mlflow.keras.save_model(model, str(local), signature=signature, input_example=example,
                                metadata={"label_map": label_map})
        mlflow.log_artifacts(str(local), artifact_path="model")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name,
                                    tags={"label_map": json.dumps(label_map), **tags}).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    return run.info.run_id, str(version)


def alias_version(client, name: str, alias: str) -> str | None:
    """The version behind an alias, or None if the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise  # an unreachable server is not "no such alias"


def resolve_version(client, name: str, ref: str) -> str:
    """A version number, or @alias, as the version number; RegistryError if there is none."""
    version = alias_version(client, name, ref[1:]) if ref.startswith("@") else ref
    if version is None:
        raise RegistryError(f"model {name} has no alias {ref}")
    return version


def download_lineage(name: str, ref: str, dest: Path) -> tuple[str, Path]:
    """The `lineage/` artifacts (ferops.provenance.lineage_files) of version ref ("3" or
    "@champion") into dest; returns (version, folder)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    client = connect()
    version = resolve_version(client, name, ref)
    try:
        mv = client.get_model_version(name, version)
        folder = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="lineage",
                                                     dst_path=str(dest))
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"model {name} version {version}: no such version, or it "
                                "was registered before lineage was recorded") from exc
        raise
    return version, Path(folder)


def load_version(name: str, version: str):
    import mlflow
    return mlflow.keras.load_model(f"models:/{name}/{version}")


def predict_classes(model, x: np.ndarray) -> tuple[np.ndarray, int]:
    """(class ids a model predicts for (N, S, S, 1) uint8 images, its class count), now."""
    from ferops.predict import predict_logits
    logits = predict_logits(model, x)
    return logits.argmax(axis=1), int(logits.shape[1])


def promote(name: str, x: np.ndarray, y: np.ndarray, policy: RegistryConfig,
            classes: list[str] | None = None) -> Decision:
    """Re-score @challenger and @champion on (x, y); move the aliases only if the gate
    (ferops.promotion.judge) passes. The decision and its statistics become version tags."""
    client = connect()
    chal = alias_version(client, name, CHALLENGER)
    champ = alias_version(client, name, CHAMPION)
    if chal is None:
        return Decision("nothing", f"no @{CHALLENGER} version of '{name}'", champion=champ)
    if chal == champ:
        return Decision("nothing", f"version {chal} is already @{CHAMPION}", chal, champ)
    chal_pred, n_classes = predict_classes(load_version(name, chal), x)
    champ_pred = predict_classes(load_version(name, champ), x)[0] if champ else None
    ok, why, chal_score, champ_score, stats = judge(y, chal_pred, champ_pred, n_classes, policy,
                                                     classes)
    decision = Decision("promoted" if ok else "kept", why, chal, champ, chal_score,
                        champ_score, policy.metric, stats)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, chal, key, value)
    if ok:
        if champ:
            client.set_registered_model_alias(name, PREVIOUS, champ)
            client.set_model_version_tag(name, chal, "replaced_version", champ)
        client.set_registered_model_alias(name, CHAMPION, chal)
    return decision


def rollback(name: str) -> Decision:
    """@champion <- @previous in one step; @previous moves one further back (if known)."""
    client = connect()
    champ = alias_version(client, name, CHAMPION)
    prev = alias_version(client, name, PREVIOUS)
    if prev is None:
        raise RegistryError(f"'{name}' has no @{PREVIOUS} version to roll back to")
    client.set_registered_model_alias(name, CHAMPION, prev)
    older = client.get_model_version(name, prev).tags.get("replaced_version")
    if older:
        client.set_registered_model_alias(name, PREVIOUS, older)
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    decision = Decision("rolled_back", f"@{CHAMPION} {champ} -> {prev}", champ, prev)
    for key, value in decision.as_tags().items():
        client.set_model_version_tag(name, prev, key, value)
    return decision


def export_bento(name: str, version: str, bento_name: str | None = None):
    """Import a registered version into the BentoML model store, self-describing for the service.

    The service serves the newest model of `bento_name` in the store, so promote and rollback
    both export: whichever ran last is what the service loads (hot swap picks it up).
    """
    import bentoml
    client = connect()
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    label_map = json.loads(mv.tags.get("label_map", "{}"))
    metrics = {k: round(v, 6) for k, v in run.data.metrics.items()
               if k.startswith(("test_", "val_", "temperature"))}
    trained_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.info.start_time / 1000))
    data_version = {k: v for k, v in mv.tags.items() if k.startswith(("data_", "dvc_lock"))}
    return bentoml.mlflow.import_model(
        bento_name or name, f"models:/{name}/{version}",
        labels={"registry_version": str(version)},
        metadata={"registry_name": name, "registry_version": str(version),
                  "label_map": label_map, "run_id": mv.run_id, "metrics": metrics,
                  "trained_at": trained_at, "data_version": data_version,
                  "git_commit": mv.tags.get("git_commit", ""),
                  "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def sync_bento(name: str, bento_name: str | None = None):
    """Make the newest BentoML export the current @champion; export it if it is not.

    Promotion moves the alias first and exports second; if the export failed (disk full,
    crash), a rerun of `ferops promote` finds the challenger already champion and would
    otherwise never export it. Returns the exported model, or None when nothing was needed.
    """
    import bentoml
    from bentoml.exceptions import NotFound
    champion = alias_version(connect(), name, CHAMPION)
    if champion is None:
        return None
    try:
        newest = bentoml.models.get(f"{bento_name or name}:latest")
    except NotFound:
        newest = None
    if newest is not None and newest.info.labels.get("registry_version") == champion:
        return None
    return export_bento(name, champion, bento_name)
