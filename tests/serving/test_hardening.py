"""The real service under concurrency and hostile input: right answers, 4xx JSON, no fetches.

Every request goes to 127.0.0.1 only (the URL in the forgery test points at a listener of
the test's own on 127.0.0.1).
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

# Equal, probabilities within 1e-4 (batching changes the last float bits): one rule for
# the tests and the soak benchmark.
from benchmarks.soak import same as same_answer
from PIL import Image

from tests.serving.conftest import LIMITS, Server, post_json
from tests.serving.test_service import astronaut_jpeg, bomb_png, crops

pytestmark = pytest.mark.slow
MAX_ERROR_BYTES = 4096


def encode(img: Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def astronaut(side: int) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize((side, side))


def test_concurrent_answers_equal_the_sequential_answers(server: Server):
    """8 clients, photos of six sizes (one face each), a face-free photo and crops: 320
    requests, each answer identical to the one the service gives a lone client."""
    photos = [encode(astronaut(s)) for s in (160, 256, 384, 512, 700, 1000)]
    photos.append(encode(Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (300, 400), dtype=np.uint8))))
    bodies = [("analyze", p) for p in photos] + [("classify", c) for c in
                                                 (crops(1, 3), crops(4, 5), crops(8, 7))]

    def call(job):
        endpoint, payload = job
        if endpoint == "analyze":
            r = requests.post(f"{server.url}/analyze", timeout=60,
                              files={"image": ("p.jpg", payload, "image/jpeg")})
        else:
            r = post_json(f"{server.url}/classify", {"crops": payload}, timeout=60)
        return r.status_code, r.json()

    expected = [call(job) for job in bodies]
    assert all(status == 200 for status, _ in expected), expected
    assert [e[1]["faces_found"] for e in expected[:7]] == [1] * 6 + [0]
    jobs = [i % len(bodies) for i in range(320)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: call(bodies[i]), jobs))
    wrong = [(i, g) for i, g in zip(jobs, got, strict=True) if g[0] != 200 or
             not same_answer(g[1], expected[i][1])]
    assert wrong == [], wrong[:3]


class CountingListener:
    """A TCP listener on 127.0.0.1 that counts connections: proof of any fetch attempt."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def test_the_service_never_fetches_a_url_a_client_sends(server: Server):
    listener = CountingListener()
    url = f"http://127.0.0.1:{listener.port}/x.png"
    attempts = [
        ("analyze", {"files": {"image": (None, url)}}),                  # a text field
        ("analyze", {"files": {"image": (None, f'"{url}"')}}),
        ("analyze", {"data": url, "headers": {"content-type": "application/json"}}),
        ("analyze", {"data": json.dumps(url), "headers": {"content-type": "application/json"}}),
        ("analyze", {"data": url, "headers": {"content-type": "text/plain"}}),
        ("analyze", {"data": url, "headers": {"content-type": "image/png"}}),
        ("classify", {"files": {"crops": (None, url)}}),
        ("classify", {"data": url, "headers": {"content-type": "application/json"}}),
        ("info", {"data": url, "headers": {"content-type": "application/json"}}),
    ]
    for endpoint, kw in attempts:
        r = requests.post(f"{server.url}/{endpoint}", timeout=30, **kw)
        assert 400 <= r.status_code < 500, (endpoint, kw, r.status_code, r.text[:200])
    time.sleep(1)
    assert listener.connections == 0
    with socket.create_connection(("127.0.0.1", listener.port)):  # the listener does count
        pass
    time.sleep(0.2)
    assert listener.connections == 1


def multipart(parts: list[bytes], boundary: bytes = b"b0undary") -> tuple[bytes, dict]:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return body + b"--" + boundary + b"--\r\n", {
        "content-type": "multipart/form-data; boundary=" + boundary.decode()}


