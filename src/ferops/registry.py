"""MLflow: log runs, register models, and the champion/challenger gate. The only mlflow importer.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ferops.errors import FeropsError

DEFAULT_URI = "sqlite:///mlflow.db"
CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"


class RegistryError(FeropsError):
    """The registry is unreachable or lacks the model/alias asked for."""


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def connect(uri: str | None = None):
    """An MlflowClient on uri, $MLFLOW_TRACKING_URI, or the local sqlite store."""
    import mlflow
    mlflow.set_tracking_uri(uri or tracking_uri())
    return mlflow.MlflowClient()


@contextlib.contextmanager
def reporting_failures():
    """Turn MLflow, network or store errors into one RegistryError the CLI prints (exit 2)."""
    try:
        yield
    except FeropsError:
        raise
    except Exception as exc:  # MLflow down, network, corrupt store: say so plainly
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise RegistryError(f"MLflow at {tracking_uri()} failed: {type(exc).__name__}: "
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


def load_version(name: str, version: str):
    import mlflow
    return mlflow.keras.load_model(f"models:/{name}/{version}")


def score(model, x: np.ndarray, y: np.ndarray, metric: str) -> float:
    """accuracy or macro_f1 of a model on (x, y), computed now (never a stored number)."""
    from ferops.evaluate import predict_logits
    from ferops.metrics import classification_report
    logits = predict_logits(model, x)
    classes = [str(i) for i in range(logits.shape[1])]
    return float(classification_report(logits, y, classes)[metric])


@dataclass
class Decision:
    action: str                  # promoted | kept | rolled_back | nothing
    reason: str
    challenger: str | None = None
    champion: str | None = None  # the champion before the decision
    challenger_score: float | None = None
    champion_score: float | None = None
    metric: str = "accuracy"

    def as_tags(self) -> dict[str, str]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {f"promotion.{k}": str(v) for k, v in asdict(self).items()} | {
            "promotion.at": stamp}


def decide(challenger_score: float, champion_score: float | None, margin: float,
           floor: float) -> tuple[bool, str]:
    """The gate, as a pure function: (promote?, why)."""
    if challenger_score < floor:
        return False, f"challenger {challenger_score:.4f} is below the floor {floor:.4f}"
    if champion_score is None:
        return True, f"first model: {challenger_score:.4f} >= floor {floor:.4f}"
    gain = challenger_score - champion_score
    if gain >= margin and gain > 0:
        return True, f"challenger beats champion by {gain:+.4f} (margin {margin:.4f})"
    return False, f"challenger {challenger_score:.4f} vs champion {champion_score:.4f}: " \
                  f"gain {gain:+.4f} is below the margin {margin:.4f}"


def promote(name: str, x: np.ndarray, y: np.ndarray, metric: str, margin: float,
            floor: float) -> Decision:
    """Re-score @challenger and @champion on (x, y); move the aliases only if the gate passes."""
    client = connect()
    chal = alias_version(client, name, CHALLENGER)
    champ = alias_version(client, name, CHAMPION)
    if chal is None:
        return Decision("nothing", f"no @{CHALLENGER} version of '{name}'", champion=champ)
    if chal == champ:
        return Decision("nothing", f"version {chal} is already @{CHAMPION}", chal, champ)
    chal_score = score(load_version(name, chal), x, y, metric)
    champ_score = score(load_version(name, champ), x, y, metric) if champ else None
    ok, why = decide(chal_score, champ_score, margin, floor)
    decision = Decision("promoted" if ok else "kept", why, chal, champ, chal_score,
                        champ_score, metric)
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
        models = bentoml.models.list(bento_name or name)
    except NotFound:
        models = []
    newest = max(models, key=lambda m: m.creation_time, default=None)
    if newest is not None and newest.info.labels.get("registry_version") == champion:
        return None
    return export_bento(name, champion, bento_name)
