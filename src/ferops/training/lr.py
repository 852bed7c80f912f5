"""The learning-rate plan: linear warm-up, then cosine decay to 1 % of the peak, set per batch.

A callback rather than a keras LearningRateSchedule, so that the plan can change while the run
goes on. With a time budget (train.time_budget_min) the run re-plans after every epoch how many
epochs it can finish on this machine at its current speed, and the cosine is re-stretched to
end there: the last epochs still anneal. A run merely cut off by a timer would stop at a high
learning rate, with a worse model. The step comes from the optimizer, so a resumed run goes on
along the same curve.
"""

from __future__ import annotations

import logging
import math
import statistics
import time

import keras

log = logging.getLogger(__name__)

ALPHA = 0.01  # the final learning rate, as a fraction of the peak


def cosine_lr(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """The rate at `step`: from peak/10 up to peak over warm-up, then cosine down to ALPHA*peak.

    (The same curve as keras' CosineDecay with warmup_target; past total_steps it stays at
    the floor.)"""
    if step < warmup_steps:
        start = peak / 10
        return start + (peak - start) * step / warmup_steps
    done = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak * (ALPHA + (1 - ALPHA) * 0.5 * (1 + math.cos(math.pi * done)))


def epochs_that_fit(done: int, spent_s: float, budget_s: float, epoch_s: float, most: int) -> int:
    """How many epochs in all a run can train within budget_s (at least `done`, at most `most`)."""
    more = math.floor(max(0.0, budget_s - spent_s) / epoch_s) if epoch_s > 0 else most
    return max(done, min(most, done + more))


class PlannedLR(keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every batch, and keeps a time budget.

    `planned` is how many epochs the run means to train (cfg.epochs, or what a resumed run had
    re-planned). With budget_s > 0, after each epoch the plan becomes what fits in what is left
    of the budget at the mean speed of the last ten epochs (never more than `epochs`); the run
    stops when it reaches the plan. `spent_s` is training time already spent (a resumed run).
    Each epoch's logs get `learning_rate` and `planned_epochs`, so the plan is in the history.
    """

    def __init__(self, peak: float, steps_per_epoch: int, warmup_epochs: int, epochs: int,
                 planned: int | None = None, budget_s: float = 0.0, spent_s: float = 0.0,
                 clock=time.perf_counter):
        super().__init__()
        self.peak, self.steps_per_epoch, self.epochs = peak, steps_per_epoch, epochs
        self.planned = min(epochs, planned or epochs)
        self.budget_s, self.spent_s = budget_s, spent_s
        self.warmup_steps = min(warmup_epochs * steps_per_epoch,
                                max(1, epochs * steps_per_epoch) // 2)
        self.epoch_seconds: list[float] = []
        self.clock = clock  # replaceable in tests
        self._step = 0

    def rate(self, step: int) -> float:
        return cosine_lr(step, self.planned * self.steps_per_epoch, self.warmup_steps, self.peak)

    def on_train_begin(self, logs=None):
        self._step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._started = self.clock()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.rate(self._step)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.clock() - self._started
        self.epoch_seconds.append(seconds)
        self.spent_s += seconds
        if logs is not None:
            logs["learning_rate"] = self.rate(self._step)
        done = epoch + 1
        if self.budget_s > 0:
            # The mean of the last ten epochs: what the remaining ones will take on average.
            # This VM slows down in bursts of a few epochs; a median of five (tried first)
            # swung the plan by 5 epochs on one burst and jolted the rate down mid-run.
            recent = statistics.mean(self.epoch_seconds[-10:])
            planned = epochs_that_fit(done, self.spent_s, self.budget_s, recent, self.epochs)
            if planned != self.planned:
                log.warning("time budget: %.1f of %.1f min spent at ~%.0f s/epoch; the run now "
                            "ends after epoch %d (was %d)", self.spent_s / 60,
                            self.budget_s / 60, recent, planned, self.planned)
                self.planned = planned
        if logs is not None:
            logs["planned_epochs"] = self.planned
        if done >= self.planned:
            self.model.stop_training = True
