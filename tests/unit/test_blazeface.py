"""BlazeFace on inputs larger than the model's own: anchors, shapes, and what it buys."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from ferops.blazeface import VARIANTS, BlazeFace, anchors, input_shape
from ferops.detection import find_faces
from tests.factories import PARAMS

SHORT = VARIANTS["short"]


def astronaut() -> np.ndarray:
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)  # 512x512, face at ~(225, 125)


@pytest.mark.parametrize("image_hw, side, expected", [
    ((480, 640), 256, (192, 256)),   # a 4:3 webcam frame: no letterbox at all
    ((640, 480), 256, (256, 192)),   # portrait
    ((720, 1280), 256, (144, 256)),  # 16:9
    ((500, 700), 256, (192, 256)),   # 182.9 rounds up to the 16 px stride
    ((1, 30000), 256, (16, 256)),    # a strip still gets one stride
    ((480, 640), 128, (128, 128)),   # the model's own size keeps its square input
])
def test_input_shape_keeps_the_aspect_ratio_on_the_stride_grid(image_hw, side, expected):
    assert input_shape(SHORT, image_hw, side) == expected


def test_anchors_cover_a_non_square_input_row_by_row():
    a = anchors(SHORT, (192, 256))
    # stride 8: 24 x 32 cells x 2 anchors; stride 16: 12 x 16 cells x 6 anchors.
    assert a.shape == (24 * 32 * 2 + 12 * 16 * 6, 2)
    assert np.allclose(a[0], (0.5 / 32, 0.5 / 24)) and np.allclose(a[1], a[0])
    assert np.allclose(a[2], (1.5 / 32, 0.5 / 24))     # next cell along x
    assert np.allclose(a[64], (0.5 / 32, 1.5 / 24))    # next row after 32 cells x 2
    assert np.allclose(anchors(SHORT), anchors(SHORT, (128, 128)))


def test_the_full_range_model_refuses_another_input_size():
    with pytest.raises(ValueError, match="only takes 192"):
        BlazeFace("full", input_side=256)


@pytest.mark.parametrize("side", [192, 256, 320])
def test_a_larger_input_puts_the_box_where_the_models_own_size_does(side):
    """The box decoding on a resized input: the same face, the same place (within a few px)."""
    (ref,) = BlazeFace("short", 0.55)(astronaut())
    found = BlazeFace("short", 0.55, input_side=side)(astronaut())
    assert len(found) == 1
    (x, y, w, h), (rx, ry, rw, rh) = found[0].box, ref.box
    assert abs((x + w / 2) - (rx + rw / 2)) < 8 and abs((y + h / 2) - (ry + rh / 2)) < 8
    assert abs(w - rw) < 0.15 * rw
    eyes, ref_eyes = found[0].keypoints[:2], ref.keypoints[:2]
    assert np.abs(eyes - ref_eyes).max() < 8


def small_face_frame(head_px: int = 120) -> tuple[np.ndarray, tuple[float, float]]:
    """The astronaut's head, 120 px wide (the face ~55 px), in a 640x480 frame: a person ~3 m
    from a webcam."""
    head = astronaut()[30:250, 120:330]  # 220 x 210, the face near its centre
    k = head_px / 210
    small = cv2.resize(head, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640), 110, np.uint8)
    y, x = 250, 400
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    # The face's centre in the frame: (225, 125) in the photo, through the crop and scale.
    return frame, (x + (225 - 120) * k, y + (125 - 30) * k)


def test_the_default_finds_a_face_the_models_own_input_misses():
    frame, (cx, cy) = small_face_frame()
    own = PARAMS.faces.replace(blazeface=PARAMS.faces.blazeface.replace(
        range="short", short_input_side=128, retry_input_side=0))
    assert find_faces(frame, own) == []
    (face,) = find_faces(frame, PARAMS.faces)
    b = face.box
    assert abs(b.x + b.w / 2 - cx) < 12 and abs(b.y + b.h / 2 - cy) < 12


def test_a_second_look_at_a_larger_input_finds_a_face_the_first_missed(monkeypatch):
    """retry_input_side: a ~38 px face that the 256 px input misses is found at 448 px; in a
    frame where the first look finds a face, the second never runs."""
    frame, (cx, cy) = small_face_frame(90)
    first = PARAMS.faces.replace(blazeface=PARAMS.faces.blazeface.replace(
        range="short", short_input_side=256, retry_input_side=0))
    assert find_faces(frame, first) == []
    retry = first.replace(blazeface=first.blazeface.replace(retry_input_side=448))
    (face,) = find_faces(frame, retry)
    b = face.box
    assert abs(b.x + b.w / 2 - cx) < 10 and abs(b.y + b.h / 2 - cy) < 10 and b.w < 60
    assert face.eyes is not None  # the second look gives eye points for alignment too

    import ferops.detection as detection
    calls = []
    real = BlazeFace.__call__
    monkeypatch.setattr(BlazeFace, "__call__",
                        lambda self, image: calls.append(self.side) or real(self, image))
    big, _ = small_face_frame(200)  # a face the first look finds
    assert len(find_faces(big, retry)) == 1
    assert calls == [256]
    assert isinstance(detection.detector(retry), detection.BlazeFaceDetector)


def test_photos_of_alternating_shapes_reuse_one_interpreter_per_shape():
    """/analyze gets landscape, portrait and square photos in any order: each shape keeps its
    own allocated interpreter (at most SHAPES_KEPT), and an answer never depends on what
    shape came before."""
    face = astronaut()
    photos = [cv2.copyMakeBorder(face, 0, 0, 128, 128, cv2.BORDER_REPLICATE),   # landscape
              cv2.copyMakeBorder(face, 128, 128, 0, 0, cv2.BORDER_REPLICATE),   # portrait
              face]                                                             # square
    alone = [BlazeFace("short", 0.55, input_side=256)(p) for p in photos]
    det = BlazeFace("short", 0.55, input_side=256)
    first = None
    for _ in range(2):
        for photo, want in zip(photos, alone, strict=True):
            got = det(photo)
            assert [f.box for f in got] == [f.box for f in want] and got
        first = first or {shape: id(net) for shape, net in det._nets.items()}
    # The second round built nothing new.
    assert {shape: id(net) for shape, net in det._nets.items()} == first
    assert len({id(n.interp) for n in det._nets.values()}) == len(det._nets) <= det.SHAPES_KEPT
    for extra in range(det.SHAPES_KEPT + 2):  # more shapes than kept: the oldest go
        det(np.zeros((100 + 40 * extra, 300), np.uint8))
    assert len(det._nets) == det.SHAPES_KEPT


def test_two_threads_find_the_same_face_as_one():
    """faces.blazeface.threads changes the speed, never the answer; the camera client, one
    stream, takes camera.detector_threads."""
    from ferops.camera.pipeline import FaceFinder

    frame = cv2.resize(astronaut(), (640, 640))
    one = PARAMS.faces.replace(blazeface=PARAMS.faces.blazeface.replace(threads=1))
    two = PARAMS.faces.replace(blazeface=PARAMS.faces.blazeface.replace(threads=2))
    (a,), (b,) = find_faces(frame, one), find_faces(frame, two)
    assert abs(a.box.x - b.box.x) <= 1 and abs(a.box.w - b.box.w) <= 1
    assert abs(a.score - b.score) < 1e-3
    finder = FaceFinder(PARAMS.faces, camera=PARAMS.camera)
    assert finder.cfg.blazeface.threads == PARAMS.camera.detector_threads
