"""The browser client (/ui) in a real Chromium against a real `bentoml serve` on 127.0.0.1.

Chromium comes from Debian's package (scripts/browser.sh installs it); Playwright drives it
through the system executable. The camera is Chromium's fake device playing a y4m video made
here from scikit-image's astronaut photo (one real face).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from benchmarks.browser import chromium_args, face_video
from PIL import Image

from ferops.config import load_params
from ferops.data.sources import read_folder
from tests.factories import write_params
from tests.serving.conftest import LIMITS, Server

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return face_video(tmp_path_factory.mktemp("video") / "face.y4m")


@pytest.fixture(scope="module")
def browser(video: Path):
    from playwright.sync_api import sync_playwright
    assert CHROMIUM, "Chromium is missing: bash scripts/browser.sh installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args(video))
        yield b
        b.close()


def start(env: dict, root: Path, port: int | None = None) -> Server:
    srv = Server(env, root / f"serve-{time.monotonic_ns()}.log", port)
    srv.wait_live()
    srv.wait_ready()
    return srv


@pytest.fixture(scope="module")
def labeling(served: dict, tmp_path_factory) -> dict:
    """A server with labeling on (its own params, drop folder and BentoML home)."""
    root = tmp_path_factory.mktemp("ui")
    drop = root / "incoming"
    params = write_params(root, "params_ui.yaml", train={"profile": "demo"},
                          serving={**LIMITS, "labeling": True, "label_per_minute": 30},
                          camera={"drop_folder": str(drop)})
    shutil.copytree(served["env"]["BENTOML_HOME"], root / "bentoml")
    env = {**served["env"], "FEROPS_PARAMS": str(params), "BENTOML_HOME": str(root / "bentoml")}
    srv = start(env, root)
    try:
        yield {"server": srv, "drop": drop, "env": env, "root": root, "params": params}
    finally:
        srv.stop()


def classes(url: str) -> list[str]:
    return requests.post(url + "/info", json={}, timeout=30).json()["classes"]


def open_live(browser, url: str):
    page = browser.new_page()
    page.goto(url + "/ui?autostart=1")
    faces = page.locator("#faces li.face").first
    faces.wait_for(timeout=20_000)
    return page


def stats(page) -> dict:
    return page.evaluate("window.feropsStats")


def wait_until(page, expression: str, timeout: float = 20) -> None:
    """Poll a JavaScript expression from here: the page's Content-Security-Policy (no eval)
    refuses Playwright's wait_for_function, and rightly so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(f"() => Boolean({expression})"):
            return
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout} s: {expression}")


def crops_in(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.exists() else []


def test_page_shows_live_labels_at_10_fps_and_the_model_version(browser, labeling: dict,
                                                               tmp_path: Path):
    url = labeling["server"].url
    names = classes(url)
    page = open_live(browser, url)
    text = page.locator("#faces li.face").first.inner_text()
    assert re.match(rf"({'|'.join(names)}) \d+%", text), text
    version = requests.post(url + "/info", json={}, timeout=30).json()["model_version"]
    assert page.locator("#model-version").inner_text().startswith(f"v{version}")
    first = stats(page)["frames"]
    time.sleep(5)
    now = stats(page)
    assert now["errors"] == 0, now
    assert (now["frames"] - first) / 5 >= 10, now       # frames analysed per second
    assert now["fps"] >= 10, now
    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot))
    assert Image.open(shot).size[0] >= 640
    page.close()


def test_the_mood_timeline_exports_as_csv_and_json(browser, labeling: dict, tmp_path: Path):
    import csv
    import json
    url = labeling["server"].url
    names = classes(url)
    page = open_live(browser, url)
    wait_until(page, "window.feropsStats.frames > 30")
    files = {}
    for kind in ("csv", "json"):
        with page.expect_download() as download:
            page.locator(f"#export-{kind}").click()
        files[kind] = tmp_path / download.value.suggested_filename
        download.value.save_as(files[kind])
    page.close()
    rows = list(csv.DictReader(files["csv"].open()))
    assert rows and list(rows[0])[:5] == ["time", "model_version", "label", "confidence",
                                          "frames"]
    assert list(rows[0])[5:] == names
    for row in rows:     # each point: the mean of its frames, still a distribution
        assert abs(sum(float(row[c]) for c in names) - 1) < 0.01 and int(row["frames"]) >= 1
        assert row["label"] in names
    session = json.loads(files["json"].read_text())
    assert session["classes"] == names and len(session["points"]) >= len(rows)


