"""Realtime (window) mode: capture, detection, HTTP and display overlap, and nothing waits.

    capture thread -> [latest frame] -> detect thread -> [latest result] -> main thread (window)
                                          \\-> pool of <= camera.max_inflight classify requests

Each arrow in brackets is a one-item slot that keeps only the newest item, so a slow stage
drops stale frames instead of queueing them. Answers land on face tracks (tracking.py) and
the window draws each track's last known result, so a slow or absent service never stalls it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import cv2
import numpy as np

from ferops.camera.client import ResilientClassifier, make_classifier
from ferops.camera.labeling import CONSENT_NOTICE, Labeler
from ferops.camera.overlay import annotate, status_lines
from ferops.camera.pipeline import (
    CameraError,
    Face,
    FaceFinder,
    Summary,
    frame_record,
    is_file_source,
    merge_outcome,
    open_source,
    parse_source,
    source_fps,
)
from ferops.camera.tracking import Tracker
from ferops.config import Params, load_params

CLOSED = object()
KEY_QUIT = (ord("q"), ord("Q"), 27)  # 27: Esc
FRESH_S = 1.0   # an answer younger than this is drawn as current, older ones as "~label"


def gui_problem() -> str | None:
    """Why an OpenCV window cannot open here (a message for the user), or None if it can."""
    build = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if not hasattr(cv2, "imshow") or (build and build.group(1).upper() == "NONE"):
        return (f"this OpenCV build ({cv2.__version__}, opencv-python-headless) cannot open "
                f"windows: pip uninstall opencv-python-headless && pip install "
                f"'opencv-python=={cv2.__version__}.*' for the live window, or run with "
                f"--headless --out-video out.mp4")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set): run on a desktop, or use --headless"
    return None


class Display(Protocol):
    def show(self, frame: np.ndarray, record: dict[str, Any]) -> None: ...
    def poll_key(self, wait_ms: int) -> int: ...
    def close(self) -> None: ...


class CvDisplay:
    """An OpenCV window; must be driven from the main thread (GUI toolkits require it)."""

    def __init__(self, title: str = "ferops camera (q to quit)"):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, frame: np.ndarray, record: dict[str, Any]) -> None:
        cv2.imshow(self.title, frame)

    def poll_key(self, wait_ms: int) -> int:
        key = cv2.waitKey(max(1, wait_ms))
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return ord("q")  # the window was closed with the mouse
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class LatestSlot:
    """One-item mailbox: put() replaces an unread item (counted in `dropped`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            self.dropped += int(self._full)
            self._item, self._full = item, True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, timeout: float) -> Any:
        """The newest item; None on timeout; CLOSED once closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._full or self._closed, timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            return CLOSED if self._closed else None


class Realtime:
    def __init__(self, cap: cv2.VideoCapture, source: str | int, finder: FaceFinder,
                 classifier: ResilientClassifier, max_inflight: int,
                 max_frames: int | None = None):
        self.cap, self.source, self.finder, self.classifier = cap, source, finder, classifier
        self.max_inflight = max(1, max_inflight)
        self.max_frames = max_frames
        self.fps = source_fps(cap)
        self.tracker = Tracker()
        self.frames, self.results = LatestSlot(), LatestSlot()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(self.max_inflight, thread_name_prefix="ferops-classify")
        self._inflight = 0
        self._lock = threading.Lock()
        self._toast: tuple[str, float] = ("", 0.0)   # (message, shown until): "saved happy"
        self.summary = Summary()

    def run(self, display: Display, labeler: Labeler | None = None) -> Summary:
        threads = [threading.Thread(target=self._capture, name="ferops-capture", daemon=True),
                   threading.Thread(target=self._detect, name="ferops-detect", daemon=True)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            self._show_loop(display, labeler)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=2.0)
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.summary.seconds = time.monotonic() - start
        self.summary.dropped = self.frames.dropped + self.results.dropped
        status = self.classifier.status()
        self.summary.requests, self.summary.errors = status.requests, status.errors
        self.summary.last_error = status.last_error
        return self.summary

    def _capture(self) -> None:
        # A file plays at its own speed (as a camera would deliver it); cameras set the pace.
        period = 1.0 / self.fps if is_file_source(self.source) else 0.0
        due, i, start = time.monotonic(), 0, time.monotonic()
        while not self.stop.is_set() and (self.max_frames is None or i < self.max_frames):
            ok, frame = self.cap.read()
            if not ok or frame is None:
                break
            t = i * period if period else time.monotonic() - start
            self.frames.put((i, t, frame))
            i += 1
            if period:
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
        self.frames.close()

    def _detect(self) -> None:
        while not self.stop.is_set():
            item = self.frames.get(timeout=0.1)
            if item is CLOSED:
                break
            if item is None:
                continue
            i, t, frame = item
            faces = self.finder.find(frame)
            ids = self.tracker.assign([f.box for f in faces], i)
            for face, tid in zip(faces, ids, strict=True):
                face.track = tid
            if faces:
                self._maybe_send(faces, i)
            self.results.put((i, t, frame, faces))
        self.results.close()

    def _maybe_send(self, faces: list[Face], frame: int) -> None:
        """Send unless max_inflight requests are out or the service is backing off."""
        with self._lock:
            if self._inflight >= self.max_inflight or not self.classifier.ready_to_send():
                return
            self._inflight += 1
        try:
            self.pool.submit(self._classify, faces, frame)
        except RuntimeError:  # the pool was shut down: the window is closing
            with self._lock:
                self._inflight -= 1

    def _classify(self, faces: list[Face], frame: int) -> None:
        try:
            outcome = self.classifier.classify([f.crop for f in faces])
            merge_outcome(faces, outcome, self.tracker, frame)
        finally:
            with self._lock:
                self._inflight -= 1

    def _show_loop(self, display: Display, labeler: Labeler | None) -> None:
        shown_fps, last = 0.0, time.monotonic()
        largest: np.ndarray | None = None
        while not self.stop.is_set():
            item = self.results.get(timeout=0.01)
            if item is CLOSED:
                break
            if item is not None:
                now = time.monotonic()
                shown_fps = _ema(shown_fps, 1.0 / max(1e-3, now - last))
                last = now
                frame, record, largest = self._render(item, shown_fps, labeler)
                display.show(frame, record)
            key = display.poll_key(1)
            if key in KEY_QUIT:
                break
            saved = labeler.handle_key(key, largest) if labeler and key >= 0 else None
            if saved is not None:
                self.summary.saved += 1
                self._toast = (f"saved as {saved.parent.name}", time.monotonic() + 1.5)

    def _render(self, item: tuple, fps: float, labeler: Labeler | None
                ) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
        i, t, frame, faces = item
        fresh_frames = max(1, int(FRESH_S * self.fps))
        views = merge_outcome(faces, None, self.tracker, i, fresh_within=fresh_frames)
        status = self.classifier.status()
        self.summary.count_frame(views, status.ok)
        version = next((v.prediction.model_version for v in views if v.prediction), None)
        lines = status_lines(fps, len(faces), status, version)
        if time.monotonic() < self._toast[1]:
            lines.append((self._toast[0], (80, 220, 80)))
        legend = labeler.legend() if labeler is not None else ()
        notice = CONSENT_NOTICE if labeler is not None and labeler.awaiting_consent else ()
        annotate(frame, views, lines, legend, notice)
        return frame, frame_record(i, t, views, status.ok), faces[0].crop if faces else None


def _ema(previous: float, value: float, weight: float = 0.1) -> float:
    return value if previous == 0.0 else previous + weight * (value - previous)


def run_realtime(source: str | int, service_url: str, params: Params | None = None, *,
                 display: Display | None = None, api_key: str | None = None,
                 timeout_s: float | None = None, labeler: Labeler | None = None,
                 max_frames: int | None = None, backoff_max_s: float = 4.0) -> Summary:
    """Live mode: classify what the source shows and draw it on display (a window by default).

    Raises CameraError when the source cannot be opened, or when no display is given and
    OpenCV cannot open a window here.
    """
    params = params or load_params()
    cam = params.camera
    if display is None:
        problem = gui_problem()
        if problem:
            raise CameraError(problem)
    classifier = make_classifier(service_url, params, api_key, timeout_s, backoff_max_s)
    src = parse_source(source)
    cap = open_source(src)
    try:
        window = display or CvDisplay()
        try:
            realtime = Realtime(cap, src, FaceFinder(params.faces, cam.detect_every, cam),
                                classifier, cam.max_inflight, max_frames)
            return realtime.run(window, labeler)
        finally:
            window.close()
    finally:
        cap.release()
        classifier.client.close()
