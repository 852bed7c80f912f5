"""Stage 6, train: a Keras CNN on artifacts/dataset, selected on the val split.

Resumable: a run killed at any point (even SIGKILL mid-epoch) continues from its last
checkpoint when rerun with the same command. Uses every GPU present (MirroredStrategy,
mixed precision) and the CPU otherwise; the same command on both.

    python -m ferops.training.train [--data artifacts/dataset] [--out artifacts/model]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferops.config import TrainConfig, load_params
from ferops.errors import DataError
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: object            # keras.Model with the best val weights
    history: list[dict]      # per epoch: loss, accuracy, val_*, learning_rate, planned_epochs
    best_epoch: int
    seconds: float
    device: str
    precision: str = "float32"  # the Keras dtype policy it trained under
    n_train: int = 0            # training images per epoch


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return np.load(data_dir / f"x_{split}.npy"), np.load(data_dir / f"y_{split}.npy")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); Linux only."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(mixed_precision: str) -> str:
    """The Keras dtype policy: float16 on GPUs; bfloat16 on CPUs that compute it natively.

    Measured on the 2-core AVX512-BF16 EPYC here (benchmarks/results/train-precision-cpu.json):
    bfloat16 trains the cpu-profile CNN ~1.4x faster than float32 (epoch times of full
    FER2013 runs; the side-by-side rounds there are noisier). Where the CPU lacks
    bf16 instructions, TensorFlow emulates it and it is slower, so auto stays float32.
    """
    import tensorflow as tf
    if mixed_precision == "off":
        return "float32"
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if mixed_precision == "on" or cpu_has_bf16():
        return "mixed_bfloat16"
    return "float32"


def pick_strategy():
    """(strategy, device description): MirroredStrategy over all GPUs, else the default (CPU)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), f"{len(gpus)} GPUs (MirroredStrategy)"
    if gpus:
        return tf.distribute.get_strategy(), f"1 GPU ({gpus[0].name})"
    return tf.distribute.get_strategy(), "CPU"


def as_float32(model, cfg: TrainConfig, n_classes: int, size: int):
    """A float32 copy of a mixed-precision model: what is saved, evaluated and served.

    The variables are float32 under every policy, so the copy is exact; it computes in
    float32 on any machine (a bf16 model would be emulated, slowly, on CPUs without bf16).
    """
    from ferops.training.model import build_model
    if model.dtype_policy.name == "float32":
        return model
    copy = build_model(cfg.arch, n_classes, size, cfg.widths, cfg.convs, cfg.dense,
                       cfg.dropout, cfg.spatial_dropout_from)
    copy.set_weights(model.get_weights())
    return copy


def subsample(n: int, seed: int, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same seeded random n rows of each array (n <= 0 or >= len: all), order kept."""
    if n <= 0 or n >= len(arrays[0]):
        return arrays
    take = np.sort(np.random.default_rng(seed).permutation(len(arrays[0]))[:n])
    return tuple(a[take] for a in arrays)


def load_targets(data_dir: Path, y: np.ndarray) -> np.ndarray:
    """The training split's soft targets (encode's t_train.npy), checked against y."""
    path = data_dir / "t_train.npy"
    if not path.is_file():
        raise DataError(f"{path} not found: train.soft_labels needs the encode stage of "
                        "this version (dvc repro encode)")
    targets = np.load(path)
    if targets.shape[0] != len(y):
        raise DataError(f"{path} has {targets.shape[0]} rows for {len(y)} training labels: "
                        "rerun the encode stage")
    return targets


def run_fingerprint(cfg: TrainConfig, seed: int, *arrays: np.ndarray | None) -> str:
    """Identifies (config, seed, training data): only a matching checkpoint is resumed."""
    import keras
    # The dtype policy too: a bf16 run's checkpoint must not resume on a float32 machine.
    policy = keras.mixed_precision.global_policy().name
    h = hashlib.sha256(repr((cfg.model_dump(), seed, policy)).encode())
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def online_augment(cfg: TrainConfig):
    """The recipe's batched on-line augmentation (training and benchmarks build it alike)."""
    from ferops.training.tfdata import OnlineAugment
    return OnlineAugment(flip=cfg.aug_flip, rotate_deg=cfg.aug_rotate_deg, shift=cfg.aug_shift,
                         zoom=cfg.aug_zoom, erase=cfg.aug_erase, mixup=cfg.aug_mixup,
                         blur=cfg.aug_blur, light=cfg.aug_light, noise=cfg.aug_noise,
                         jpeg=cfg.aug_jpeg)


