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
