"""The model the service answers with, and how a newly promoted champion replaces it.

Hot swap: a new model is loaded next to the old one and then swapped in with one reference
assignment. A request already running keeps the Predictor it started with, so no request is
dropped or answered by a half-loaded model; the next request gets the new one.
"""

from __future__ import annotations

import gc
import logging
import threading

from ferops.inference import Predictor, load_bento_predictor

log = logging.getLogger("ferops.serving")


class ModelSlot:
    def __init__(self, bento_name: str) -> None:
        self.bento_name = bento_name
        self.predictor: Predictor | None = None
        self.tag: str | None = None
        self.reason = "the service is starting"
        self._load_lock = threading.Lock()
        self._stop = threading.Event()

    def newest(self):
        """The newest BentoML model of this name (what promote or rollback exported last)."""
        import bentoml
        from bentoml.exceptions import NotFound
        try:
            models = bentoml.models.list(self.bento_name)
        except NotFound:
            return None
        return max(models, key=lambda m: m.creation_time, default=None)

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
            old, self.predictor, self.tag = self.tag, predictor, tag  # the swap
            gc.freeze()  # the new model's objects are long-lived too (see service.py)
            log.info("serving %s (registry version %s), replacing %s", tag,
                     predictor.version, old)
            return True

    def watch(self, every_s: float) -> None:
        """Poll the store in a daemon thread (reading a local folder: cheap)."""
        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.refresh()
                except Exception as exc:  # keep watching whatever happened
                    log.warning("model watcher: %s", exc)
        threading.Thread(target=loop, name="ferops-model-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
