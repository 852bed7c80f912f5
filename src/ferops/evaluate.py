"""Stage 7, evaluate: accuracy, macro-F1, per-class scores, confusion matrix, calibration.

Every evaluation split the data has (val = FER2013 PublicTest, test = PrivateTest) is scored.
Temperature scaling is fitted on val only. A model that averages itself with the mirror image
(train.flip_average, the default) is scored as it is served; its single network is also scored
on test, as `test_single_pass`, to compare with models without it. For those, flip test-time
augmentation is optional and reported under its own name (`test_tta_flip`), never mixed into
the plain figures.

    python -m ferops.evaluate [--model artifacts/model] [--data artifacts/dataset]
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from ferops.config import load_params
from ferops.metrics import classification_report, fit_temperature
from ferops.predict import predict_logits
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def evaluate_model(model, data_dir: Path, classes: list[str], flip_tta: bool) -> dict:
    """{split: report} for val and test (and test_single_pass or test_tta_flip), with a
    val-fitted temperature."""
    from ferops.training.model import single_pass, with_flip_average

    x_val, y_val = np.load(data_dir / "x_val.npy"), np.load(data_dir / "y_val.npy")
    val_logits = predict_logits(model, x_val)
    temperature = fit_temperature(val_logits, y_val) if len(y_val) else 1.0
    results = {"temperature": temperature, "flip_tta": flip_tta,
               "val": classification_report(val_logits, y_val, classes, temperature)}
    x_test, y_test = np.load(data_dir / "x_test.npy"), np.load(data_dir / "y_test.npy")
    results["test"] = classification_report(predict_logits(model, x_test), y_test, classes,
                                            temperature)
    network = single_pass(model)
    if network is not model:
        # Same temperature: it shows what the averaging adds, not a recalibrated model.
        results["test_single_pass"] = classification_report(
            predict_logits(network, x_test), y_test, classes, temperature)
    elif flip_tta:
        results["test_tta_flip"] = classification_report(
            predict_logits(with_flip_average(model), x_test), y_test, classes, temperature)
    return results


def flat_metrics(results: dict) -> dict:
    """The headline numbers for `dvc metrics show` (one level, no per-class detail)."""
    out = {"temperature": round(results["temperature"], 4)}
    for split in ("val", "test", "test_single_pass", "test_tta_flip"):
        if split in results:
            r = results[split]
            for key in ("accuracy", "macro_f1", "ece", "ece_calibrated", "n"):
                out[f"{split}_{key}"] = round(r[key], 5) if isinstance(r[key], float) else r[key]
            for row in r.get("risk_coverage", []):
                if row["coverage"] < 1.0:  # 100 % coverage is the plain accuracy
                    out[f"{split}_accuracy_at_{round(row['coverage'] * 100)}"] = round(
                        row["accuracy"], 5)
    return out


def write_confusion_csv(path: Path, cm: list[list[int]], classes: list[str]) -> None:
    """One row per test image (actual, predicted): the format `dvc plots` draws as a matrix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["actual", "predicted"])
        for i, row in enumerate(cm):
            for j, count in enumerate(row):
                writer.writerows([[classes[i], classes[j]]] * count)


def plot_confusion(path: Path, cm: list[list[int]], classes: list[str], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(m[i, j])})", ha="center", va="center",
                    fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops evaluate", "Score the trained model on val and test.")
    parser.add_argument("--model", type=Path, default=Path("artifacts/model"))
    parser.add_argument("--data", type=Path, default=Path("artifacts/dataset"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/eval"))

    def body(args) -> None:
        import keras
        params = load_params(args.params)
        classes = json.loads((args.data / "label_map.json").read_text())["classes"]
        model = keras.models.load_model(args.model / "model.keras")
        results = evaluate_model(model, args.data, classes, params.evaluate.flip_tta)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "metrics.json").write_text(json.dumps(flat_metrics(results), indent=2) + "\n")
        write_confusion_csv(args.out / "plots/confusion_test.csv", results["test"][
            "confusion_matrix"], classes)
        plot_confusion(args.out / "confusion_test.png", results["test"]["confusion_matrix"],
                       classes, f"test accuracy {results['test']['accuracy']:.3f}")
        log.info("val accuracy %.4f, test accuracy %.4f (macro-F1 %.4f)",
                 results["val"]["accuracy"], results["test"]["accuracy"],
                 results["test"]["macro_f1"])

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
