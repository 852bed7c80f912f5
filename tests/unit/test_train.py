"""ferops.training.train on a tiny dataset: what is validated is what is selected and saved
(with and without weight averaging and mixup), a crash-resume checkpoint keeps the averages, and
mixed precision (the GPU profile's path; bfloat16 on this CPU) trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferops.config import TrainConfig
from ferops.synthetic import CLASSES
from tests.factories import PARAMS, make_dataset

TINY = PARAMS.train.replace(widths=(8, 16), convs=1, dense=16, dropout=0.2, epochs=3, batch_size=32,
                   patience=10, balance="none", checkpoint_every=0, lr=0.005)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    make_dataset(out)
    return out


@pytest.mark.parametrize("ema, mixup", [(0.0, 0.0), (0.8, 0.0), (0.8, 0.3)])
def test_the_selected_model_scores_what_its_epoch_logged(dataset: Path, tmp_path: Path, ema,
                                                         mixup):
    from ferops.training.model import single_pass
    from ferops.training.train import load_split, train_model
    # float32: the logged figure must be reproduced exactly (bf16 would agree only closely).
    cfg = TrainConfig(**{**TINY.__dict__, "ema_momentum": ema, "aug_mixup": mixup,
                         "mixed_precision": "off"})
    result = train_model(dataset, cfg, 7, tmp_path / "work", list(CLASSES))
    x, y = load_split(dataset, "val")
    # Epochs are selected on one pass; the returned model averages that network with the
    # mirror image (train.flip_average).
    network = single_pass(result.model)
    assert network is not result.model
    predicted = np.argmax(network.predict(x, verbose=0), axis=1)
    logged = result.history[result.best_epoch]["val_accuracy"]
    # With EMA on, a checkpoint of the raw weights (the wrong callback order) would score
    # differently from the averaged weights that were validated.
    assert np.mean(predicted == y) == pytest.approx(logged, abs=1e-6)
    assert network.optimizer.use_ema is (ema > 0)


def test_a_resume_checkpoint_keeps_the_weight_averages(dataset: Path, tmp_path: Path):
    import keras

    from ferops.training.checkpoint import ResumeCheckpoint, load_resume
    from ferops.training.model import build_model
    from ferops.training.train import compile_model, load_split
    cfg = TrainConfig(**{**TINY.__dict__, "ema_momentum": 0.8})
    x, y = load_split(dataset, "train")
    model = compile_model(build_model("vgg", len(CLASSES), 48, cfg.widths, cfg.convs, cfg.dense,
                                      cfg.dropout), cfg)
    model.fit(x, keras.utils.to_categorical(y, len(CLASSES)), batch_size=32, epochs=1,
              verbose=0, callbacks=[ResumeCheckpoint(tmp_path, fingerprint="f")])
    restored, next_epoch, _ = load_resume(tmp_path, "f")
    assert next_epoch == 1
    # Keras keeps the averages as optimizer variables: they must come back, not restart
    # from the raw weights (which would silently shorten the average after every crash).
    # (fit() ends by copying the averages into the model; the averages themselves stay.)
    saved = [v.numpy() for v in model.optimizer._model_variables_moving_average]
    loaded = [v.numpy() for v in restored.optimizer._model_variables_moving_average]
    assert len(saved) == len(loaded) == len(restored.trainable_variables)
    for a, b in zip(saved, loaded, strict=True):
        np.testing.assert_array_equal(a, b)
    # The checkpoint holds the raw weights for training to go on from, not the averages.
    assert any(not np.array_equal(a, w.numpy()) for a, w in
               zip(loaded, restored.trainable_variables, strict=True))
    assert json.loads((tmp_path / "resume.json").read_text())["next_epoch"] == 1


def test_mixed_precision_trains_and_returns_a_float32_model(dataset: Path, tmp_path: Path):
    import keras

    from ferops.training.train import train_model
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 2, "mixed_precision": "on"})
    result = train_model(dataset, cfg, 7, tmp_path / "work", list(CLASSES))
    assert result.precision == "mixed_bfloat16"  # no GPU here: the CPU's mixed type
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # What is saved and served computes in float32 on any machine (the network inside the
    # flip average too) ...
    from ferops.training.model import single_pass
    assert cfg.flip_average and single_pass(result.model) is not result.model
    for model in (result.model, single_pass(result.model)):
        assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    # ... and the process-global policy is back to what it was for the next run.
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_run_past_its_time_budget_stops_with_its_best_model(dataset: Path, tmp_path: Path):
    from ferops.training.train import train_model
    # A budget of 0.06 s is spent by the first epoch: the run stops there, not after 5.
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 5, "time_budget_min": 0.001})
    result = train_model(dataset, cfg, 7, tmp_path / "work", list(CLASSES))
    assert len(result.history) == 1 and result.history[0]["planned_epochs"] == 1
    assert result.model is not None and result.best_epoch == 0
    assert not list((tmp_path / "work").glob("best*"))  # the selection is cleared after a run


def test_float32_copy_keeps_the_weights_and_predictions():
    import keras

    from ferops.training.model import build_model
    from ferops.training.train import as_float32
    cfg = TrainConfig(**{**TINY.__dict__, "epochs": 1})
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_model(cfg.arch, 3, 48, cfg.widths, cfg.convs, cfg.dense, cfg.dropout)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = as_float32(mixed, cfg, 3, 48)
    assert copy is not mixed and copy.get_layer("b0c0_conv").compute_dtype == "float32"
    for a, b in zip(mixed.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).integers(0, 256, (8, 48, 48, 1)).astype(np.float32)
    want, got = np.asarray(mixed(x, training=False), np.float32), copy.predict(x, verbose=0)
    # bfloat16 keeps 8 mantissa bits: the two agree to bf16 precision, not exactly.
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max() + 1e-3)
    assert as_float32(copy, cfg, 3, 48) is copy  # already float32: nothing to convert


def test_precision_choice_on_this_machine():
    """Right on a CPU machine and on the GPU profile's own target machine alike."""
    import tensorflow as tf

    from ferops.training.train import cpu_has_bf16, pick_precision
    assert pick_precision("off") == "float32"
    if tf.config.list_physical_devices("GPU"):
        assert pick_precision("on") == pick_precision("auto") == "mixed_float16"
    else:
        assert pick_precision("on") == "mixed_bfloat16"
        assert pick_precision("auto") == ("mixed_bfloat16" if cpu_has_bf16() else "float32")


