import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from ferops.faces import (
    Box,
    ImageError,
    crop_face,
    decode_image,
    detect_faces,
    extract_faces,
    normalize_face,
)
from tests.conftest import png_bytes
from tests.factories import PARAMS

CFG = PARAMS.faces


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_decode_color_png_to_gray_matches_opencv_luma(rng):
    rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    gray = decode_image(png_bytes(rgb), CFG.max_pixels)
    assert gray.shape == (30, 40) and gray.dtype == np.uint8
    expected = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert np.abs(gray.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is not an image at all", "not an image"),
])
def test_decode_rejects_non_images(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data, CFG.max_pixels)


def test_decode_rejects_truncated_png_and_jpeg(rng):
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    for blob in (png_bytes(img), jpeg_bytes(img)):
        with pytest.raises(ImageError, match="corrupt or truncated"):
            decode_image(blob[: len(blob) // 2], CFG.max_pixels)


def test_decode_refuses_decompression_bomb_before_decoding():
    # A 30000x30000 PNG of zeros compresses to ~1 MB; decoding it would take 900 MB.
    bomb = Image.new("L", (30000, 30000))
    buf = io.BytesIO()
    bomb.save(buf, format="PNG", compress_level=9)
    with pytest.raises(ImageError, match="too large"):
        decode_image(buf.getvalue(), max_pixels=40_000_000)


def test_detects_the_face_in_a_real_photo():
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)  # 512x512, one face
    boxes = detect_faces(photo, CFG)
    assert len(boxes) == 1
    b = boxes[0]
    # The astronaut's face is roughly at x 170-260, y 70-190 in the image.
    assert 140 < b.x + b.w / 2 < 280 and 60 < b.y + b.h / 2 < 200
    (box, crop), = extract_faces(photo, CFG)
    assert box == b and crop.shape == (48, 48) and crop.dtype == np.uint8


def test_no_face_in_noise(rng):
    assert detect_faces(rng.integers(0, 256, (200, 200), dtype=np.uint8), CFG) == []


def test_detection_from_many_threads_equals_sequential_detection():
    """Concurrent callers with mixed image sizes get exactly the sequential answers (one
    shared cascade gave wrong counts and getScaleData errors here)."""
    from concurrent.futures import ThreadPoolExecutor
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2GRAY)
    images = [cv2.resize(photo, (side, side)) for side in (160, 256, 384, 512, 640, 900)]
    expected = [detect_faces(img, CFG) for img in images]
    assert all(len(boxes) == 1 for boxes in expected)
    jobs = [images[i % len(images)] for i in range(96)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda img: detect_faces(img, CFG), jobs))
    assert got == [expected[i % len(images)] for i in range(96)]


@pytest.mark.parametrize("shape", [(1, 30000), (30000, 2), (3, 3), (1, 1)])
def test_degenerate_shapes_find_no_face_without_an_opencv_error(shape):
    assert detect_faces(np.full(shape, 128, np.uint8), CFG) == []


def test_crop_face_pads_past_the_border():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    crop = crop_face(img, Box(0, 0, 6, 6), margin=0.5)
    assert crop.shape == (12, 12)
    assert crop[0, 0] == img[0, 0]  # replicated edge, not black


def test_normalize_face_any_size_and_channels(rng):
    for shape in [(48, 48), (120, 90), (20, 20), (64, 64, 3)]:
        out = normalize_face(rng.integers(0, 256, shape, dtype=np.uint8), 48)
        assert out.shape == (48, 48) and out.dtype == np.uint8
