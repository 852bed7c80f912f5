"""Draw the training curves of every accuracy benchmark result into one PNG.

    python benchmarks/plot_accuracy.py            # -> benchmarks/results/accuracy-curves.png

Reads benchmarks/results/accuracy-*.json (written by benchmarks/accuracy.py) that carry a
per-epoch `curve`: validation accuracy solid, training accuracy (on augmented batches) dashed,
the selected epoch marked, the test figure in the legend. One panel per dataset, since
FER2013 and FER+ accuracies are not on the same scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS  # noqa: E402


def load_runs(folder: Path) -> list[tuple[str, dict]]:
    runs = []
    for path in sorted(folder.glob("accuracy-*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        if result.get("curve", {}).get("val_accuracy"):
            runs.append((path.stem.removeprefix("accuracy-"), result))
    return runs


def plot(runs: list[tuple[str, dict]], out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = sorted({r["dataset"] for _, r in runs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5),
                             squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for name, r in (run for run in runs if run[1]["dataset"] == dataset):
            val, train = r["curve"]["val_accuracy"], r["curve"]["accuracy"]
            epochs = range(1, len(val) + 1)
            line, = ax.plot(epochs, val, label=f"{name}: test {r['test_accuracy']:.1%}, "
                                               f"{r['parameters'] / 1e6:.1f} M params")
            ax.plot(epochs, train, "--", color=line.get_color(), alpha=0.5)
            ax.plot(r["best_epoch"], val[r["best_epoch"] - 1], "o", color=line.get_color())
        ax.set(title=f"{dataset}: val (solid), train (dashed), selected epoch (dot)",
               xlabel="epoch", ylabel="accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=RESULTS / "accuracy-curves.png")
    args = parser.parse_args()
    runs = load_runs(args.results)
    if not runs:
        print(f"no accuracy results with per-epoch curves in {args.results}", file=sys.stderr)
        return 1
    print(plot(runs, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
