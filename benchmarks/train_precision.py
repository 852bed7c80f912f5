"""Training throughput of the cpu-profile CNN in float32 and mixed bfloat16, side by side.

    python benchmarks/train_precision.py [--profile cpu] [--steps 30] [--rounds 3]

Each measurement is a fresh process (the Keras dtype policy is process-global) that trains
the profile's model on random 48x48 faces through the real tf.data pipeline with on-line
augmentation, as `ferops train` does. The two precisions alternate round by round, so
machine noise hits both alike; the JSON has every round and the median ratio. The default
`mixed_precision: auto` uses bfloat16 on CPUs with bf16 instructions because of this figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import PROJECT, write_result  # noqa: E402

# One measurement: warm up (graph tracing), then time `steps` training batches.
ONE = """
import json, sys, time
import numpy as np, keras
from ferops.config import load_params
from ferops.training.model import build_model
from ferops.training.tfdata import OnlineAugment, make_dataset
from ferops.training.train import compile_model
policy, steps, params = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keras.mixed_precision.set_global_policy(policy)
cfg = load_params(params).train
rng = np.random.default_rng(0)
n = cfg.batch_size * (steps + 3)
x = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
y = rng.integers(0, 7, n)
aug = OnlineAugment(flip=cfg.aug_flip, rotate_deg=cfg.aug_rotate_deg, shift=cfg.aug_shift,
                    zoom=cfg.aug_zoom, erase=cfg.aug_erase)
ds = make_dataset(x, y, 7, cfg.batch_size, training=True, seed=0, augment=aug)
model = compile_model(build_model(cfg.arch, 7, 48, cfg.widths, cfg.convs, cfg.dense,
                                  cfg.dropout, cfg.spatial_dropout_from), cfg)
model.fit(ds.take(3), epochs=1, verbose=0)
start = time.perf_counter()
model.fit(ds.skip(3), epochs=1, verbose=0)
seconds = time.perf_counter() - start
print(json.dumps({"policy": policy, "images_per_s": steps * cfg.batch_size / seconds,
                  "parameters": model.count_params()}))
"""


def measure(policy: str, params: Path, steps: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", ONE, policy, str(steps), str(params)],
                          capture_output=True, text=True, cwd=PROJECT, check=False)
    if proc.returncode:
        raise SystemExit(f"{policy} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _round(pair: dict) -> dict:
    ratio = pair["mixed_bfloat16"]["images_per_s"] / pair["float32"]["images_per_s"]
    return {"float32": round(pair["float32"]["images_per_s"], 1),
            "mixed_bfloat16": round(pair["mixed_bfloat16"]["images_per_s"], 1),
            "ratio": round(ratio, 3), "parameters": pair["float32"]["parameters"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="train profile of params.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="float32/bfloat16 pairs")
    args = parser.parse_args()
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    raw["train"] = {"profile": args.profile}
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        for r in range(args.rounds):
            pair = {p: measure(p, params, args.steps) for p in ("float32", "mixed_bfloat16")}
            rounds.append(_round(pair))
            print(f"round {r + 1}/{args.rounds}: {rounds[-1]}", flush=True)
    result = {
        "profile": args.profile, "steps": args.steps,
        "parameters": rounds[0]["parameters"],
        "unit": "training images/s (batch of the profile, on-line augmentation)",
        "rounds": rounds,
        "median_float32": statistics.median(r["float32"] for r in rounds),
        "median_bfloat16": statistics.median(r["mixed_bfloat16"] for r in rounds),
        "median_ratio_bf16_over_f32": statistics.median(r["ratio"] for r in rounds),
    }
    print(write_result(f"train-precision-{args.profile}", result).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