def file_part(data: bytes, name: str = "image", filename: str = "p.jpg") -> bytes:
    return (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data


def hostile_cases() -> dict[str, tuple]:
    """name -> (method, path, requests kwargs, expected statuses). 100+ cases."""
    jpeg = astronaut_jpeg()
    png = encode(astronaut(200), "PNG")
    gray = np.full((48, 48), 128).tolist()
    j = {"content-type": "application/json"}
    cases: dict[str, tuple] = {}

    def classify(name, body, status=(400,), headers=j):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        cases[f"classify: {name}"] = ("POST", "/classify", {"data": data, "headers": headers},
                                      status)

    def analyze(case, data, status=(400,), **part):
        body, headers = multipart([file_part(data, **part)])
        cases[f"analyze: {case}"] = ("POST", "/analyze", {"data": body, "headers": headers},
                                     status)

    classify("not json", b"{nope")
    classify("empty body", b"")
    classify("whitespace body", b"   \n ")
    classify("null", b"null")
    classify("number", b"42")
    classify("string", b'"crops"')
    classify("list", b"[[1]]")
    classify("missing crops", {})
    classify("unknown field", {"crops": [gray], "images": 1})
    classify("wrong field", {"images": [gray]})
    classify("crops null", {"crops": None})
    classify("crops dict", {"crops": {"a": 1}})
    classify("crops string", {"crops": "AAAA"})
    classify("empty crops", {"crops": []})
    classify("too many crops", {"crops": [gray] * (LIMITS["max_crops"] + 1)})
    classify("1000 crops", {"crops": [[[0]]] * 1000})
    classify("short row", {"crops": [[[0] * 47] + [[0] * 48] * 47]})
    classify("long row", {"crops": [[[0] * 49] * 48]})
    classify("47 rows", {"crops": [[[0] * 48] * 47]})
    classify("flat crop", {"crops": [[0] * 2304]})
    classify("4-D crop", {"crops": [[[[0]] * 48] * 48]})
    classify("float pixels", {"crops": [[[0.5] * 48] * 48]})
    classify("bool pixels", {"crops": [[[True] * 48] * 48]})
    classify("string pixels", {"crops": [[["1"] * 48] * 48]})
    classify("null pixel", {"crops": [[[None] * 48] * 48]})
    classify("pixel 256", {"crops": [[[256] * 48] * 48]})
    classify("pixel -1", {"crops": [[[-1] * 48] * 48]})
    classify("pixel 1e300", {"crops": [[[1e300] * 48] * 48]})
    classify("huge integer", b'{"crops": [[[' + b"9" * 400 + b"]]]}")
    classify("NaN", b'{"crops": [[[NaN]]]}')
    classify("Infinity", b'{"crops": [[[Infinity]]]}')
    classify("deep nesting", b"[" * 100_000 + b"]" * 100_000)
    classify("deep nesting in crops", b'{"crops": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    classify("2304 bad pixels", {"crops": [[[999] * 48] * 48]})
    classify("mixed good and bad crops", {"crops": [gray, [[0] * 48] * 40]})
    classify("invalid utf-8", b'{"crops": "\xff\xfe"}')
    classify("utf-8 BOM", b"\xef\xbb\xbf" + json.dumps({"crops": [gray]}).encode(),
             status=(200, 400))
    classify("duplicate key", b'{"crops": [], "crops": []}')
    classify("trailing garbage", json.dumps({"crops": [gray]}).encode() + b"xx")
    classify("raw: 1 byte", b"\0", headers={"content-type": "application/octet-stream"})
    classify("raw: 2305 bytes", b"\0" * 2305,
             headers={"content-type": "application/octet-stream"})
    classify("raw: too many crops", b"\0" * 2304 * (LIMITS["max_crops"] + 1),
             headers={"content-type": "application/octet-stream"})
    classify("raw: empty", b"", headers={"content-type": "application/octet-stream"})
    classify("text/plain", {"crops": [gray]}, (415,), {"content-type": "text/plain"})
    classify("xml", b"<crops/>", (415,), {"content-type": "application/xml"})
    classify("form-urlencoded", b"crops=1", (415,),
             {"content-type": "application/x-www-form-urlencoded"})
    body, headers = multipart([b'Content-Disposition: form-data; name="crops"\r\n\r\n[[0]]'])
    classify("multipart", body, (415,), headers)
    classify("no content type, valid", {"crops": [gray]}, (200,), {})
    classify("valid raw crop", bytes(2304), (200,),
             {"content-type": "application/octet-stream"})

    analyze("non-image bytes", b"hello, not a picture" * 50)
    analyze("empty file", b"")
    analyze("truncated jpeg", jpeg[: len(jpeg) // 2])
    analyze("truncated png", png[: len(png) // 2])
    analyze("png header only", png[:16])
    analyze("jpeg header only", jpeg[:4])
    analyze("gif header only", b"GIF89a")
    analyze("decompression bomb", bomb_png())
    analyze("1x30000", encode(Image.new("L", (30000, 1), 128), "PNG"), (422,))
    analyze("30000x2", encode(Image.new("L", (2, 30000), 128), "PNG"), (422,))
    analyze("1x1", encode(Image.new("L", (1, 1)), "PNG"), (422,))
    analyze("20x20", encode(Image.new("L", (20, 20)), "PNG"), (422,))
    analyze("too many faces", astronaut_jpeg(3), (422,))
    analyze("random bytes", np.random.default_rng(0).bytes(5000))
    analyze("svg", b'<svg xmlns="http://www.w3.org/2000/svg"><image href="http://127.0.0.1:9/"/>'
                   b"</svg>")
    analyze("html", b"<html><img src='http://127.0.0.1:9/x.png'></html>")
    analyze("zip bytes", b"PK\x03\x04" + b"\0" * 100)
    analyze("300-char filename", jpeg, (200,), filename="x" * 300 + ".jpg")
    analyze("path traversal filename", jpeg, (200,), filename="../../../../tmp/evil.jpg")
    analyze("unicode filename", jpeg, (200,), filename="\u00e9\u00e8\u4e2d.jpg")
    analyze("null byte filename", jpeg, (200,), filename="a\0b.jpg")
    analyze("empty filename", jpeg, (200,), filename="")
    analyze("cmyk jpeg", encode(astronaut(320).convert("CMYK")), (200,))
    analyze("16-bit png", encode(Image.fromarray(
        np.asarray(astronaut(200).convert("L"), np.uint16) * 256), "PNG"), (200,))
    analyze("bmp", encode(astronaut(200), "BMP"), (200,))
    analyze("gif", encode(astronaut(200), "GIF"), (200,))
    analyze("webp", encode(astronaut(200), "WEBP"), (200,))
    analyze("rgba png", encode(astronaut(200).convert("RGBA"), "PNG"), (200,))
    analyze("palette png", encode(astronaut(200).convert("P"), "PNG"), (200,))
    analyze("no face (noise)", encode(Image.fromarray(np.random.default_rng(2).integers(
        0, 256, (200, 200), dtype=np.uint8))), (200,))
    analyze("wrong field name", jpeg, name="file")
    analyze("empty field name", jpeg, name="")

    def raw_analyze(name, body, headers, status=(400,)):
        cases[f"analyze: {name}"] = ("POST", "/analyze", {"data": body, "headers": headers},
                                     status)

    raw_analyze("2000 parts", *multipart([file_part(jpeg[:100])] * 2000))
    raw_analyze("two image parts", *multipart([file_part(jpeg), file_part(jpeg)]))
    raw_analyze("image plus extra field", *multipart(
        [file_part(jpeg), b'Content-Disposition: form-data; name="x"\r\n\r\n1']))
    raw_analyze("text field with a file name", *multipart(
        [b'Content-Disposition: form-data; name="image"\r\n\r\nnot a file']))
    raw_analyze("no parts", b"--b0undary--\r\n",
                {"content-type": "multipart/form-data; boundary=b0undary"})
    raw_analyze("no boundary", b"--x\r\n\r\n", {"content-type": "multipart/form-data"})
    raw_analyze("empty boundary", b"--\r\n", {"content-type": "multipart/form-data; boundary="})
    raw_analyze("huge boundary", b"x", {"content-type": "multipart/form-data; boundary=" +
                                       "b" * 500})
    raw_analyze("wrong boundary", multipart([file_part(jpeg)])[0],
                {"content-type": "multipart/form-data; boundary=other"})
    raw_analyze("missing end", multipart([file_part(jpeg)])[0][:-14],
                multipart([])[1])
    raw_analyze("no content-disposition", *multipart([b"Content-Type: image/jpeg\r\n\r\n" +
                                                      jpeg]))
    raw_analyze("attachment disposition", *multipart(
        [b'Content-Disposition: attachment; name="image"; filename="a"\r\n\r\n' + jpeg]))
    raw_analyze("huge part header", *multipart(
        [b"X-Pad: " + b"a" * 20000 + b"\r\n" + file_part(jpeg)]))
    raw_analyze("garbage multipart", b"\0\1\2" * 1000, multipart([])[1])
    raw_analyze("json body", json.dumps({"image": "x"}).encode(), j, (415,))
    raw_analyze("text/plain body", b"hello", {"content-type": "text/plain"}, (415,))
    raw_analyze("no content type", jpeg, {}, (415,))
    raw_analyze("urlencoded", b"image=x", {"content-type": "application/x-www-form-urlencoded"},
                (415,))
    raw_analyze("raw jpeg body", jpeg, {"content-type": "image/jpeg"}, (200,))
    raw_analyze("raw garbage as image/png", b"garbage", {"content-type": "image/png"})

    cases["GET /classify"] = ("GET", "/classify", {}, (405,))
    cases["PUT /analyze"] = ("PUT", "/analyze", {"data": b"x"}, (405,))
    cases["DELETE /info"] = ("DELETE", "/info", {}, (405,))
    cases["unknown path"] = ("GET", "/nope", {}, (404,))
    cases["POST unknown path"] = ("POST", "/admin", {"data": b"{}"}, (404,))
    cases["long path"] = ("GET", "/" + "a" * 4000, {}, (404,))
    cases["path traversal"] = ("GET", "/../../etc/passwd", {}, (404,))
    cases["encoded traversal"] = ("GET", "/%2e%2e/%2e%2e/etc/passwd", {}, (404,))
    cases["classify subpath"] = ("POST", "/classify/extra", {"data": b"{}"}, (404,))
    cases["body over the limit"] = ("POST", "/classify", {
        "data": b"0" * (LIMITS["max_body_mb"] * 2**20 + 1), "headers": j}, (413,))
    cases["info with garbage"] = ("POST", "/info", {"data": b"{nope", "headers": j}, (400,))
    cases["reload with garbage"] = ("POST", "/reload", {"data": b"[[[", "headers": j}, (400,))
    return cases


CASES = hostile_cases()


def test_the_hostile_suite_has_over_a_hundred_cases():
    assert len(CASES) >= 100


@pytest.fixture(scope="module")
def valid(server: Server):
    """A valid request and its answer from a lone client, replayed between hostile cases."""
    body = {"crops": crops(2, 11)}
    answer = post_json(server.url + "/classify", body).json()
    return body, answer


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_gets_a_small_json_4xx_and_valid_requests_stay_right(
        name: str, server: Server, valid):
    method, path, kw, expected = CASES[name]
    r = requests.request(method, server.url + path, timeout=60, **kw)
    assert r.status_code in expected, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert len(r.content) <= MAX_ERROR_BYTES or r.status_code == 200, len(r.content)
    if r.status_code >= 400:
        assert r.json()["error"], r.text[:300]
    body, answer = valid
    again = post_json(server.url + "/classify", body)
    assert again.status_code == 200 and same_answer(again.json(), answer)


def test_the_hostile_suite_writes_at_most_one_short_log_line_per_request(server: Server):
    before = server.log.stat().st_size
    for method, path, kw, _ in CASES.values():
        requests.request(method, server.url + path, timeout=60, **kw)
    time.sleep(1)
    grown = server.log.read_bytes()[before:]
    lines = grown.splitlines()
    assert len(lines) <= len(CASES) and all(len(line) < 400 for line in lines), grown[-2000:]


def test_stalled_bodies_are_dropped_and_do_not_lock_out_other_clients(server: Server):
    """520 connections that send half a body and stop: each gets 408 after
    serving.body_timeout_s, and the service answers others again right after."""
    held = []
    for _ in range(520):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  b"application/json\r\nContent-Length: 10000\r\n\r\n{\"crops\": [")
        held.append(s)
    try:
        time.sleep(LIMITS["body_timeout_s"] + 2)
        r = post_json(server.url + "/classify", {"crops": crops(1)})
        assert r.status_code == 200, r.text
        answered = 0
        for s in held[:50]:
            s.settimeout(5)
            answered += s.recv(4096).startswith(b"HTTP/1.1 408")
        assert answered == 50
    finally:
        for s in held:
            s.close()


@pytest.fixture(scope="module")
def keyed(served: dict, tmp_path_factory):
    """A second server with a non-ASCII API key, on its own copy of the store: BentoML
    clears the Prometheus folder under $BENTOML_HOME at start, so sharing one would wipe the
    session server's metrics."""
    import shutil
    root = tmp_path_factory.mktemp("keyed")
    shutil.copytree(served["env"]["BENTOML_HOME"], root / "bentoml")
    env = {**served["env"], "FEROPS_API_KEY": "cl\u00e9-\u79d8\u5bc6",
           "BENTOML_HOME": str(root / "bentoml")}
    srv = Server(env, root / "serve.log")
    try:
        srv.wait_live()
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_a_non_ascii_key_works_and_guards_everything_but_the_probes(keyed: Server):
    key = "cl\u00e9-\u79d8\u5bc6".encode()
    good = {"Authorization": b"Bearer " + key, "content-type": "application/json"}
    r = requests.post(keyed.url + "/classify", data=json.dumps({"crops": crops(1)}),
                      headers=good, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(keyed.url + "/classify", data=b"{}", timeout=30,
                      headers={"Authorization": b"Bearer " + key[:-1]})
    assert r.status_code == 401 and r.json()["error"]
    assert requests.get(keyed.url + "/livez", timeout=5).status_code == 200
    assert requests.get(keyed.url + "/metrics", timeout=5).status_code == 401
    assert requests.get(keyed.url + "/metrics", headers={"X-API-Key": key},
                        timeout=5).status_code == 200
    assert "authentication: on" in keyed.log.read_text()


def test_websocket_upgrades_are_refused_even_with_a_path_that_exists(keyed: Server):
    s = socket.create_connection(("127.0.0.1", keyed.port))
    s.sendall(b"GET /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    s.settimeout(10)
    answer = s.recv(4096)
    s.close()
    status = int(answer.split()[1])
    assert 400 <= status < 500 and status != 101, answer  # never switched protocols


def test_a_set_but_empty_key_refuses_to_start(served: dict, tmp_path: Path):
    srv = Server({**served["env"], "FEROPS_API_KEY": " ",
                  "BENTOML_HOME": str(tmp_path / "bentoml")}, tmp_path / "serve.log")
    try:
        srv.proc.wait(timeout=120)
    finally:
        srv.stop()
    assert srv.proc.returncode != 0
    assert "is set but empty" in (tmp_path / "serve.log").read_text()