MIRRORED = """
import sys
from pathlib import Path
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ferops.training import train
from ferops.config import TrainConfig, load_params
from ferops.synthetic import CLASSES
# No GPUs here: two logical CPUs stand in for them, so train_model runs under the same
# MirroredStrategy it would use on a multi-GPU machine.
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
train.pick_strategy = lambda: (strategy, "2 logical CPUs (MirroredStrategy)")
import ferops.training.model
build, in_scope = ferops.training.model.build_model, []
def spy(*args, **kwargs):  # the model must be built inside the strategy's scope
    in_scope.append(tf.distribute.get_strategy() is strategy)
    return build(*args, **kwargs)
ferops.training.model.build_model = spy
cfg = load_params().train.replace(widths=(8, 16), convs=1, dense=16, epochs=2, batch_size=32,
                                  patience=10, balance="none", checkpoint_every=0,
                                  ema_momentum=0.8)
result = train.train_model(Path(sys.argv[1]), cfg, 7, Path(sys.argv[2]), list(CLASSES))
print("replicas", strategy.num_replicas_in_sync, "epochs", len(result.history),
      "loss", result.history[-1]["loss"], "in_scope", in_scope[0])
# (a mixed-precision run builds a second, float32 copy for saving; that one needs no scope)
"""


def test_training_runs_under_mirrored_strategy(dataset: Path, tmp_path: Path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(dataset), str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    words = proc.stdout.strip().splitlines()[-1].split()  # Keras prints epochs above it
    assert words[:4] == ["replicas", "2", "epochs", "2"]
    assert np.isfinite(float(words[5]))
    assert words[6:] == ["in_scope", "True"]


def test_best_checkpoint_survives_a_kill_and_a_resume(tmp_path: Path):
    """Each best is a whole file named by an atomically replaced pointer; a resumed callback
    keeps the best so far, and a half-written orphan from a kill is never read."""
    import keras

    from ferops.training.checkpoint import BestCheckpoint
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    first = BestCheckpoint(tmp_path)
    first.set_model(model)
    first.on_epoch_end(0, {"val_accuracy": 0.5})
    first.on_epoch_end(1, {"val_accuracy": 0.4})  # worse: kept out
    first.on_epoch_end(2, {"val_accuracy": 0.6})
    assert (first.epoch, first.value, first.path.name) == (2, 0.6, "best-e2.keras")
    assert sorted(p.name for p in tmp_path.glob("best*")) == ["best-e2.keras", "best.json"]
    (tmp_path / "tmp-best-e3.keras").write_bytes(b"PK\x03")  # killed mid-save of epoch 3
    resumed = BestCheckpoint(tmp_path)
    resumed.set_model(model)
    assert (resumed.epoch, resumed.value) == (2, 0.6)
    resumed.on_epoch_end(3, {"val_accuracy": 0.55})  # worse than the best before the kill
    assert resumed.epoch == 2 and keras.models.load_model(resumed.path) is not None
    resumed.clear()
    assert not list(tmp_path.iterdir())


def test_soft_labels_train_from_the_encoded_targets_and_refuse_a_dataset_without(
        dataset: Path, tmp_path: Path):
    import shutil

    from ferops.errors import DataError
    from ferops.training.train import train_model
    cfg = TrainConfig(**{**TINY.__dict__, "soft_labels": True, "epochs": 1,
                         "mixed_precision": "off"})
    result = train_model(dataset, cfg, 7, tmp_path / "work", list(CLASSES))
    assert len(result.history) == 1 and np.isfinite(result.history[0]["loss"])
    older = tmp_path / "older"
    shutil.copytree(dataset, older)
    (older / "t_train.npy").unlink()            # a dataset encoded before soft labels
    with pytest.raises(DataError, match="t_train.npy not found"):
        train_model(older, cfg, 7, tmp_path / "work2", list(CLASSES))
