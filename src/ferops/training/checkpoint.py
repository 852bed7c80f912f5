"""Crash-safe training checkpoints: resume after SIGKILL from the last saved state.

Keras' BackupAndRestore saves model weights only; this saves the whole model (weights and
optimizer state, so the learning-rate schedule continues where it was) plus a small JSON
state, both atomically (temp file, then rename), every N batches and at every epoch end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras

from ferops.files import atomic_path, write_atomic

MODEL_FILE, STATE_FILE = "resume.keras", "resume.json"


def save_atomic_json(path: Path, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=2))


def save_atomic_model(model: keras.Model, path: Path) -> None:
    """A kill mid-save leaves a hidden temporary orphan, never a truncated model at `path`."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves (model, epoch, history) every `every_batches` batches and at each epoch end."""

    def __init__(self, directory: Path, every_batches: int = 0, fingerprint: str = ""):
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.every_batches = every_batches
        self.history: list[dict] = []
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.every_batches and (batch + 1) % self.every_batches == 0:
            # Mid-epoch: a resume restarts this epoch with these weights and optimizer state.
            self._save(next_epoch=self._epoch)

    def on_epoch_end(self, epoch, logs=None):
        # Epoch wall time is kept: it shows which epochs shared the machine with other work.
        self.history.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()},
                             "epoch_seconds": round(time.perf_counter() - self._started, 1)})
        self._save(next_epoch=epoch + 1)

    def _save(self, next_epoch: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        save_atomic_model(self.model, self.directory / MODEL_FILE)
        save_atomic_json(self.directory / STATE_FILE,
                         {"next_epoch": next_epoch, "history": self.history,
                          "fingerprint": self.fingerprint})


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the best model so far (by `monitor`, higher is better) in a crash-safe way.

    Each improvement is saved to its own file, then best.json is atomically pointed at it, then
    the old file goes: a kill at any moment leaves best.json naming a whole model, and the
    epoch it names is the one that model comes from. (keras' ModelCheckpoint writes in place:
    a SIGKILL during the save left a truncated best.keras that failed the resumed run.) A
    resumed run reads best.json back, so a worse epoch never replaces the best so far.
    """

    def __init__(self, directory: Path, monitor: str = "val_accuracy"):
        super().__init__()
        self.directory, self.monitor = Path(directory), monitor
        self.pointer = self.directory / "best.json"
        state = json.loads(self.pointer.read_text(encoding="utf-8")) \
            if self.pointer.is_file() else {}
        self.file: str | None = state.get("file")
        self.value: float | None = state.get(monitor)
        self.epoch: int | None = state.get("epoch")

    @property
    def path(self) -> Path | None:
        return self.directory / self.file if self.file else None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or (self.value is not None and float(value) <= self.value):
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        old, name = self.path, f"best-e{epoch}.keras"
        save_atomic_model(self.model, self.directory / name)
        save_atomic_json(self.pointer, {"file": name, "epoch": epoch, self.monitor: float(value)})
        self.file, self.value, self.epoch = name, float(value), epoch
        if old is not None and old.name != name:
            old.unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget the selection: the pointer and every best-*.keras (orphans of a crash too)."""
        self.pointer.unlink(missing_ok=True)
        for path in self.directory.glob("*best-e*.keras"):
            path.unlink(missing_ok=True)
        self.file = self.value = self.epoch = None


def load_resume(directory: Path, fingerprint: str = ""
                ) -> tuple[keras.Model, int, list[dict]] | None:
    """(model, next epoch, history so far) from an interrupted run of the same config, or None.

    A checkpoint from a different configuration or dataset (another fingerprint) is stale:
    it is deleted rather than resumed.
    """
    directory = Path(directory)
    model_path, state_path = directory / MODEL_FILE, directory / STATE_FILE
    if not (model_path.is_file() and state_path.is_file()):
        return None
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if state.get("fingerprint", "") != fingerprint:
        clear_resume(directory)
        return None
    return keras.models.load_model(model_path), int(state["next_epoch"]), state["history"]


def clear_resume(directory: Path) -> None:
    for name in (MODEL_FILE, STATE_FILE):
        (Path(directory) / name).unlink(missing_ok=True)
