"""Headless mode: every frame of a source, annotated video + one JSONL line per frame.

Nothing is dropped here (the output must be complete), but the work still overlaps: a producer
thread reads and detects while up to camera.max_inflight classify requests run in a pool, and
the main thread writes results in frame order. The bounded queue between them keeps memory flat.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from ferops.camera.client import Outcome, ResilientClassifier, make_classifier
from ferops.camera.labeling import Labeler
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

_END = object()
Item = tuple[int, float, np.ndarray, list[Face], "Future[Outcome] | None"]


def run_headless(source: str | int, service_url: str, out_video: str | Path | None = None,
                 out_jsonl: str | Path | None = None, params: Params | None = None, *,
                 api_key: str | None = None, timeout_s: float | None = None,
                 max_frames: int | None = None, labeler: Labeler | None = None,
                 label_all: str | None = None, progress: bool = False,
                 on_frame: Callable[[dict[str, Any]], None] | None = None,
                 backoff_max_s: float = 4.0) -> Summary:
    """Classify every frame of source against the service at service_url; return the counts.

    Raises CameraError for a source or output that cannot be opened. A service that is down
    never raises: its frames get service_ok false and the run goes on. label_all (with a
    labeler that has consent) saves every detected face crop under that label.
    on_frame(record) is called after each frame is written (progress hooks, tests).
    """
    params = params or load_params()
    cam = params.camera
    classifier = make_classifier(service_url, params, api_key, timeout_s, backoff_max_s)
    src = parse_source(source)
    cap = open_source(src)
    try:
        outputs = _Outputs(out_video, out_jsonl, source_fps(cap))
        total = _frame_total(cap, max_frames)
        with outputs, tqdm(total=total, unit="frame", disable=not progress,
                           file=sys.stderr) as bar:
            finder = FaceFinder(params.faces, cam.detect_every, cam)
            run = _Run(classifier, finder, outputs, max(1, cam.max_inflight))
            summary = run.process(cap, src, max_frames, bar, labeler, label_all, on_frame)
    finally:
        cap.release()
        classifier.client.close()
    status = classifier.status()
    summary.requests, summary.errors, summary.last_error = (
        status.requests, status.errors, status.last_error)
    return summary


def _frame_total(cap: cv2.VideoCapture, max_frames: int | None) -> int | None:
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    total = count if count > 0 else None
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    return total


class _Outputs:
    """The annotated video (opened on the first frame, when its size is known) and the JSONL."""

    def __init__(self, out_video: str | Path | None, out_jsonl: str | Path | None, fps: float):
        self.video_path = Path(out_video) if out_video else None
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None
        self.jsonl = None
        if out_jsonl:
            path = Path(out_jsonl)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)

    def write(self, frame: np.ndarray, record: dict[str, Any]) -> None:
        if self.video_path is not None:
            if self.writer is None:
                self.writer = self._open_writer(frame)
            self.writer.write(frame)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")

    def _open_writer(self, frame: np.ndarray) -> cv2.VideoWriter:
        assert self.video_path is not None
        self.video_path.parent.mkdir(parents=True, exist_ok=True)
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                 self.fps, (w, h))
        if not writer.isOpened():
            raise CameraError(f"cannot write video {self.video_path} (mp4v codec, {w}x{h})")
        return writer

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.jsonl is not None:
            self.jsonl.close()


class _Run:
    def __init__(self, classifier: ResilientClassifier, finder: FaceFinder, outputs: _Outputs,
                 max_inflight: int):
        self.classifier = classifier
        self.finder = finder
        self.outputs = outputs
        self.max_inflight = max_inflight
        self.tracker = Tracker()
        self.summary = Summary()

    def process(self, cap: cv2.VideoCapture, src: str | int, max_frames: int | None, bar: tqdm,
                labeler: Labeler | None, label_all: str | None,
                on_frame: Callable[[dict[str, Any]], None] | None) -> Summary:
        # Frames read ahead = requests in flight + one being detected: bounded memory.
        pending: queue.Queue[Any] = queue.Queue(maxsize=self.max_inflight)
        stop = threading.Event()
        pool = ThreadPoolExecutor(self.max_inflight, thread_name_prefix="ferops-classify")
        producer = threading.Thread(target=self._produce, name="ferops-detect", daemon=True,
                                    args=(cap, src, max_frames, pool, pending, stop))
        start = time.monotonic()
        producer.start()
        try:
            for item in _drain(pending):
                record = self._finish(item, start, labeler, label_all)
                self.summary.seconds = time.monotonic() - start
                bar.update(1)
                if on_frame is not None:
                    on_frame(record)
        except KeyboardInterrupt:
            print("interrupted: outputs hold the frames done so far", file=sys.stderr)
        finally:
            stop.set()
            while producer.is_alive():  # unblock a producer waiting on a full queue
                _empty(pending)
                producer.join(timeout=0.05)
            pool.shutdown(wait=True, cancel_futures=True)
        self.summary.seconds = time.monotonic() - start
        return self.summary

    def _produce(self, cap: cv2.VideoCapture, src: str | int, max_frames: int | None,
                 pool: ThreadPoolExecutor, pending: queue.Queue[Any],
                 stop: threading.Event) -> None:
        fps, start = source_fps(cap), time.monotonic()
        try:
            for i, frame in enumerate(_read_frames(cap, max_frames)):
                # A file's own clock is reproducible; a live source only has the wall clock.
                t = i / fps if is_file_source(src) else time.monotonic() - start
                faces = self.finder.find(frame)
                for face, tid in zip(faces, self.tracker.assign([f.box for f in faces], i),
                                     strict=True):
                    face.track = tid
                future = (pool.submit(self.classifier.classify, [f.crop for f in faces])
                          if faces else None)
                if not _put(pending, (i, t, frame, faces, future), stop):
                    return
            _put(pending, _END, stop)
        except BaseException as exc:  # handed to the main thread, which raises it
            _put(pending, exc, stop)

    def _finish(self, item: Item, start: float, labeler: Labeler | None,
                label_all: str | None) -> dict[str, Any]:
        i, t, frame, faces, future = item
        outcome = future.result() if future is not None else None
        status = self.classifier.status()
        service_ok = outcome.ok if outcome is not None else status.ok
        views = merge_outcome(faces, outcome, self.tracker, i)
        self.summary.count_frame(views, service_ok)
        record = frame_record(i, t, views, service_ok)
        fps = (i + 1) / max(1e-6, time.monotonic() - start)
        version = self.summary.model_versions[-1] if self.summary.model_versions else None
        annotate(frame, views, status_lines(fps, len(faces), status, version))
        self.outputs.write(frame, record)
        if labeler is not None and label_all:
            self.summary.saved += sum(labeler.save(label_all, f.crop) is not None for f in faces)
        return record


def _read_frames(cap: cv2.VideoCapture, max_frames: int | None) -> Iterator[np.ndarray]:
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = cap.read()
        if not ok or frame is None:
            return
        count += 1
        yield frame


def _drain(pending: queue.Queue[Any]) -> Iterator[Item]:
    while True:
        item = pending.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _put(pending: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            pending.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _empty(pending: queue.Queue[Any]) -> None:
    try:
        while True:
            pending.get_nowait()
    except queue.Empty:
        pass
