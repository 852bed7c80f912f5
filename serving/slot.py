"""The model the service answers with, and how a newly promoted champion replaces it.

Hot swap: a new model is loaded next to the old one and then swapped in with one reference
assignment. A request already running keeps the Predictor it started with, so no request is
dropped or answered by a half-loaded model; the next request gets the new one.

Several worker processes (`serving.workers`) each hold their own slot, and a client must
never get the new model's answer and then the old one's from the other worker. So with
several workers a swap has two phases: each worker loads the new model beside the old one
(staged) and says so in its ack file; once every live worker has it, one of them commits
it (writes the `active` file) and from then on every batch on every worker uses it (a batch
looks at the file's inode before it starts: a stat, only while a model is staged). The first
model too: no worker is ready before every one can answer. A worker that cannot load a
model does not hold the others back for ever: after `serving.swap_grace_s` the rest commit
without it.

A `/reload` lands on one worker, so it also bumps a ReloadSignal that every worker's watcher
checks a few times a second, and answers once every live worker serves the same model.
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


def _tag(predictor: Predictor | None) -> str | None:
    return predictor.info.get("bento_tag") if predictor else None


class ModelSlot:
    def __init__(self, bento_name: str, swap_grace_s: float = 30.0) -> None:
        self.bento_name = bento_name
        self.swap_grace_s = swap_grace_s
        # One reference is the whole served state: readers never see a model with
        # another model's tag in the middle of a swap.
        self.predictor: Predictor | None = None
        self.staged: Predictor | None = None  # loaded, not yet committed (several workers)
        self.signal: ReloadSignal | None = None
        self.reason = "the service is starting"
        self._staged_at = 0.0
        self._load_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def tag(self) -> str | None:
        return _tag(self.predictor)

    def newest(self):
        """The newest BentoML model of this name (what promote or rollback exported last)."""
        import bentoml
        from bentoml.exceptions import NotFound
        try:
            return bentoml.models.get(f"{self.bento_name}:latest")
        except NotFound:
            return None

    def by_tag(self, tag: str):
        import bentoml
        return bentoml.models.get(tag)

    def _load(self, model) -> Predictor:
        return load_bento_predictor(model.path, dict(model.info.metadata), str(model.tag))

    def start(self, signal: ReloadSignal | None = None) -> None:
        """Load the first model. A worker joining others (or restarted) loads the model they
        serve, not a newer one they have not committed yet; the watcher stages that later."""
        self.signal = signal
        active = signal.active() if signal else None
        if active:
            try:
                self._serve(self._load(self.by_tag(active)))
            except Exception as exc:  # deleted or broken: the newest is the next best thing
                log.warning("cannot load %s, which the other workers serve: %s", active, exc)
        if self.predictor is None:
            self.refresh()  # with workers, even the first model waits until all have it
        if signal:
            signal.ack(self.tag, _tag(self.staged))

    def refresh(self) -> bool:
        """Load the newest exported champion if it is neither served nor staged; True if it
        was (served at once with one worker, else staged)."""
        with self._load_lock:
            self.current()  # a staged model committed meanwhile is served, not replaced
            newest = self.newest()
            if newest is None:
                if self.predictor is None:
                    self.reason = (f"no champion: the BentoML model store has no "
                                   f"'{self.bento_name}' model yet; train and run "
                                   f"`ferops promote` first")
                return False
            tag = str(newest.tag)
            if tag in (self.tag, _tag(self.staged)):
                return False
            try:
                predictor = self._load(newest)
            except Exception as exc:  # a broken export must not take the served model down
                log.error("cannot load %s, still serving %s: %s", tag, self.tag, exc)
                if self.predictor is None:
                    self.reason = f"champion {tag} failed to load: {exc}"
                return False
            if self.signal is None:
                self._serve(predictor)
                return True
            with self._swap_lock:
                self.staged, self._staged_at = predictor, time.monotonic()
            if self.predictor is None:
                self.reason = f"{tag} is loaded; waiting for the other workers to load it"
            self.signal.ack(self.tag, tag)
            log.info("loaded %s beside %s; served once every worker has it", tag, self.tag)
            self.settle()
            return True

    def _serve(self, predictor: Predictor) -> None:
        old, self.predictor = self.tag, predictor  # the swap: one assignment
        gc.freeze()  # the new model's objects are long-lived too (see service.py)
        log.info("serving %s (registry version %s), replacing %s", _tag(predictor),
                 predictor.version, old)

    def _take_staged(self, tag: str) -> None:
        with self._swap_lock:
            if _tag(self.staged) == tag:
                staged, self.staged = self.staged, None
                self._serve(staged)

    def current(self) -> Predictor | None:
        """The model for the next batch: a staged model another worker committed first."""
        staged = self.staged
        if staged is not None and self.signal.active() == _tag(staged):
            self._take_staged(_tag(staged))
        return self.predictor

    def settle(self) -> None:
        """Commit the staged model once every live worker has it (or the grace is over),
        and serve it once committed, by whichever worker did."""
        staged = self.staged
        if staged is None or self.signal is None:
            return
        tag = _tag(staged)
        if self.signal.active() != tag:
            if not self.signal.everyone_has(tag):
                if time.monotonic() - self._staged_at < self.swap_grace_s:
                    return
                log.warning("%s: not every worker loaded it within %.0f s; committing it "
                            "for the workers that did", tag, self.swap_grace_s)
            self.signal.commit(tag)
        self._take_staged(tag)

    def watch(self, every_s: float, signal: ReloadSignal | None = None,
              check_s: float = 0.2) -> None:
        """A daemon thread: poll the store every `every_s` (0: never; reading a local folder
        is cheap) and, with a signal, reload within `check_s` of a /reload on another worker
        and commit or take a staged model."""
        def loop() -> None:
            seen = signal.stamp() if signal else None
            last_poll = time.monotonic()
            acked = None
            while True:
                try:
                    if signal:
                        stamp = signal.stamp()
                        if stamp != seen:
                            seen = stamp
                            self.refresh()
                        self.settle()
                        state = (self.tag, _tag(self.staged))
                        if state != acked:
                            signal.ack(*state)
                            acked = state
                    if every_s > 0 and time.monotonic() - last_poll >= every_s:
                        last_poll = time.monotonic()
                        self.refresh()
                except Exception as exc:  # keep watching whatever happened
                    log.warning("model watcher: %s", exc)
                if self._stop.wait(check_s if signal else every_s):
                    return
        threading.Thread(target=loop, name="ferops-model-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


class ReloadSignal:
    """Swap and reload coordination between the worker processes of one `bentoml serve`.

    Files in one folder: `reload` (bumped by /reload), `active` (the committed model's tag)
    and one `ack-<pid>` per worker (the tag it serves, then the tag it has staged). The
    folder is per server: named after the workers' common parent process, so two services
    on one machine (tests, benchmarks) never see each other's.
    """

    def __init__(self, workers: int, directory: Path | None = None,
                 pid: int | None = None) -> None:
        self.workers = workers
        self.pid = pid or os.getpid()  # tests stand in for several workers in one process
        self.dir = directory or Path(tempfile.gettempdir()) / f"ferops-serve-{os.getppid()}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._active_key: tuple[int, int] | None = None
        self._active: str | None = None

    def bump(self) -> None:
        write_atomic(self.dir / "reload", str(time.time_ns()))

    def stamp(self) -> str | None:
        try:
            return (self.dir / "reload").read_text()
        except FileNotFoundError:
            return None

    def commit(self, tag: str) -> None:
        write_atomic(self.dir / "active", tag)  # renamed into place: a new inode each time

    def active(self) -> str | None:
        """The committed tag; re-read only when the file was replaced (one stat a call)."""
        try:
            st = os.stat(self.dir / "active")
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns)
        if key != self._active_key:
            try:
                self._active = (self.dir / "active").read_text()
            except FileNotFoundError:
                return None
            self._active_key = key
        return self._active

    def ack(self, serving: str | None, staged: str | None = None) -> None:
        write_atomic(self.dir / f"ack-{self.pid}", f"{serving or ''}\n{staged or ''}")

    def leave(self) -> None:
        """At shutdown: drop this worker's ack; the last one out removes the folder."""
        (self.dir / f"ack-{self.pid}").unlink(missing_ok=True)
        if not any(self.dir.glob("ack-*")):
            for name in ("reload", "active"):
                (self.dir / name).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # another worker is still writing
                self.dir.rmdir()

    def states(self) -> dict[int, tuple[str, str]]:
        """pid -> (served tag, staged tag) of each live worker (dead workers' files go)."""
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
                served, _, staged = path.read_text().partition("\n")
            except FileNotFoundError:
                continue
            out[pid] = (served, staged)
        return out

    def serving(self) -> dict[int, str]:
        """pid -> the model tag that live worker serves."""
        return {pid: served for pid, (served, _) in self.states().items()}

    def everyone_has(self, tag: str) -> bool:
        """Every expected worker is up and serves or has staged `tag`."""
        states = self.states()
        return len(states) >= self.workers and all(tag in s for s in states.values())

    def wait_all(self, tag: str | None, timeout_s: float) -> int:
        """Wait until every worker serves `tag`; returns how many do (== workers: all)."""
        deadline = time.monotonic() + timeout_s
        while True:
            on_tag = sum(t == (tag or "") for t in self.serving().values())
            if on_tag >= self.workers or time.monotonic() >= deadline:
                return on_tag
            time.sleep(0.05)
