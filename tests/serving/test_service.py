"""The real service: every endpoint, every bad input, readiness, hot swap, API key, build."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import PROJECT
from tests.serving.conftest import BIN, LIMITS, Server, post_json, train_and_promote

pytestmark = pytest.mark.slow
CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def astronaut_jpeg(copies: int = 1) -> bytes:
    """A real photo with one face (scikit-image's astronaut), tiled `copies` times."""
    from skimage import data
    face = np.asarray(Image.fromarray(data.astronaut()).resize((320, 320)))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate([face] * copies, axis=1)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def crops(n: int, seed: int = 0) -> list:
    from ferops.faces import normalize_face
    from ferops.synthetic import render_face
    rng = np.random.default_rng(seed)
    return [normalize_face(render_face(CLASSES[i % 7], rng, 48), 48).tolist() for i in range(n)]


def bento_predictor(env: dict):
    """The served model loaded in-process, straight from the BentoML store."""
    import os

    import bentoml

    from ferops.inference import load_bento_predictor
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
    model = bentoml.models.get("ferops-emotion:latest")
    return load_bento_predictor(model.path, dict(model.info.metadata), str(model.tag))


def test_endpoints_answer_with_the_champion(server: Server, served: dict):
    assert requests.get(server.url + "/readyz", timeout=5).status_code == 200
    info = post_json(server.url + "/info", {}).json()
    assert info["ready"] and info["model_version"] == "1" and info["classes"] == CLASSES
    assert 0 <= info["metrics"]["test_accuracy"] <= 1 and info["trained_at"].endswith("Z")
    assert info["data_version"]["data_md5"].endswith(".dir")
    assert info["limits"]["max_crops"] == LIMITS["max_crops"]
    assert info["runtime"]["batcher"] == "eager"
    assert info["runtime"]["model_threads"] == LIMITS["model_threads"]  # applied to TF

    sent = crops(3)
    got = post_json(server.url + "/classify", {"crops": sent})
    assert got.status_code == 200, got.text
    answers = got.json()
    assert len(answers) == 3
    local = bento_predictor(served["env"]).classify(np.array(sent, np.uint8))
    for a, b in zip(answers, local, strict=True):
        assert a["label"] == b["label"] and a["model_version"] == "1"
        assert sum(a["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-4)

    files = {"image": ("astronaut.jpg", astronaut_jpeg(), "image/jpeg")}
    result = requests.post(server.url + "/analyze", files=files, timeout=30).json()
    assert result["width"] == 320 and result["faces_found"] == 1
    x, y, w, h = result["faces"][0]["box"]
    assert 0 <= x < x + w <= 320 and 0 <= y < y + h <= 320 and w >= 40
    assert result["faces"][0]["label"] in CLASSES

    # Opt-in statistics: label and confidence per prediction, no pixels.
    lines = [json.loads(t) for t in served["stats"].read_text().splitlines()]
    assert len(lines) >= 4 and set(lines[0]) == {"ts", "model_version", "label", "confidence"}


def test_concurrent_requests_are_batched(server: Server):
    def batches_so_far() -> float:
        text = requests.get(server.url + "/metrics", timeout=5).text
        counts = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("ferops_classify_batch_size_count")]
        return sum(counts)

    before = batches_so_far()
    results, one = [], {"crops": crops(1)}

    def call() -> None:
        results.append(post_json(server.url + "/classify", one).status_code)
    threads = [threading.Thread(target=call) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 48
    model_calls = batches_so_far() - before
    assert 1 <= model_calls < 48  # several requests shared one model call


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buf, "PNG")  # ~100 KB on the wire, 900 M pixels
    return buf.getvalue()


def bad_requests():
    jpeg = astronaut_jpeg()
    return {
        "non-image bytes": ("analyze", {"image": ("x.jpg", b"hello, not a picture" * 50)}),
        "truncated jpeg": ("analyze", {"image": ("t.jpg", jpeg[: len(jpeg) // 2])}),
        "zero-size image": ("analyze", {"image": ("z.png", b"")}),
        "decompression bomb": ("analyze", {"image": ("bomb.png", bomb_png())}),
        "wrong upload field": ("analyze", {"file": ("a.jpg", jpeg)}),
        "too many faces": ("analyze", {"image": ("three.jpg", astronaut_jpeg(3))}),
        "wrong json field": ("classify", {"images": crops(1)}),
        "too many crops": ("classify", {"crops": crops(LIMITS["max_crops"] + 1)}),
        "crop of wrong size": ("classify", {"crops": [[[0] * 47] * 48]}),
        "pixel out of range": ("classify", {"crops": [[[300] * 48] * 48]}),
        "empty crop list": ("classify", {"crops": []}),
    }


def test_bad_input_gets_a_quick_4xx_and_the_server_stays_up(server: Server):
    rss_before = server.rss_mb()
    for name, (endpoint, payload) in bad_requests().items():
        start = time.perf_counter()
        if endpoint == "analyze":
            r = requests.post(f"{server.url}/analyze", files=payload, timeout=30)
        else:
            r = post_json(f"{server.url}/classify", payload)
        elapsed = time.perf_counter() - start
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert "error" in json.dumps(r.json()), name
        assert elapsed < 5, (name, elapsed)
    r = requests.post(f"{server.url}/analyze", data=astronaut_jpeg(), timeout=30,
                      headers={"content-type": "text/plain"})  # neither multipart nor image
    assert r.status_code == 415 and "multipart" in r.json()["error"]
    r = requests.post(f"{server.url}/analyze", data=astronaut_jpeg(), timeout=30,
                      headers={"content-type": "image/jpeg"})  # the photo as the body
    assert r.status_code == 200 and r.json()["faces_found"] == 1
    huge = b"0" * (LIMITS["max_body_mb"] * 2**20 + 1)
    r = requests.post(f"{server.url}/classify", data=huge,
                      headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "larger than" in r.json()["error"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(LIMITS["max_body_mb"] * 4 + 1):
            yield b" " * 2**18
    r = requests.post(f"{server.url}/classify", data=chunks(),
                      headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413
    assert post_json(server.url + "/classify", {"crops": crops(1)}).status_code == 200
    assert server.rss_mb() - rss_before < 300  # the bomb was never decoded


def test_camera_client_headless_through_the_service(server: Server, tmp_path: Path):
    """A video of a real face photo -> the camera client -> the real service -> outputs."""
    import cv2

    from ferops.camera import run_headless
    from tests.camera.fakes import make_face_video
    video = make_face_video(tmp_path / "face.mp4", frames=30)
    summary = run_headless(str(video), server.url, tmp_path / "out.mp4", tmp_path / "out.jsonl")
    assert summary.frames == 30 and summary.errors == 0 and summary.labeled >= 25
    records = [json.loads(t) for t in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(30))
    faces = [f for r in records for f in r["faces"] if f["label"]]
    assert faces and all(f["label"] in CLASSES and f["model_version"] == "1" for f in faces)
    assert all(r["service_ok"] for r in records)
    out = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(out.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    assert (int(out.get(cv2.CAP_PROP_FRAME_WIDTH)), int(out.get(cv2.CAP_PROP_FRAME_HEIGHT))) \
        == (640, 480)
    out.release()


def test_no_champion_means_not_ready_then_a_promotion_makes_it_ready(served: dict,
                                                                     tmp_path: Path):
    env = {**served["env"], "BENTOML_HOME": str(tmp_path / "empty_store"),
           "FEROPS_API_KEY": "s3cret"}
    srv = Server(env, tmp_path / "serve.log")
    try:
        srv.wait_live()
        r = requests.get(srv.url + "/readyz", timeout=5)
        assert r.status_code == 503 and "ferops promote" in r.json()["error"]
        assert post_json(srv.url + "/classify", {"crops": crops(1)}).status_code == 401
        key = {"Authorization": "Bearer s3cret"}
        r = post_json(srv.url + "/classify", {"crops": crops(1)}, headers=key)
        assert r.status_code == 503 and "no champion" in r.json()["error"]
        assert post_json(srv.url + "/info", {}, headers=key).json()["ready"] is False
        assert post_json(srv.url + "/info", {}, headers={"X-API-Key": "nope"}).status_code \
            == 401
        # The champion arrives in the store (as `ferops promote` would put it there).
        staging = tmp_path / "empty_store/staging"
        shutil.copytree(Path(served["env"]["BENTOML_HOME"]) / "models/ferops-emotion", staging)
        staging.rename(tmp_path / "empty_store/models/ferops-emotion")  # appears at once
        deadline = time.monotonic() + 30
        while requests.get(srv.url + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the new champion was not picked up"
            time.sleep(0.5)
        r = post_json(srv.url + "/classify", {"crops": crops(1)}, headers=key)
        assert r.status_code == 200 and r.json()[0]["model_version"] == "1"
    finally:
        srv.stop()


def test_a_promotion_is_served_without_dropping_requests(server: Server, served: dict):
    """Hot swap: clients keep calling while a better model is trained and promoted."""
    calls, failures, stop = [], [], threading.Event()

    def hammer() -> None:
        body = {"crops": crops(2)}
        while not stop.is_set():
            try:
                sent = time.monotonic()
                r = post_json(server.url + "/classify", body, timeout=10)
                if r.status_code == 200:
                    calls.append((sent, time.monotonic(), r.json()[0]["model_version"]))
                else:
                    failures.append(r.status_code)
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.05)
    clients = [threading.Thread(target=hammer) for _ in range(3)]
    for c in clients:
        c.start()
    try:
        decision = train_and_promote(served["root"], served["params"], served["env"])
        assert decision["action"] == "promoted", decision
        deadline = time.monotonic() + 60
        while post_json(server.url + "/info", {}).json()["model_version"] != "2":
            assert time.monotonic() < deadline, "version 2 was not picked up"
            time.sleep(0.5)
        time.sleep(1)
    finally:
        stop.set()
        for c in clients:
            c.join()
    assert failures == []
    calls.sort(key=lambda call: call[1])
    assert calls[0][2] == "1" and calls[-1][2] == "2"
    # Never back to the old model, whichever of the workers answers: once any client has an
    # answer from version 2, every request sent after that is answered by version 2.
    first_two = min(received for _, received, version in calls if version == "2")
    later = {version for sent, _, version in calls if sent > first_two}
    assert later == {"2"}, sorted(calls)[-40:]


def test_bentoml_build_packs_service_and_champion(served: dict, tmp_path: Path):
    env = {**served["env"], "BENTOML_HOME": str(tmp_path / "home")}
    shutil.copytree(Path(served["env"]["BENTOML_HOME"]) / "models", tmp_path / "home/models")
    proc = subprocess.run([str(BIN / "bentoml"), "build", "-f", "serving/bentofile.yaml",
                           "--output", "tag", "."], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    tag = proc.stdout.strip().splitlines()[-1].replace("__tag__:", "")
    assert tag.startswith("ferops:")
    bento = tmp_path / "home/bentos/ferops" / tag.split(":")[1]
    assert (bento / "src/serving/service.py").is_file()
    assert (bento / "src/src/ferops/inference.py").is_file()
    import yaml
    spec = yaml.safe_load((bento / "bento.yaml").read_text())
    # BentoML 1.4 records the model by tag; export/containerize ship it with the Bento.
    assert [m["tag"].split(":")[0] for m in spec["models"]] == ["ferops-emotion"]
    serve_the_built_bento(tag, env, tmp_path)


def serve_the_built_bento(tag: str, env: dict, tmp_path: Path) -> None:
    """`bentoml serve <tag>` from a folder outside the checkout, with nothing of the project
    on the path: the Bento must import its own service and classify a face."""
    from tests.factories import free_port
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "FEROPS_PARAMS")}
    port = free_port()
    log = tmp_path / "bento-serve.log"
    proc = subprocess.Popen([str(BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1",
                             "--port", str(port)], cwd=elsewhere, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            try:
                if requests.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        r = post_json(url + "/classify", {"crops": crops(1)})
        assert r.status_code == 200 and r.json()[0]["label"] in CLASSES, r.text
        files = {"image": ("a.jpg", astronaut_jpeg(), "image/jpeg")}
        r = requests.post(url + "/analyze", files=files, timeout=60)
        assert r.status_code == 200 and r.json()["faces_found"] == 1, r.text
        # The browser client ships inside the Bento too.
        for page, kind in (("/ui", "text/html"), ("/ui/app.js", "text/javascript")):
            r = requests.get(url + page, timeout=30)
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), page
    finally:
        import os
        import signal
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "ModuleNotFoundError" not in log.read_text()


NEW_EXPORT = """
import shutil
from pathlib import Path

import bentoml

src = bentoml.models.get("ferops-emotion:latest")
with bentoml.models.create("ferops-emotion", module=src.info.module,
                           metadata=dict(src.info.metadata)) as model:
    shutil.copytree(Path(src.path) / "mlflow_model", Path(model.path) / "mlflow_model")
print(model.tag)
"""


def test_a_reload_reaches_every_worker(served: dict, tmp_path: Path):
    """Two worker processes, no store polling: one /reload moves both to the new export."""
    import yaml
    raw = yaml.safe_load(Path(served["params"]).read_text())
    raw["serving"].update(workers=2, model_threads=1, reload_poll_s=0)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    store = tmp_path / "bentoml"
    shutil.copytree(served["env"]["BENTOML_HOME"], store)
    env = {**served["env"], "FEROPS_PARAMS": str(params), "BENTOML_HOME": str(store)}
    srv = Server(env, tmp_path / "serve.log")
    try:
        srv.wait_live()
        srv.wait_ready()
        old = post_json(srv.url + "/info", {}).json()["runtime"]["bento_tag"]
        new = subprocess.run([str(BIN / "python"), "-c", NEW_EXPORT], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert new != old
        answer = post_json(srv.url + "/reload", {}, timeout=90).json()
        assert answer["swapped"] is True and answer["bento_tag"] == new
        assert answer["workers"] == 2 and answer["workers_on_this_model"] == 2
        seen = [post_json(srv.url + "/info", {}).json()["runtime"] for _ in range(20)]
        assert {r["bento_tag"] for r in seen} == {new}  # no worker left on the old model
    finally:
        srv.stop()