def compile_model(model, cfg: TrainConfig):
    """Optimizer, loss and metrics. The learning rate is set per batch by
    ferops.training.lr.PlannedLR (warm-up, then cosine decay); lr/10 here is only where the
    warm-up starts."""
    import keras
    ema = {"use_ema": cfg.ema_momentum > 0, "ema_momentum": cfg.ema_momentum or 0.99}
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.lr / 10, momentum=0.9, nesterov=True,
                                   weight_decay=cfg.weight_decay, **ema)
    else:
        opt = keras.optimizers.AdamW(cfg.lr / 10, weight_decay=cfg.weight_decay, **ema)
    model.compile(optimizer=opt,
                  loss=keras.losses.CategoricalCrossentropy(
                      from_logits=True, label_smoothing=cfg.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    return model


def train_model(data_dir: Path, cfg: TrainConfig, seed: int, work_dir: Path,
                class_names: list[str]) -> TrainResult:
    """Train on train, select the epoch with the best val accuracy; resume if work_dir has state.

    The returned model is float32 whatever precision it trained in, and averages its
    network with the mirror image when cfg.flip_average (epochs are selected on one pass)."""
    import keras

    keras.utils.set_random_seed(seed)
    strategy, device = pick_strategy()
    policy = pick_precision(cfg.mixed_precision)
    # The policy is process-global: set for this run only (tests and flows train in-process).
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        result = _fit(data_dir, cfg, seed, work_dir, class_names, strategy, device)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    n_classes, size = len(class_names), result.model.input_shape[1]
    model = as_float32(result.model, cfg, n_classes, size)
    if cfg.flip_average:
        from ferops.training.model import with_flip_average
        model = with_flip_average(model)
    return dataclasses.replace(result, model=model, precision=policy)


def _fit(data_dir: Path, cfg: TrainConfig, seed: int, work_dir: Path, class_names: list[str],
         strategy, device: str) -> TrainResult:
    import keras

    from ferops.training.checkpoint import (
        BestCheckpoint,
        ResumeCheckpoint,
        clear_resume,
        load_resume,
    )
    from ferops.training.lr import PlannedLR
    from ferops.training.model import build_model
    from ferops.training.tfdata import make_dataset

    x_train, y_train = load_split(data_dir, "train")
    # Soft targets: the annotators' vote shares (FER+) in place of the one-hot label.
    t_train = load_targets(data_dir, y_train) if cfg.soft_labels else None
    x_train, y_train, *rest = subsample(cfg.max_train_images, seed, x_train, y_train,
                                        *([t_train] if t_train is not None else []))
    t_train = rest[0] if rest else None
    x_val, y_val = load_split(data_dir, "val")
    n_classes = len(class_names)
    weights = None
    if cfg.balance == "class_weights":
        raw = json.loads((data_dir / "class_weights.json").read_text(encoding="utf-8"))
        weights = np.array([raw[c] for c in class_names], dtype=np.float32)
    aug = online_augment(cfg)
    train_ds = make_dataset(x_train, y_train, n_classes, cfg.batch_size, training=True,
                            targets=t_train,
                            seed=seed, augment=aug, class_weights=weights)
    val_ds = make_dataset(x_val, y_val, n_classes, cfg.batch_size, training=False, seed=seed)
    steps = int(np.ceil(len(x_train) / cfg.batch_size))
    resume_dir = work_dir / "resume"
    fingerprint = run_fingerprint(cfg, seed, x_train, y_train, t_train)
    resumed = load_resume(resume_dir, fingerprint)
    # After a resume the best-so-far survives: a worse epoch must not replace it.
    best_cb = BestCheckpoint(work_dir, monitor="val_accuracy")
    with strategy.scope():
        if resumed:
            model, initial_epoch, history = resumed
            log.info("resuming from %s at epoch %d", resume_dir, initial_epoch + 1)
        else:
            model = build_model(cfg.arch, n_classes, x_train.shape[1], cfg.widths, cfg.convs,
                                cfg.dense, cfg.dropout, cfg.spatial_dropout_from)
            compile_model(model, cfg)
            initial_epoch, history = 0, []
            best_cb.clear()  # a stale best of some other run
    resume_cb = ResumeCheckpoint(resume_dir, cfg.checkpoint_every, fingerprint)
    resume_cb.history = list(history)
    # A resumed run keeps its plan (a budget may have shortened it) and the time it has spent.
    lr_cb = PlannedLR(cfg.lr, steps, cfg.warmup_epochs, cfg.epochs,
                      planned=int(history[-1].get("planned_epochs", 0)) if history else None,
                      budget_s=cfg.time_budget_min * 60,
                      spent_s=sum(h.get("epoch_seconds", 0.0) for h in history))
    callbacks = [
        # Before the checkpoint: the epoch's learning rate and plan go into its history entry.
        lr_cb,
        # Before SwapEMAWeights: it must save the raw weights (and the averages in the
        # optimizer state) before the averages are put into the model at the epoch's end.
        resume_cb,
        # Validation runs on the averaged weights; swap_on_epoch keeps them in the model
        # through the callbacks below, so BestCheckpoint saves what was validated.
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if cfg.ema_momentum else []),
        best_cb,
        keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                      patience=cfg.patience),
        keras.callbacks.CSVLogger(str(work_dir / "history.csv"), append=bool(resumed)),
    ]
    start = time.perf_counter()
    work_dir.mkdir(parents=True, exist_ok=True)
    # A progress bar on a terminal; one line per epoch in logs (dvc repro, CI).
    # shuffle=False: the dataset reshuffles itself, seeded (Keras ignores the flag for a
    # tf.data.Dataset anyway, and warned at every run with its default True).
    model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, initial_epoch=initial_epoch,
              callbacks=callbacks, verbose=1 if sys.stderr.isatty() else 2, shuffle=False)
    history = resume_cb.history
    # The epoch the saved best model comes from. (A kill between the resume save and the best
    # save of one epoch loses that epoch as a candidate; the two still agree.)
    saved = best_cb.path is not None and best_cb.path.is_file()
    best_epoch = best_cb.epoch if saved else (
        int(np.argmax([h["val_accuracy"] for h in history])) if history else 0)
    best = keras.models.load_model(best_cb.path) if saved else model
    clear_resume(resume_dir)
    best_cb.clear()  # the next run starts its own selection
    return TrainResult(best, history, best_epoch, time.perf_counter() - start, device,
                       n_train=len(x_train))


