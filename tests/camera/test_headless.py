"""Headless runs of the camera client on a real face video against a real HTTP service."""

from __future__ import annotations

import json
import time

import cv2

from ferops.camera import run_headless
from tests.camera.conftest import VIDEO_FRAMES, with_camera
from tests.camera.fakes import CLASSES, FRAME_H, FRAME_W


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def count_video_frames(path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count, size


def test_headless_writes_every_frame_with_labels(face_video, fake_service, params, tmp_path):
    out_video, out_jsonl = tmp_path / "out" / "annotated.mp4", tmp_path / "out" / "faces.jsonl"
    summary = run_headless(str(face_video), fake_service.url, out_video, out_jsonl, params)

    assert count_video_frames(out_video) == (VIDEO_FRAMES, (FRAME_W, FRAME_H))
    records = read_jsonl(out_jsonl)
    assert [r["frame"] for r in records] == list(range(VIDEO_FRAMES))
    assert [r["t"] for r in records] == [round(i / 10, 3) for i in range(VIDEO_FRAMES)]
    faces = [f for r in records for f in r["faces"]]
    # The astronaut's face is found in (nearly) every frame; Haar may add a rare extra box.
    assert sum(bool(r["faces"]) for r in records) >= VIDEO_FRAMES - 2
    for r in records:
        assert r["service_ok"] is True
        for f in r["faces"]:
            x, y, w, h = f["box"]
            assert 0 <= x < x + w <= FRAME_W and 0 <= y < y + h <= FRAME_H and w > 20
            assert f["label"] in CLASSES and 0 <= f["confidence"] <= 1
            assert set(f["probabilities"]) == set(CLASSES)
            assert f["model_version"] == "fake-1"
    assert summary.frames == VIDEO_FRAMES and summary.errors == 0
    assert summary.faces == summary.labeled == len(faces)
    assert summary.model_versions == ["fake-1"]


def test_only_face_crops_leave_the_machine(face_video, fake_service, params, tmp_path):
    summary = run_headless(str(face_video), fake_service.url, None, tmp_path / "f.jsonl", params,
                           max_frames=10)
    assert summary.frames == 10 and fake_service.requests >= 9
    assert fake_service.violations == []   # every crop 48x48 ints, body holds only "crops"
    assert fake_service.crops == summary.faces
    # A 640x480 frame as JSON would be >1 MB; a request of one or two crops is ~10-25 kB.
    assert fake_service.max_body < 64 * 1024
    assert fake_service.max_concurrent <= params.camera.max_inflight


def test_service_outage_is_survived(face_video, fake_service, params, tmp_path):
    port = fake_service.port

    def outage(record: dict) -> None:
        # Paced like the 10 fps clip it is (at 30 ms a frame): BlazeFace reads all 40 frames
        # in ~0.1 s, faster than one backoff, so an unpaced run would never see recovery.
        time.sleep(0.03)
        if record["frame"] == 6:
            fake_service.stop()
        elif record["frame"] == 18:
            fake_service.start(port)   # the same address comes back

    out_jsonl = tmp_path / "f.jsonl"
    summary = run_headless(str(face_video), f"http://127.0.0.1:{port}", tmp_path / "v.mp4",
                           out_jsonl, with_camera(params, max_inflight=2, timeout_s=1.0),
                           on_frame=outage, backoff_max_s=0.1)

    records = read_jsonl(out_jsonl)
    assert len(records) == VIDEO_FRAMES == summary.frames
    down = [r["frame"] for r in records if not r["service_ok"]]
    assert down and min(down) > 6 and summary.errors >= 1
    assert all(f["label"] is None for r in records if not r["service_ok"] for f in r["faces"])
    after = [r for r in records if r["frame"] > max(down)]
    assert len(after) >= 5
    assert all(f["label"] in CLASSES for r in after for f in r["faces"])
    assert summary.frames_service_down == len([r for r in records
                                               if not r["service_ok"] and r["faces"]])
