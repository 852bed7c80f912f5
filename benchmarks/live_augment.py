"""Live-domain augmentations one at a time: does each help on PublicTest and in the live path?

    python benchmarks/live_augment.py --model /path/to/artifacts/model [--epochs 3]

A fine-tuning A/B, because a 2-hour training run per augmentation does not fit these 2
cores: every variant starts from the same trained network (one pass, as trained), trains
--epochs more at a cosine rate from --lr to 0 with the recipe it was trained with
(--profile of params.yaml), adding one of the live-domain augmentations
(train.aug_blur, aug_light, aug_noise, aug_jpeg) at the strength given here, or none (the
control, which separates the augmentation from the extra epochs) or all four. The seed is
the same for every variant, so the batches and the recipe's own augmentation draws match.
Each result is scored as it would be saved (averaged with the mirror when the recipe's
train.flip_average is on) on:

- PublicTest direct crops (the val split of the encoded arrays): the split that decides;
- the fidelity scenes (benchmarks/fidelity.py's FER2013 faces in 640x480 scenes, the
  default detector and alignment) built from PublicTest faces: end-to-end accuracy, and the
  gap to the same faces' direct crops;
- PrivateTest (the test split): reported only.

Writes JSON (benchmarks/results/live-augment.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import PROJECT, SHARED_DATA, write_result  # noqa: E402
from benchmarks.fidelity import live_crops  # noqa: E402
from benchmarks.scenes import CONDITIONS, load_fer, scenes  # noqa: E402
from ferops.config import parse_params  # noqa: E402
from ferops.labels import FER2013_IDS  # noqa: E402

# The strengths the earlier all-four A/B used (benchmarks/README.md, live-e16).
STRENGTHS = {"aug_blur": 0.3, "aug_light": 0.3, "aug_noise": 6.0, "aug_jpeg": 0.3}


def variants(only: list[str] | None) -> dict[str, dict]:
    """name -> the train keys it changes: the control, each augmentation alone, all four."""
    table = {"none": {}, **{k.removeprefix("aug_"): {k: v} for k, v in STRENGTHS.items()},
             "all": dict(STRENGTHS)}
    if only:
        unknown = sorted(set(only) - set(table))
        if unknown:
            raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: "
                             f"{', '.join(table)}")
        table = {k: v for k, v in table.items() if k in only or k == "none"}
    return table


def paired(control: np.ndarray, variant: np.ndarray) -> dict:
    """McNemar's exact test on the same faces: faces the variant gets right that the control
    got wrong (gained), the reverse (lost), and the two-sided p-value of that split."""
    from scipy.stats import binomtest

    gained = int(np.sum(variant & ~control))
    lost = int(np.sum(control & ~variant))
    p = binomtest(gained, gained + lost).pvalue if gained + lost else 1.0
    return {"gained": gained, "lost": lost, "p_value": round(float(p), 4)}


def fine_tune(network, cfg, x, y, n_classes: int, seed: int, epochs: int, lr: float,
              class_weights: np.ndarray | None = None):
    """A copy of `network` trained `epochs` more under cfg's recipe; float32 on return."""
    import keras

    from ferops.training.lr import PlannedLR
    from ferops.training.model import build_model
    from ferops.training.tfdata import make_dataset
    from ferops.training.train import (
        as_float32,
        compile_model,
        online_augment,
        pick_precision,
    )

    keras.utils.set_random_seed(seed)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(pick_precision(cfg.mixed_precision))
    try:
        model = build_model(cfg.arch, n_classes, x.shape[1], cfg.widths, cfg.convs, cfg.dense,
                            cfg.dropout, cfg.spatial_dropout_from)
        model.set_weights(network.get_weights())
        compile_model(model, cfg)
        aug = online_augment(cfg)
        ds = make_dataset(x, y, n_classes, cfg.batch_size, training=True, seed=seed,
                          augment=aug, class_weights=class_weights)
        steps = int(np.ceil(len(x) / cfg.batch_size))
        # No warm-up: the network is trained already; a restart at lr, annealed to 0.
        model.fit(ds, epochs=epochs, verbose=2, shuffle=False,
                  callbacks=[PlannedLR(lr, steps, 0, epochs)])
        return as_float32(model, cfg, n_classes, x.shape[1])
    finally:
        keras.mixed_precision.set_global_policy(previous)


