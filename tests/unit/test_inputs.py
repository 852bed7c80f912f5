"""serving/inputs.py: request bodies -> model inputs, in memory, every refusal a short 4xx."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from serving.inputs import MAX_ERROR_BYTES, InputError, error_body, parse_crops, read_upload

S = 48


def crop(value: int = 128) -> list:
    return [[value] * S for _ in range(S)]


def test_json_and_raw_crops_give_the_same_array():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (3, S, S), dtype=np.uint8)
    from_json = parse_crops(orjson.dumps({"crops": arr.tolist()}), "application/json", S, 8)
    from_raw = parse_crops(arr.tobytes(), "application/octet-stream", S, 8)
    assert from_json.dtype == np.uint8 and from_json.shape == (3, S, S)
    assert np.array_equal(from_json, arr) and np.array_equal(from_raw, arr)


BAD_CROPS = {
    "not json": (b"{nope", 400, "not valid JSON"),
    "a list": (b"[1, 2]", 400, "JSON object"),
    "missing crops": (b"{}", 400, "missing field"),
    "unknown field": (orjson.dumps({"crops": [crop()], "x": 1}), 400, "unknown field"),
    "empty list": (orjson.dumps({"crops": []}), 400, "non-empty"),
    "too many": (orjson.dumps({"crops": [crop()] * 9}), 400, "limit of 8"),
    "short row": (orjson.dumps({"crops": [[[0] * 47] + [[0] * S] * 47]}), 400, "crops[0][0]"),
    "short crop": (orjson.dumps({"crops": [[[0] * S] * 47]}), 400, "48 rows"),
    "too deep": (orjson.dumps({"crops": [[[[0]] * S] * S]}), 400, "integers 0-255"),
    "float pixels": (orjson.dumps({"crops": [[[0.5] * S] * S]}), 400, "integers 0-255"),
    "bool pixels": (orjson.dumps({"crops": [[[True] * S] * S]}), 400, "integers 0-255"),
    "string pixels": (orjson.dumps({"crops": [[["7"] * S] * S]}), 400, "integers 0-255"),
    "null pixel": (orjson.dumps({"crops": [[[None] + [0] * 47] + [[0] * S] * 47]}), 400,
                   "integers 0-255"),
    "out of range": (orjson.dumps({"crops": [crop(300)]}), 400, "2304 pixel(s) outside"),
    "negative": (orjson.dumps({"crops": [crop(-1)]}), 400, "outside 0-255"),
    "huge int": (b'{"crops": [[[' + b"9" * 30 + b"]]]}", 400, "crops[0]"),
}


@pytest.mark.parametrize("name", list(BAD_CROPS))
def test_bad_crops_are_refused_with_a_short_reason(name):
    body, status, reason = BAD_CROPS[name]
    with pytest.raises(InputError) as err:
        parse_crops(body, "application/json", S, 8)
    assert err.value.status == status and reason in err.value.message, err.value.message
    assert len(error_body(err.value.message)) <= MAX_ERROR_BYTES


@pytest.mark.parametrize("size", [0, 100, S * S + 1, S * S * 9])
def test_raw_crops_of_the_wrong_length_are_refused(size):
    with pytest.raises(InputError) as err:
        parse_crops(b"\0" * size, "application/octet-stream", S, 8)
    assert err.value.status == 400


def test_a_json_body_larger_than_any_valid_one_is_refused_unparsed():
    big = b'{"crops": [' + b"0," * 200_000 + b"0]}"
    with pytest.raises(InputError) as err:
        parse_crops(big, "application/json", S, 8)
    assert err.value.status == 413 and "octet-stream" in err.value.message
    pretty = orjson.dumps({"crops": [crop(255)] * 8}, option=orjson.OPT_INDENT_2)
    assert parse_crops(pretty, "application/json", S, 8).shape == (8, S, S)


def test_other_content_types_are_415():
    with pytest.raises(InputError) as err:
        parse_crops(b"x", "text/xml", S, 8)
    assert err.value.status == 415


def multipart(*parts: bytes, boundary: str = "XyZ") -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    return body + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def file_part(name: str = "image", filename: str = "a.jpg", data: bytes = b"JPEGDATA") -> bytes:
    return (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data


def test_one_file_part_gives_its_bytes_whatever_the_filename():
    body, ctype = multipart(file_part(filename="x" * 300, data=b"\x00\xffbytes\r\n--"))
    assert read_upload(body, ctype) == b"\x00\xffbytes\r\n--"


def test_a_raw_image_body_is_accepted_as_is():
    assert read_upload(b"PNGDATA", "image/png") == b"PNGDATA"


def test_a_text_field_where_the_file_belongs_is_refused_and_never_fetched():
    text = b'Content-Disposition: form-data; name="image"\r\n\r\nhttp://127.0.0.1:9/x.png'
    body, ctype = multipart(text)
    with pytest.raises(InputError) as err:
        read_upload(body, ctype)
    assert err.value.status == 400 and "never downloads URLs" in err.value.message


@pytest.mark.parametrize("parts, reason", [
    ((file_part(name="file"),), "got 1: 'file'"),
    ((file_part(), file_part()), "got 2"),
    ((file_part(),) * 2000, "got 5+"),
])
def test_wrong_or_too_many_parts_are_refused(parts, reason):
    body, ctype = multipart(*parts)
    with pytest.raises(InputError) as err:
        read_upload(body, ctype)
    assert err.value.status == 400 and reason in err.value.message, err.value.message
    assert len(error_body(err.value.message)) <= MAX_ERROR_BYTES


@pytest.mark.parametrize("body, ctype, status", [
    (b"anything", "multipart/form-data", 400),                       # no boundary
    (b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\nAB",
     "multipart/form-data; boundary=XyZ", 400),                      # truncated, no end
    (b"garbage without boundaries", "multipart/form-data; boundary=XyZ", 400),
    (b"x", "text/plain", 415),
    (b"x", None, 415),
    (b"x", "application/json", 415),
])
def test_malformed_multipart_and_wrong_types_are_4xx(body, ctype, status):
    with pytest.raises(InputError) as err:
        read_upload(body, ctype)
    assert err.value.status == status


def test_error_bodies_stay_small_whatever_the_message():
    assert len(error_body("x" * 100_000)) <= MAX_ERROR_BYTES
    assert orjson.loads(error_body("short"))["error"] == "short"
