"""ferops.training.lr: the learning-rate curve, and a time budget that shortens a run without
leaving it un-annealed."""

from __future__ import annotations

import numpy as np
import pytest

from ferops.training.lr import ALPHA, PlannedLR, cosine_lr, epochs_that_fit


def test_the_curve_is_keras_cosine_decay_with_warmup():
    import keras
    peak, warmup, total = 0.002, 50, 1000
    reference = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10, decay_steps=total - warmup, alpha=ALPHA,
        warmup_target=peak, warmup_steps=warmup)
    for step in (0, 1, 25, 49, 50, 51, 300, 700, 999, 1000):
        assert cosine_lr(step, total, warmup, peak) == pytest.approx(
            float(reference(step)), rel=1e-5), step
    assert cosine_lr(5000, total, warmup, peak) == pytest.approx(ALPHA * peak)  # stays at floor


@pytest.mark.parametrize("done, spent, budget, epoch_s, most, want", [
    (1, 100, 1000, 100, 46, 10),   # 900 s left: 9 more
    (1, 100, 1000, 300, 46, 4),    # 900 s left at 300 s each: 3 more
    (5, 500, 100_000, 100, 46, 46),  # plenty: never more than configured
    (5, 1200, 1000, 100, 46, 5),   # over budget: stop where it is
    (3, 250, 1000, 0.0, 10, 10),   # no timing yet: no change
])
def test_epochs_that_fit(done, spent, budget, epoch_s, most, want):
    assert epochs_that_fit(done, spent, budget, epoch_s, most) == want


class FakeClock:
    """A clock for PlannedLR (read at each epoch's begin and end): epochs take `epoch_s`."""

    def __init__(self, epoch_s: float):
        self.now, self.epoch_s, self.calls = 0.0, epoch_s, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:  # begin, end, begin, end, ...
            self.now += self.epoch_s
        return self.now


def _tiny_fit(callback: PlannedLR, epochs: int):
    import keras
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.AdamW(0.001),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen: list[float] = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda b, logs: seen.append(float(model.optimizer.learning_rate)))
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0,
                        callbacks=[callback, record])
    return history.history, seen


def test_a_time_budget_ends_the_run_early_and_annealed():
    # 10 epochs of 4 batches planned, but only 200 s for epochs that take 60 s: 3 fit.
    callback = PlannedLR(peak=0.01, steps_per_epoch=4, warmup_epochs=1, epochs=10,
                         budget_s=200.0, clock=FakeClock(epoch_s=60.0))
    history, rates = _tiny_fit(callback, epochs=10)
    assert len(history["loss"]) == 3 and history["planned_epochs"] == [3, 3, 3]
    # Re-planned after epoch 1, the cosine was re-stretched: the last batch ran near the
    # floor and the rate fell all the way (not cut off at a high rate by a timer).
    assert rates[-1] == pytest.approx(cosine_lr(11, 12, 4, 0.01))
    assert rates[-1] < 0.1 * 0.01
    assert history["learning_rate"][-1] == pytest.approx(ALPHA * 0.01)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))


def test_without_a_budget_the_run_follows_the_configured_plan():
    callback = PlannedLR(peak=0.01, steps_per_epoch=4, warmup_epochs=1, epochs=5)
    history, rates = _tiny_fit(callback, epochs=5)
    assert len(history["loss"]) == 5 and set(history["planned_epochs"]) == {5}
    assert rates == pytest.approx([cosine_lr(s, 20, 4, 0.01) for s in range(20)])


def test_a_resumed_run_keeps_its_plan_and_spent_time():
    # As after a crash: 150 s already spent, a plan of 4 epochs from before.
    callback = PlannedLR(peak=0.01, steps_per_epoch=4, warmup_epochs=1, epochs=10,
                         planned=4, budget_s=300.0, spent_s=150.0,
                         clock=FakeClock(epoch_s=60.0))
    history, _ = _tiny_fit(callback, epochs=10)
    # 150 + 60 = 210 s after its first epoch here: one more fits (270 s), not the full plan.
    assert history["planned_epochs"][0] == 2 and len(history["loss"]) == 2