def main(argv=None) -> int:
    import keras

    from ferops.inference import Predictor
    from ferops.training.model import single_pass, with_flip_average

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True,
                    help="a trained model folder (artifacts/model of a project)")
    ap.add_argument("--data", type=Path, help="encoded arrays (default: ../dataset beside it)")
    ap.add_argument("--params", type=Path, default=PROJECT / "params.yaml",
                    help="params.yaml with the recipe the model was trained with")
    ap.add_argument("--profile", default="cpu",
                    help="its train profile (train keys of --params apply over it)")
    ap.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per variant")
    ap.add_argument("--lr", type=float, default=5e-4, help="the restart's peak learning rate")
    ap.add_argument("--only", help="comma-separated variants (the control always runs)")
    ap.add_argument("--max-train", type=int, default=0,
                    help="train on this many images (0: all; the smoke test uses a few)")
    ap.add_argument("--n", type=int, default=0,
                    help="PublicTest faces in fidelity scenes (0: all 3,589)")
    ap.add_argument("--keep", type=Path, help="save each variant's model under this folder")
    ap.add_argument("--fer", type=Path, default=SHARED_DATA / "fer2013" / "fer2013.csv.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="live-augment")
    args = ap.parse_args(argv)
    data = args.data or args.model.parent / "dataset"
    params_path = args.params
    raw = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    raw["train"] = {**(raw.get("train") or {}), "profile": args.profile}
    params = parse_params(raw)
    cfg = params.train
    table = variants(args.only.split(",") if args.only else None)

    network = single_pass(keras.models.load_model(args.model / "model.keras", compile=False))
    label_map = json.loads((args.model / "label_map.json").read_text(encoding="utf-8"))
    classes = [str(c) for c in label_map["classes"]]
    n_classes = len(classes)
    x_train, y_train = np.load(data / "x_train.npy"), np.load(data / "y_train.npy")
    weights = None
    if cfg.balance == "class_weights":  # as the train stage weighs them
        raw_weights = json.loads((data / "class_weights.json").read_text(encoding="utf-8"))
        weights = np.array([raw_weights[c] for c in classes], dtype=np.float32)
    if 0 < args.max_train < len(x_train):
        take = np.random.default_rng(args.seed).permutation(len(x_train))[:args.max_train]
        x_train, y_train = x_train[take], y_train[take]
    splits = {s: (np.load(data / f"x_{s}.npy"), np.load(data / f"y_{s}.npy"))
              for s in ("val", "test")}

    # The live crops do not depend on the model: one detection pass serves every variant.
    faces, codes = load_fer(args.fer, "PublicTest", args.n or 10**9, args.seed)
    y_live = np.array([classes.index(FER2013_IDS[c]) for c in codes])
    frames = scenes(faces, CONDITIONS["fidelity"], args.seed + 1)
    found, crops, ms = live_crops(frames, params.faces)

    def score(model) -> tuple[dict, dict]:
        """Figures, and each face's right/wrong (for the paired test against the control)."""
        served = with_flip_average(model) if cfg.flip_average else model
        p = Predictor(served, classes, "variant")
        right = {s: p.probabilities(x).argmax(axis=1) == y for s, (x, y) in splits.items()}
        out = {"public_test_accuracy": round(float(right["val"].mean()), 4),
               "private_test_accuracy": round(float(right["test"].mean()), 4)}
        live_e2e = np.zeros(len(frames), bool)
        if not found:  # no face detected (only in tiny smoke data): nothing to compare
            return ({**out, "fidelity_end_to_end": 0.0, "fidelity_on_found": None,
                     "fidelity_direct_on_found": None, "fidelity_gap_points": None},
                    {"public": right["val"], "fidelity": live_e2e})
        direct = p.probabilities(faces).argmax(axis=1) == y_live
        live = p.probabilities(crops).argmax(axis=1) == y_live[found]
        live_e2e[found] = live
        out.update({
            "fidelity_end_to_end": round(float(live.sum()) / len(frames), 4),
            "fidelity_on_found": round(float(live.mean()), 4),
            "fidelity_direct_on_found": round(float(direct[found].mean()), 4),
            "fidelity_gap_points": round(100 * float(direct[found].mean() - live.mean()), 2)})
        return out, {"public": right["val"], "fidelity": live_e2e}

    results, per_face = {}, {}
    results["start"], per_face["start"] = score(network)
    print("start", results["start"], flush=True)
    for name, keys in tqdm(table.items(), desc="variants", unit="variant", disable=None):
        started = time.perf_counter()
        tuned = fine_tune(network, cfg.replace(**keys) if keys else cfg, x_train, y_train,
                          n_classes, args.seed, args.epochs, args.lr, weights)
        seconds = round(time.perf_counter() - started)
        figures, per_face[name] = score(tuned)
        results[name] = {"changes": keys, "train_seconds": seconds, **figures}
        if args.keep:
            folder = args.keep / name
            folder.mkdir(parents=True, exist_ok=True)
            (with_flip_average(tuned) if cfg.flip_average else tuned).save(
                folder / "model.keras")
            (folder / "label_map.json").write_text(json.dumps(label_map, indent=2) + "\n")
        print(name, results[name], flush=True)
        keras.backend.clear_session()
    for name in results:
        if name != "none":
            results[name]["vs_none"] = {k: paired(per_face["none"][k], per_face[name][k])
                                        for k in ("public", "fidelity")}

    control = results["none"]
    print(f"\n{'variant':8s} {'PublicTest':>10s} {'vs none':>8s} {'p':>6s} {'live e2e':>9s} "
          f"{'vs none':>8s} {'p':>6s} {'gap':>6s} {'PrivateTest':>11s}")
    for name, r in results.items():
        vs = r.get("vs_none", {})
        p_pub, p_live = (f"{vs[k]['p_value']:6.3f}" if vs else f"{'':6s}"
                         for k in ("public", "fidelity"))
        print(f"{name:8s} {r['public_test_accuracy']:10.1%} "
              f"{100 * (r['public_test_accuracy'] - control['public_test_accuracy']):+8.1f} "
              f"{p_pub} {r['fidelity_end_to_end']:9.1%} "
              f"{100 * (r['fidelity_end_to_end'] - control['fidelity_end_to_end']):+8.1f} "
              f"{p_live} {r['fidelity_gap_points'] or float('nan'):6.1f} "
              f"{r['private_test_accuracy']:11.1%}")
    out = write_result(args.name, {
        "model": str(args.model), "params": str(params_path), "profile": cfg.profile,
        "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
        "train_images": len(x_train), "flip_average": cfg.flip_average,
        "fidelity": {"faces": len(frames), "source": "PublicTest", "recall":
                     round(len(found) / len(frames), 4), "ms_per_scene": round(ms, 2),
                     "condition": vars(CONDITIONS["fidelity"])},
        "results": results})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
