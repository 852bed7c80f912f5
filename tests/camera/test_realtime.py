"""Realtime mode with a slow service: the display keeps going and shows the last known labels.

The window is the one piece replaced (by a recorder): this machine's OpenCV has no GUI.
Capture, detection, the thread pool and the HTTP service are all real.
"""

from __future__ import annotations

import time

import numpy as np

from ferops.camera import ConsentStore, Labeler, run_realtime
from ferops.camera.realtime import LatestSlot
from tests.camera.conftest import VIDEO_FRAMES, with_camera
from tests.camera.fakes import CLASSES, FakeService


class RecordingDisplay:
    """Stands in for the window: records what is shown and presses keys from a script."""

    def __init__(self, quit_after: int | None = None, keys: dict[int, str] | None = None):
        self.records: list[dict] = []
        self.shapes: set[tuple[int, ...]] = set()
        self.quit_after = quit_after
        self.keys = dict(keys or {})   # after the n-th shown frame, press this key once
        self.closed = False

    def show(self, frame: np.ndarray, record: dict) -> None:
        self.records.append(record)
        self.shapes.add(frame.shape)

    def poll_key(self, wait_ms: int) -> int:
        time.sleep(wait_ms / 1000)
        key = self.keys.pop(len(self.records), None)
        if key is not None:
            return ord(key)
        if self.quit_after is not None and len(self.records) >= self.quit_after:
            return ord("q")
        return -1

    def close(self) -> None:
        self.closed = True


def test_slow_service_never_stalls_the_display(face_video, params):
    service = FakeService(delay_s=0.8).start()   # much slower than the 10 fps video
    display = RecordingDisplay()
    try:
        summary = run_realtime(str(face_video), service.url,
                               with_camera(params, max_inflight=1), display=display)
    finally:
        service.stop()

    assert display.closed and display.shapes == {(480, 640, 3)}
    assert service.max_concurrent == 1 and service.violations == []
    # The window is not paced by answers: many more frames shown than answers received.
    assert len(display.records) >= 2 * service.requests + 5
    assert summary.frames == len(display.records)
    frames = [r["frame"] for r in display.records]
    assert frames == sorted(frames) and frames[-1] <= VIDEO_FRAMES - 1
    labeled = [f["label"] for r in display.records for f in r["faces"] if f["label"]]
    assert labeled and set(labeled) <= set(CLASSES)
    assert summary.dropped + summary.frames <= VIDEO_FRAMES


def test_quit_key_stops_early(face_video, params):
    service = FakeService().start()
    display = RecordingDisplay(quit_after=3)
    try:
        summary = run_realtime(str(face_video), service.url, params, display=display)
    finally:
        service.stop()
    assert summary.frames == 3 and display.closed


def test_latest_slot_keeps_only_the_newest_item():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.get(timeout=0.01) == 4 and slot.dropped == 4
    assert slot.get(timeout=0.01) is None
    slot.close()
    assert slot.get(timeout=0.01) is not None   # CLOSED sentinel, not a timeout


def test_window_labeling_asks_consent_then_saves(face_video, params, tmp_path):
    labeler = Labeler(params.classes.names, tmp_path / "drop", ConsentStore(tmp_path / "ok"))
    display = RecordingDisplay(quit_after=6, keys={2: "4", 3: "y", 4: "4"})
    service = FakeService().start()
    try:
        summary = run_realtime(str(face_video), service.url, params, display=display,
                               labeler=labeler)
    finally:
        service.stop()
    # The first "4" came before consent and stored nothing; the second one saved a crop.
    assert summary.saved == 1 and len(labeler.saved) == 1
    [path] = labeler.saved
    assert path.parent == tmp_path / "drop" / params.classes.names[3]
    assert (tmp_path / "ok").is_file()