def test_a_labeled_face_with_consent_stores_exactly_one_crop(browser, labeling: dict):
    url, drop = labeling["server"].url, labeling["drop"]
    name = classes(url)[0]
    page = open_live(browser, url)
    before = crops_in(drop)
    page.keyboard.press("1")
    page.locator("#consent").wait_for(state="visible")
    assert crops_in(drop) == before                     # nothing before the answer
    page.locator("#consent-yes").click()
    wait_until(page, "document.getElementById('label-status').textContent.startsWith('stored as')")
    new = sorted(set(crops_in(drop)) - set(before))
    assert len(new) == 1 and new[0].parent.name == name, new
    crop = np.asarray(Image.open(new[0]))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8 and crop.std() > 5
    page.close()
    # The next retraining's ingest reads it from the drop folder, under that label.
    params = load_params(labeling["params"])
    read = read_folder(drop, params.ingest.catalog["incoming"], params.faces, drop.parent)
    assert not read.quarantine
    assert dict(zip(read.origins, read.labels, strict=True))[f"incoming/{name}/{new[0].name}"] \
        == name


def test_declined_consent_stores_nothing(browser, labeling: dict):
    url, drop = labeling["server"].url, labeling["drop"]
    page = open_live(browser, url)
    before = crops_in(drop)
    page.keyboard.press("2")
    page.locator("#consent-no").click()
    wait_until(page, "document.getElementById('label-status').textContent.includes('no consent')")
    time.sleep(1)
    assert crops_in(drop) == before
    page.close()


def test_labeling_switched_off_stores_nothing(browser, server, served: dict):
    """The session server runs the default serving.labeling: false."""
    page = open_live(browser, server.url)
    page.keyboard.press("1")
    wait_until(page, "document.getElementById('label-status').textContent.includes('switched off')")
    assert not page.locator("#consent").is_visible()
    page.close()
    r = requests.post(server.url + "/label?label=happy&consent=yes", data=b"x",
                      headers={"content-type": "image/jpeg"}, timeout=30)
    assert r.status_code == 403 and "switched off" in r.json()["error"], r.text


def test_the_label_endpoint_checks_consent_label_face_and_rate(labeling: dict):
    from tests.serving.test_service import astronaut_jpeg
    url, drop = labeling["server"].url, labeling["drop"]
    before = crops_in(drop)
    jpeg = astronaut_jpeg()
    post = lambda query, body=jpeg: requests.post(  # noqa: E731
        f"{url}/label?{query}", data=body, headers={"content-type": "image/jpeg"}, timeout=30)
    assert post("label=happy").status_code == 400                       # no consent
    assert post("label=joy&consent=yes").status_code == 422             # not a class
    assert post("label=happy&face=-1&consent=yes").status_code == 422
    assert post("label=happy&face=5&consent=yes").status_code == 422    # no 6th face
    assert post("label=happy&consent=yes", b"not an image").status_code == 400
    assert crops_in(drop) == before
    # The bucket holds 5: a burst of 10 gets at most 5 through (the tests above used some).
    codes = [post("label=happy&consent=yes").status_code for _ in range(10)]
    assert codes.count(429) >= 5 and set(codes) <= {200, 429}, codes
    assert len(crops_in(drop)) - len(before) == codes.count(200)


def test_a_photo_is_analysed_without_a_camera(browser, labeling: dict, tmp_path: Path):
    from tests.serving.test_service import astronaut_jpeg
    photo = tmp_path / "face.jpg"
    photo.write_bytes(astronaut_jpeg())
    page = browser.new_page()
    page.goto(labeling["server"].url + "/ui")
    page.locator("#photo").set_input_files(str(photo))
    page.locator("#faces li.face").first.wait_for(timeout=20_000)
    assert page.locator("#status").inner_text() == "photo analysed"
    page.close()


def test_the_page_shows_a_service_outage_and_recovers(browser, labeling: dict):
    """Its own server: stopped while the page streams, restarted on the same port."""
    env, root = labeling["env"], labeling["root"]
    srv = start(env, root)
    try:
        page = open_live(browser, srv.url)
        srv.stop()
        wait_until(page, "window.feropsStats.state === 'down'")
        assert "unavailable, retrying" in page.locator("#status").inner_text()
        frames = stats(page)["frames"]
        srv = start(env, root, srv.port)
        wait_until(page, f"window.feropsStats.frames > {frames + 10}", 60)
        assert stats(page)["state"] == "live"
        page.close()
    finally:
        srv.stop()
