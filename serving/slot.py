"""The model the service answers with, and how a newly promoted champion replaces it.

Hot swap: a new model is loaded next to the old one and then swapped in with one reference
assignment. A request already running keeps the Predictor it started with, so no request is
dropped or answered by a half-loaded model; the next request gets the new one.

Several worker processes (`serving.workers`) each hold their own slot. A `/reload` lands on
one of them, so it also bumps a ReloadSignal that every worker's watcher checks a few times a
second, and answers once every live worker serves the same model (each records its model in
an ack file).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from ferops.files import write_atomic
from ferops.inference import Predictor, load_bento_predictor

log = logging.getLogger("ferops.serving")


class ModelSlot:
    def __init__(self, bento_name: str) -> None:
        self.bento_name = bento_name
        # One reference is the whole served state: readers never see a model with
        # another model's tag in the middle of a swap.
        self.predictor: Predictor | None = None
        self.reason = "the service is starting"
        self._load_lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def tag(self) -> str | None:
        return self.predictor.info.get("bento_tag") if self.predictor else None

    def newest(self):
        """The newest BentoML model of this name (what promote or rollback exported last)."""
        import bentoml
        from bentoml.exceptions import NotFound
        try:
            return bentoml.models.get(f"{self.bento_name}:latest")
        except NotFound:
            return None

    def refresh(self) -> bool:
        """Load the newest exported champion if it is not the one served; True if swapped."""
        with self._load_lock:
            newest = self.newest()
            if newest is None:
                if self.predictor is None:
                    self.reason = (f"no champion: the BentoML model store has no "
                                   f"'{self.bento_name}' model yet; train and run "
                                   f"`ferops promote` first")
                return False
            tag = str(newest.tag)
            if tag == self.tag:
                return False
            try:
                predictor = load_bento_predictor(newest.path, dict(newest.info.metadata), tag)
            except Exception as exc:  # a broken export must not take the served model down
                log.error("cannot load %s, still serving %s: %s", tag, self.tag, exc)
                if self.predictor is None:
                    self.reason = f"champion {tag} failed to load: {exc}"
                return False
            old, self.predictor = self.tag, predictor  # the swap: one assignment
            gc.freeze()  # the new model's objects are long-lived too (see service.py)
            log.info("serving %s (registry version %s), replacing %s", tag,
                     predictor.version, old)
            return True

    def watch(self, every_s: float, signal: ReloadSignal | None = None,
              check_s: float = 0.2) -> None:
        """A daemon thread: poll the store every `every_s` (0: never; reading a local folder
        is cheap) and, with a signal, reload within `check_s` of a /reload on another worker."""
        def loop() -> None:
            seen = signal.stamp() if signal else None
            last_poll = time.monotonic()
            if signal:
                signal.ack(self.tag)
            while not self._stop.wait(check_s if signal else every_s):
                try:
                    stamp = signal.stamp() if signal else None
                    due = every_s > 0 and time.monotonic() - last_poll >= every_s
                    if stamp != seen or due:
                        seen, last_poll = stamp, time.monotonic()
                        self.refresh()
                        if signal:
                            signal.ack(self.tag)
                except Exception as exc:  # keep watching whatever happened
                    log.warning("model watcher: %s", exc)
        threading.Thread(target=loop, name="ferops-model-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


class ReloadSignal:
    """Reload coordination between the worker processes of one `bentoml serve`.

    The folder is per server: named after the workers' common parent process, so two services
    on one machine (tests, benchmarks) never see each other's signals.
    """

    def __init__(self, workers: int, directory: Path | None = None) -> None:
        self.workers = workers
        self.dir = directory or Path(tempfile.gettempdir()) / f"ferops-serve-{os.getppid()}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _write(self, path: Path, text: str) -> None:
        write_atomic(path, text)  # readers never see a half-written file

    def bump(self) -> None:
        self._write(self.dir / "reload", str(time.time_ns()))

    def stamp(self) -> str | None:
        try:
            return (self.dir / "reload").read_text()
        except FileNotFoundError:
            return None

    def ack(self, tag: str | None) -> None:
        self._write(self.dir / f"ack-{os.getpid()}", tag or "")

    def leave(self) -> None:
        """At shutdown: drop this worker's ack; the last one out removes the folder."""
        (self.dir / f"ack-{os.getpid()}").unlink(missing_ok=True)
        if not any(self.dir.glob("ack-*")):
            (self.dir / "reload").unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # another worker is still writing
                self.dir.rmdir()

    def serving(self) -> dict[int, str]:
        """pid -> the model tag that live worker serves (files of dead workers are removed)."""
        out = {}
        for path in self.dir.glob("ack-*"):
            pid = int(path.name.removeprefix("ack-"))
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
                continue
            except PermissionError:
                pass  # alive, another user's
            try:
                out[pid] = path.read_text()
            except FileNotFoundError:
                continue
        return out

    def wait_all(self, tag: str | None, timeout_s: float) -> int:
        """Wait until every worker serves `tag`; returns how many do (== workers: all)."""
        deadline = time.monotonic() + timeout_s
        while True:
            on_tag = sum(t == (tag or "") for t in self.serving().values())
            if on_tag >= self.workers or time.monotonic() >= deadline:
                return on_tag
            time.sleep(0.05)
