"""Stage 8, register: log the run to MLflow and register the model as @challenger.

Logs params, per-epoch metrics, evaluation metrics, plots and reports, the label map, a
generated model card, the data version (data.dvc and dvc.lock hashes) and the git commit.

    python -m ferops.register [--model artifacts/model] [--eval artifacts/eval]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ferops.config import Params, load_params
from ferops.provenance import data_version, git_commit, lineage_files
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def risk_coverage_table(report: dict) -> str:
    """Markdown: accuracy when the model may answer `uncertain` on its least sure faces."""
    lines = ["| coverage | val accuracy | test accuracy | confidence threshold (val) |",
             "|---|---|---|---|"]
    val = {r["coverage"]: r for r in report.get("val", {}).get("risk_coverage", [])}
    for row in report.get("test", {}).get("risk_coverage", []):
        v = val.get(row["coverage"], {})
        lines.append(f"| {row['coverage']:.0%} | {v.get('accuracy', float('nan')):.3f} | "
                     f"{row['accuracy']:.3f} | {v.get('threshold', float('nan')):.3f} |")
    return "\n".join(lines) if len(lines) > 2 else "(no test split)"


def model_card(params: Params, train: dict, metrics: dict, label_map: dict, tags: dict,
               report: dict) -> str:
    """A short markdown card that travels with the model."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    return f"""# ferops emotion model

- classes: {", ".join(label_map["classes"])}
- input: {label_map["input"]["height"]}x{label_map["input"]["width"]} grayscale uint8, \
scaled inside the model; faces cropped by {label_map["faces"]["detector"]}
- architecture: {params.train.arch} {list(params.train.widths)}, \
{train.get("parameters", "?")} parameters, profile `{params.train.profile}`{
"; averages each face with its mirror image (two passes)" if train.get("flip_average") else ""}
- trained on: {train.get("device")} ({train.get("precision", "float32")}; the model is \
float32), {train.get("train_seconds")} s, best epoch \
{train.get("best_epoch")} of {train.get("epochs_run")} (selected on val)
- data: {tags.get("data_md5", "?")} (data.dvc), sources {list(params.ingest.sources)}
- code: git {tags.get("git_commit", "?")}

| metric | value |
|---|---|
{rows}

## Risk and coverage
With `serving.abstain_below` set to a threshold, answers below it say `uncertain`; the
table gives the accuracy on the faces still answered (calibrated probabilities).

{risk_coverage_table(report)}

Selected on the val split; test figures are reported, never tuned on. Demo-data models say
nothing about real faces.
"""


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops register", "Log the run to MLflow; register as @challenger.")
    parser.add_argument("--model", type=Path, default=Path("artifacts/model"))
    parser.add_argument("--eval", dest="eval_dir", type=Path, default=Path("artifacts/eval"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/registry"))

    def body(args) -> None:
        import keras

        from ferops import registry
        params = load_params(args.params)
        root = Path(args.params).resolve().parent
        label_map = json.loads((args.model / "label_map.json").read_text())
        train = json.loads((args.model / "train.json").read_text())
        metrics = json.loads((args.eval_dir / "metrics.json").read_text())
        tags = {"git_commit": git_commit(root), **data_version(root),
                "profile": params.train.profile, "device": str(train.get("device")),
                "precision": str(train.get("precision", "float32")),
                "sources": ",".join(params.ingest.sources)}
        args.out.mkdir(parents=True, exist_ok=True)
        card = args.out / "model_card.md"
        report = json.loads((args.eval_dir / "report.json").read_text())
        card.write_text(model_card(params, train, metrics, label_map, tags, report))
        flat = {f"train.{k}": v for k, v in params.train.model_dump().items()}
        flat |= {"classes": label_map["classes"], "seed": params.seed}
        lineage = lineage_files(root, args.out / "lineage")
        model = keras.models.load_model(args.model / "model.keras")
        with registry.reporting_failures():
            run_id, version = registry.log_and_register(
                model, params.registry.model_name, label_map, flat, train.get("history", []),
                metrics, [card, args.eval_dir, args.model / "label_map.json",
                          args.model / "train.json", lineage], tags,
                params.registry.experiment)
        (args.out / "registered.json").write_text(json.dumps(
            {"model_name": params.registry.model_name, "version": version, "run_id": run_id,
             **tags}, indent=2) + "\n")
        log.info("registered %s version %s as @challenger (run %s)",
                 params.registry.model_name, version, run_id)

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
