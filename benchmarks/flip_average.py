"""Flip averaging (train.flip_average): what it adds to accuracy and costs per face.

    python benchmarks/flip_average.py --model /path/to/artifacts/model [--rounds 5]

One trained model, its single network and the same network averaged with the mirror image,
side by side in one run: accuracy on the val split (FER2013 PublicTest: the split the choice
is made on) and the test split (PrivateTest: reported only), from the encoded arrays beside
the model (`artifacts/dataset`); then the time of one face and of a batch of 128 through
the service's Predictor (ferops.inference), the two models alternating round by round so
machine noise hits both alike. Writes JSON (benchmarks/results/flip-average.json).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import write_result  # noqa: E402
from ferops.inference import Predictor  # noqa: E402
from ferops.training.model import single_pass, with_flip_average  # noqa: E402


def ms_per_call(predictor: Predictor, x: np.ndarray, calls: int) -> float:
    predictor.probabilities(x)  # trace outside the timing
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predictor.probabilities(x)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    import keras

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a model folder (artifacts/model)")
    ap.add_argument("--data", type=Path, help="encoded arrays (default: ../dataset beside it)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=50, help="timed calls per round and size")
    ap.add_argument("--name", default="flip-average")
    args = ap.parse_args(argv)
    data = args.data or args.model.parent / "dataset"
    loaded = keras.models.load_model(args.model / "model.keras", compile=False)
    network = single_pass(loaded)
    models = {"single": network, "flip_average": with_flip_average(network)}
    predictors = {k: Predictor(m, [str(i) for i in range(m.output_shape[-1])], k)
                  for k, m in models.items()}
    accuracy = {}
    for split in ("val", "test"):
        x, y = np.load(data / f"x_{split}.npy"), np.load(data / f"y_{split}.npy")
        for name, p in predictors.items():
            right = p.probabilities(x).argmax(axis=1) == y
            accuracy.setdefault(name, {})[split] = round(float(right.mean()), 4)
    x_val = np.load(data / "x_val.npy")
    timing = {name: {"ms_one_face": [], "ms_batch_128": []} for name in predictors}
    for _ in range(args.rounds):
        for name, p in predictors.items():
            timing[name]["ms_one_face"].append(round(ms_per_call(p, x_val[:1], args.calls), 3))
            timing[name]["ms_batch_128"].append(
                round(ms_per_call(p, x_val[:128], max(5, args.calls // 10)), 2))
    medians = {name: {k: statistics.median(v) for k, v in t.items()}
               for name, t in timing.items()}
    result = {
        "model": str(args.model), "parameters": int(network.count_params()),
        "protocol": "choose on val (PublicTest), report test (PrivateTest)",
        "n_val": int(len(x_val)), "accuracy": accuracy, "timing_rounds": timing,
        "timing_median": medians,
        "cost_ratio_one_face": round(medians["flip_average"]["ms_one_face"]
                                     / medians["single"]["ms_one_face"], 2),
        "cost_ratio_batch_128": round(medians["flip_average"]["ms_batch_128"]
                                      / medians["single"]["ms_batch_128"], 2)}
    for name in predictors:
        print(f"{name:13s} PublicTest {accuracy[name]['val']:.2%}  PrivateTest "
              f"{accuracy[name]['test']:.2%}  one face {medians[name]['ms_one_face']:.2f} ms"
              f"  128 faces {medians[name]['ms_batch_128']:.1f} ms")
    print(f"wrote {write_result(args.name, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