def images_per_second(result: TrainResult) -> float | None:
    seconds = sum(h.get("epoch_seconds", 0.0) for h in result.history)
    return round(result.n_train * len(result.history) / seconds, 1) if seconds else None


def write_history_csv(path: Path, history: list[dict]) -> None:
    """Per-epoch metrics for `dvc plots` (epochs numbered from 1)."""
    keys = ["loss", "accuracy", "val_loss", "val_accuracy"]
    lines = ["epoch," + ",".join(keys)]
    lines += [f"{h['epoch'] + 1}," + ",".join(f"{h.get(k, float('nan')):.6f}" for k in keys)
              for h in history]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops train", "Train the CNN on artifacts/dataset (resumable).")
    parser.add_argument("--data", type=Path, default=Path("artifacts/dataset"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/model"))
    parser.add_argument("--work", type=Path, default=Path("artifacts/work"),
                        help="checkpoints for crash-resume (kept until the run completes)")

    def body(args) -> None:
        from ferops.training.model import model_flops

        params = load_params(args.params)
        label_map = json.loads((args.data / "label_map.json").read_text(encoding="utf-8"))
        result = train_model(args.data, params.train, params.seed, args.work,
                             label_map["classes"])
        args.out.mkdir(parents=True, exist_ok=True)
        result.model.save(args.out / "model.keras")
        (args.out / "label_map.json").write_text(json.dumps(label_map, indent=2) + "\n")
        write_history_csv(args.out / "history.csv", result.history)
        summary = {"best_epoch": result.best_epoch + 1, "epochs_run": len(result.history),
                   "val_accuracy": result.history[result.best_epoch]["val_accuracy"]
                   if result.history else None,
                   "train_seconds": round(result.seconds, 1), "device": result.device,
                   "precision": result.precision,
                   "flip_average": params.train.flip_average,
                   "parameters": int(result.model.count_params()),
                   "flops_per_image": model_flops(result.model),
                   # Training throughput: images per second of epoch time (forward and
                   # backward on augmented batches, plus that epoch's validation).
                   "train_images_per_s": images_per_second(result),
                   "history": result.history}
        (args.out / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("best epoch %d: val accuracy %.4f (%s, %.0f s)", summary["best_epoch"],
                 summary["val_accuracy"] or 0, result.device, result.seconds)

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
