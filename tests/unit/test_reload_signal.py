"""serving/slot.py: a /reload on one worker reaches the others through ReloadSignal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from serving.slot import ModelSlot, ReloadSignal


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_acks_of_live_workers_count_and_dead_ones_are_cleared(tmp_path: Path):
    signal = ReloadSignal(workers=2, directory=tmp_path)
    assert signal.stamp() is None
    signal.bump()
    first = signal.stamp()
    time.sleep(0.001)
    signal.bump()
    assert signal.stamp() not in (None, first)
    signal.ack("m:2")
    (tmp_path / f"ack-{dead_pid()}").write_text("m:2")
    assert signal.serving() == {os.getpid(): "m:2"}  # the dead worker's file is gone
    assert len(list(tmp_path.glob("ack-*"))) == 1
    start = time.monotonic()
    assert signal.wait_all("m:2", timeout_s=0.3) == 1  # only one of two workers: times out
    assert time.monotonic() - start >= 0.3
    signal.workers = 1
    assert signal.wait_all("m:2", timeout_s=5) == 1


def test_leave_removes_the_folder_with_the_last_worker(tmp_path: Path):
    folder = tmp_path / "serve"
    signal = ReloadSignal(workers=1, directory=folder)
    signal.ack("m:1")
    signal.bump()
    signal.leave()
    assert not folder.exists()


class CountingSlot(ModelSlot):
    """A slot whose 'store' is a counter: each refresh serves the next tag."""

    def __init__(self) -> None:
        super().__init__("unused")
        self.refreshes = 0
        self.predictor = SimpleNamespace(info={"bento_tag": "m:0"})

    def refresh(self) -> bool:
        self.refreshes += 1
        # The slot's tag is its predictor's: one reference, swapped whole.
        self.predictor = SimpleNamespace(info={"bento_tag": f"m:{self.refreshes}"})
        return True


def test_a_bump_makes_the_watcher_reload_and_ack_within_moments(tmp_path: Path):
    signal = ReloadSignal(workers=1, directory=tmp_path)
    slot = CountingSlot()
    slot.watch(0, signal, check_s=0.02)  # no store polling: only the signal
    try:
        deadline = time.monotonic() + 5
        while signal.serving().get(os.getpid()) != "m:0" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert signal.serving()[os.getpid()] == "m:0" and slot.refreshes == 0
        signal.bump()
        assert signal.wait_all("m:1", timeout_s=5) == 1
        time.sleep(0.2)
        assert slot.refreshes == 1  # one bump, one reload
    finally:
        slot.stop()


class StoreSlot(ModelSlot):
    """A slot over a fake model store: `store["newest"]` is what promote exported last."""

    def __init__(self, store: dict, grace_s: float = 30.0) -> None:
        super().__init__("unused", swap_grace_s=grace_s)
        self.store = store

    def newest(self):
        return SimpleNamespace(tag=self.store["newest"])

    def by_tag(self, tag: str):
        return SimpleNamespace(tag=tag)

    def _load(self, model):
        return SimpleNamespace(info={"bento_tag": str(model.tag)}, version=str(model.tag))


def two_workers(tmp_path: Path, store: dict, workers: int = 2, grace_s: float = 30.0):
    """Two slots in this process, standing in for two worker processes (one pid is a live
    child's, so the liveness check counts it)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    slots = []
    for pid in (os.getpid(), child.pid):
        slot = StoreSlot(store, grace_s)
        slot.start(ReloadSignal(workers, directory=tmp_path, pid=pid))
        slots.append(slot)
        if len(slots) == 1:  # the first model too waits until every worker has it
            assert slot.current() is None and "waiting for the other workers" in slot.reason
    return slots, child


def test_workers_swap_together_once_every_one_has_loaded_the_new_model(tmp_path: Path):
    store = {"newest": "m:1"}
    (a, b), child = two_workers(tmp_path, store)
    try:
        assert a.current().version == b.current().version == "m:1"
        store["newest"] = "m:2"
        assert a.refresh()  # A has loaded m:2 ...
        assert a.current().version == "m:1"  # ... but B has not: A keeps answering with m:1
        assert b.current().version == "m:1"
        assert b.refresh()  # B loads it last, so B commits it
        assert b.current().version == "m:2"
        assert a.current().version == "m:2"  # A's next batch sees the commit, no watcher needed
        assert a.staged is None and b.staged is None
        assert not a.refresh()  # nothing newer
    finally:
        child.kill()


def test_a_worker_that_started_late_serves_what_the_others_serve(tmp_path: Path):
    store = {"newest": "m:1"}
    (a, b), child = two_workers(tmp_path, store)
    try:
        store["newest"] = "m:2"  # exported, not yet committed by the running workers
        late = StoreSlot(store)
        late.start(ReloadSignal(2, directory=tmp_path, pid=child.pid))
        assert late.current().version == "m:1"
    finally:
        child.kill()


def test_a_worker_that_cannot_load_holds_the_others_back_only_for_the_grace(tmp_path: Path):
    store = {"newest": "m:1"}
    (a, b), child = two_workers(tmp_path, store, grace_s=0.3)
    try:
        store["newest"] = "m:2"
        a.refresh()  # B never loads m:2 (say its load fails)
        a.settle()
        assert a.current().version == "m:1"
        time.sleep(0.35)
        a.settle()
        assert a.current().version == "m:2"
        assert b.current().version == "m:1"  # B has nothing staged: it keeps its model
    finally:
        child.kill()


def test_one_worker_swaps_at_once(tmp_path: Path):
    store = {"newest": "m:1"}
    slot = StoreSlot(store)
    slot.start(None)
    store["newest"] = "m:2"
    assert slot.refresh() and slot.current().version == "m:2" and slot.staged is None
