"""The small pieces: IoU tracking, backoff, the HTTP client's error mapping, the overlay."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ferops.camera.client import (
    Outcome,
    Prediction,
    ResilientClassifier,
    ServiceClient,
    ServiceError,
)
from ferops.camera.overlay import annotate, status_lines
from ferops.camera.pipeline import Face, FaceFinder, merge_outcome, parse_source
from ferops.camera.tracking import Tracker, iou
from ferops.faces import Box
from tests.camera.fakes import FakeService
from tests.factories import PARAMS

CROP = np.full((48, 48), 120, np.uint8)


def test_iou():
    a = Box(0, 0, 10, 10)
    assert iou(a, a) == 1.0 and iou(a, Box(20, 20, 5, 5)) == 0.0
    assert iou(a, Box(5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_tracker_follows_a_moving_face_and_keeps_its_last_answer():
    tracker = Tracker(max_age=3)
    [tid] = tracker.assign([Box(100, 100, 50, 50)], frame=0)
    pred = Prediction("happy", 0.9)
    tracker.update(tid, pred, frame=0)
    assert tracker.assign([Box(104, 102, 50, 50), Box(300, 50, 40, 40)], frame=1)[0] == tid
    assert tracker.last(tid) == (pred, 0)
    tracker.update(tid, Prediction("sad", 0.5), frame=-1)   # a late answer for an older frame
    assert tracker.last(tid)[0] == pred
    [new] = tracker.assign([Box(104, 102, 50, 50)], frame=10)  # gone too long: a new track
    assert new != tid and tracker.last(new) == (None, -1)


def test_merge_outcome_marks_fresh_and_last_known():
    tracker = Tracker()
    faces = [Face(Box(10, 10, 40, 40), CROP)]
    faces[0].track = tracker.assign([faces[0].box], 0)[0]
    [view] = merge_outcome(faces, Outcome([Prediction("fear", 0.7)]), tracker, 0)
    assert view.fresh and view.prediction.label == "fear"
    [later] = merge_outcome(faces, Outcome(None, "down"), tracker, 5)
    assert later.prediction.label == "fear" and not later.fresh
    assert merge_outcome(faces, None, tracker, 5, fresh_within=5)[0].fresh


def test_backoff_grows_then_resets():
    now = [0.0]
    service = FakeService().start()
    port = service.port
    service.stop()   # nothing listens: connection refused
    classifier = ResilientClassifier(ServiceClient(f"http://127.0.0.1:{port}", timeout_s=1),
                                     backoff_initial_s=1.0, backoff_max_s=4.0,
                                     clock=lambda: now[0])
    assert not classifier.classify([CROP]).ok
    assert classifier.classify([CROP]).skipped                 # within the 1 s backoff
    now[0] = 1.0
    assert not classifier.classify([CROP]).skipped             # tried again, failed: 2 s
    assert classifier.status().retry_in_s == pytest.approx(2.0)
    now[0] = 3.0
    classifier.classify([CROP])
    now[0] = 7.0
    classifier.classify([CROP])
    assert classifier.status().retry_in_s == pytest.approx(4.0)   # capped
    service.start(port)
    now[0] = 11.0
    assert classifier.classify([CROP]).ok
    status = classifier.status()
    assert status.ok and status.errors == 4 and status.requests == 5
    service.stop()


def test_client_errors_are_mapped():
    for status, retryable in ((503, True), (500, True), (422, False)):
        service = FakeService(status=status).start()
        with pytest.raises(ServiceError) as exc:
            ServiceClient(service.url).classify([CROP])
        service.stop()
        assert exc.value.status == status and exc.value.retryable is retryable
    assert "no model loaded" in str(exc.value)


def test_client_splits_large_groups_and_keeps_order():
    service = FakeService().start()
    try:
        client = ServiceClient(service.url, max_crops=3)
        crops = [np.full((48, 48), v, np.uint8) for v in (0, 250, 0, 250, 0, 250, 0)]
        labels = [p.label for p in client.classify(crops)]
        assert service.requests == 3 and labels == ["angry", "neutral"] * 3 + ["angry"]
        assert client.info()["model_version"] == "fake-1" and client.ready()
    finally:
        service.stop()
    assert not client.ready()


def test_client_refuses_non_2d_crops():
    with pytest.raises(ValueError):
        ServiceClient("http://127.0.0.1:9").classify([np.zeros((48, 48, 3), np.uint8)])


def test_face_finder_detect_every_reuses_boxes(face_video):
    cap = cv2.VideoCapture(str(face_video))
    frame = cap.read()[1]
    cap.release()
    black = np.zeros_like(frame)
    finder = FaceFinder(PARAMS.faces, detect_every=2)
    boxes = [f.box for f in finder.find(frame)]       # frame 0: detected
    assert boxes
    reused = finder.find(black)                       # frame 1: same boxes, new pixels
    assert [f.box for f in reused] == boxes and reused[0].crop.shape == (48, 48)
    assert not reused[0].crop.any()
    assert finder.find(black) == []                   # frame 2: detects again, finds nothing


def test_parse_source():
    assert parse_source("0") == 0 and parse_source(2) == 2
    assert parse_source("rtsp://cam/1") == "rtsp://cam/1" and parse_source("a.mp4") == "a.mp4"


def test_overlay_draws_without_error():
    frame = np.zeros((240, 320, 3), np.uint8)
    tracker = Tracker()
    face = Face(Box(100, 10, 60, 60), CROP, track=tracker.assign([Box(100, 10, 60, 60)], 0)[0])
    views = merge_outcome([face], Outcome([Prediction("happy", 0.93)]), tracker, 0)
    status = ResilientClassifier(ServiceClient("http://127.0.0.1:9")).status()
    annotate(frame, views, status_lines(12.0, 1, status), ["1 angry"], ["notice"])
    assert frame.any()
