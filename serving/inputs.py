"""Request bodies -> model inputs, in memory, with short reasons for every refusal.

The service reads /classify and /analyze bodies itself instead of through BentoML's input
layer, because that layer (BentoML 1.4.39) downloads any URL sent where a file is expected
(a server-side request forgery), writes every upload to a temporary file, answers several
malformed bodies with 500, and validates crops pixel by pixel on the event loop (0.8 s for a
7 MB body, during which /livez waited). Everything here is a pure function of the body bytes:
it is called from a worker thread and never touches the disk or the network.
"""

from __future__ import annotations

import numpy as np
import orjson
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_ERROR_BYTES = 4096      # an error body never exceeds this, whatever the request held
MAX_PARTS = 4               # multipart parts read before refusing (one is expected)
MAX_PART_HEADER_BYTES = 8192
RAW_TYPES = ("application/octet-stream",)
# JSON bytes allowed per pixel of the largest valid request: "255, " is 5, pretty-printed
# (indent 2) 13.3. A larger body cannot be valid, and parsing it would hold the GIL
# (a 7 MB body of integers: ~0.2 s during which /livez waited), so it is refused unread.
JSON_BYTES_PER_PIXEL = 16
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/gif", "image/webp",
               "image/tiff")


class InputError(Exception):
    """A request the service refuses: HTTP status and a reason fit for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str, **extra) -> bytes:
    """{"error": message, ...} as JSON, cut so the whole body stays under MAX_ERROR_BYTES."""
    if len(message) > MAX_ERROR_BYTES // 2:
        message = message[: MAX_ERROR_BYTES // 2] + "..."
    body = orjson.dumps({"error": message, **extra})
    if len(body) > MAX_ERROR_BYTES:
        body = orjson.dumps({"error": message})
    return body


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


# ---------------------------------------------------------------- /classify


def parse_crops(body: bytes, content_type: str | None, size: int, max_crops: int) -> np.ndarray:
    """A /classify body -> (N, size, size) uint8 crops.

    JSON: {"crops": [[[0-255] * size] * size, ...]}. application/octet-stream: N * size * size
    raw uint8 pixels, row-major, crops back to back (2,304 bytes per 48x48 face instead of
    ~9 KB of JSON).
    """
    kind = media_type(content_type)
    if kind in RAW_TYPES:
        return _raw_crops(body, size, max_crops)
    if kind not in ("application/json", ""):
        raise InputError(415, f"unsupported content type {kind!r}: send application/json "
                              f"{{\"crops\": [...]}} or application/octet-stream raw pixels")
    most = max_crops * size * size * JSON_BYTES_PER_PIXEL + 4096
    if len(body) > most:
        raise InputError(413, f"JSON body of {len(body):,} bytes is larger than any valid one "
                              f"({most:,} bytes for {max_crops} crops); send raw pixels as "
                              f"application/octet-stream for the compact form")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(400, f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise InputError(400, f"expected a JSON object {{\"crops\": [...]}}, got "
                              f"{type(doc).__name__}")
    unknown = sorted(k for k in doc if k != "crops")
    if unknown:
        raise InputError(400, f"unknown field(s) {unknown[:5]}: the only field is 'crops'")
    if "crops" not in doc:
        raise InputError(400, "missing field 'crops' (a list of face crops)")
    crops = doc["crops"]
    if not isinstance(crops, list) or not crops:
        raise InputError(400, f"'crops' must be a non-empty list of {size}x{size} crops")
    if len(crops) > max_crops:
        raise InputError(400, f"{len(crops)} crops, more than the limit of {max_crops} per "
                              f"request (serving.max_crops)")
    return np.stack([_one_crop(i, c, size) for i, c in enumerate(crops)])


def _one_crop(i: int, crop, size: int) -> np.ndarray:
    where = f"crops[{i}]"
    if not isinstance(crop, list) or len(crop) != size:
        raise InputError(400, f"{where} must be a list of {size} rows, got "
                              f"{_describe(crop)}")
    for j, row in enumerate(crop):
        if not isinstance(row, list) or len(row) != size:
            raise InputError(400, f"{where}[{j}] must be a list of {size} pixels, got "
                                  f"{_describe(row)}")
    try:
        arr = np.array(crop)
    except (ValueError, OverflowError, TypeError):
        arr = np.array(crop, dtype=object)
    if arr.dtype.kind not in "iu" or arr.shape != (size, size):
        bad = next((v for row in crop for v in row
                    if not isinstance(v, int) or isinstance(v, bool)), None)
        raise InputError(400, f"{where}: pixels must be integers 0-255, found "
                              f"{_describe(bad)}")
    outside = (arr < 0) | (arr > 255)
    if outside.any():
        r, c = np.argwhere(outside)[0]
        raise InputError(400, f"{where}: {int(outside.sum())} pixel(s) outside 0-255, the "
                              f"first at [{r}][{c}] = {int(arr[r, c])}")
    return arr.astype(np.uint8)


def _describe(value) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = orjson.dumps(value, default=str).decode()
    return f"{type(value).__name__} {text[:40]}"


def _raw_crops(body: bytes, size: int, max_crops: int) -> np.ndarray:
    per = size * size
    if not body or len(body) % per:
        raise InputError(400, f"raw crops: {len(body):,} bytes is not a positive multiple of "
                              f"{per:,} ({size}x{size} uint8 pixels per crop)")
    n = len(body) // per
    if n > max_crops:
        raise InputError(400, f"{n} crops, more than the limit of {max_crops} per request "
                              f"(serving.max_crops)")
    return np.frombuffer(body, np.uint8).reshape(n, size, size)


# ---------------------------------------------------------------- /analyze


def read_upload(body: bytes, content_type: str | None) -> bytes:
    """An /analyze body -> the image file's bytes.

    Accepts multipart/form-data with exactly one *file* part named `image` (curl -F
    image=@photo.jpg), or the image itself as the body (Content-Type image/jpeg, ...). A text
    part where the file belongs is refused: the service never fetches what a client names.
    """
    kind = media_type(content_type)
    if kind in IMAGE_TYPES or kind in RAW_TYPES:
        return body
    if kind != "multipart/form-data":
        raise InputError(415, "send the image as multipart/form-data with one file field "
                              "'image' (e.g. curl -F image=@photo.jpg), or as the body with "
                              "Content-Type image/jpeg or image/png")
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InputError(400, "multipart body without a valid boundary parameter")
    parts = _multipart_parts(body, boundary)
    names = [p["name"] for p in parts]
    if names != ["image"]:
        shown = ", ".join(repr(n) for n in names[:MAX_PARTS]) or "none"
        raise InputError(400, f"expected exactly one multipart field 'image' (a JPEG or PNG "
                              f"file), got {len(names)}{'+' if len(names) >= MAX_PARTS else ''}"
                              f": {shown}")
    part = parts[0]
    if part["filename"] is None:
        raise InputError(400, "field 'image' is a text field, not a file: send the image file "
                              "itself (curl -F image=@photo.jpg); this service never "
                              "downloads URLs")
    return part["data"]


def _multipart_parts(body: bytes, boundary: bytes) -> list[dict]:
    """Every part's name, filename (None for a text field) and bytes, all in memory."""
    parts: list[dict] = []
    state = {"field": b"", "value": b"", "headers": {}, "data": [], "header_bytes": 0}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise _TooManyPartsError
        state.update(headers={}, data=[], header_bytes=0)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        _count_header(end - start)
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        _count_header(end - start)
        state["value"] += data[start:end]

    def _count_header(n: int) -> None:
        state["header_bytes"] += n
        if state["header_bytes"] > MAX_PART_HEADER_BYTES:
            raise InputError(400, f"multipart part headers longer than "
                                  f"{MAX_PART_HEADER_BYTES:,} bytes")

    def on_header_end() -> None:
        state["headers"][state["field"].strip().lower()] = state["value"].strip()
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        disposition, params = parse_options_header(state["headers"].get(b"content-disposition"))
        if disposition.lower() != b"form-data":
            raise InputError(400, "multipart part without 'Content-Disposition: form-data'")
        filename = params.get(b"filename")
        parts.append({"name": params.get(b"name", b"").decode("latin-1"),
                      "filename": None if filename is None else filename.decode("latin-1"),
                      "data": b"".join(state["data"])})

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end,
                 "on_part_data": on_part_data, "on_part_end": on_part_end}
    parser = MultipartParser(boundary, callbacks)
    try:
        parser.write(body)
        parser.finalize()
    except _TooManyPartsError:
        parts.append({"name": "...", "filename": None, "data": b""})
    except MultipartParseError as exc:
        raise InputError(400, f"malformed multipart body: {str(exc)[:200]}") from None
    if not parts:
        raise InputError(400, "multipart body with no parts (expected one file field 'image')")
    return parts


class _TooManyPartsError(Exception):
    """More multipart parts than MAX_PARTS: parsing stops early."""
