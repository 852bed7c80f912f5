"""The browser client (/ui) in a real Chromium: frames per second, and CPU per browser client.

    python benchmarks/browser.py                  # the champion in ~/bentoml or $BENTOML_HOME
    python benchmarks/browser.py --seconds 30 --clients 1,2

It starts `bentoml serve` on 127.0.0.1 with the current champion, then for each number of
clients opens that many pages of /ui in Debian's Chromium (Playwright, the system executable)
whose fake camera plays a 640x480 y4m of a real face (scikit-image's astronaut), and measures
over --seconds: frames analysed per second in each page (the page's own counter), errors,
and the CPU time of the server's process tree and of Chromium's, per second and per frame.
A screenshot of the first page goes next to the JSON. Server and browser share the 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, write_result  # noqa: E402


def face_video(path: Path, frames: int = 40, fps: int = 20) -> Path:
    """A 640x480 y4m (4:2:0) of one real face drifting a few pixels per frame."""
    import cv2
    from skimage import data
    face = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[10:290, 110:390],
                      (260, 260))
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            frame = np.full((480, 640, 3), 90, np.uint8)
            dx = int(20 * np.sin(i / frames * 2 * np.pi))
            frame[110:370, 190 + dx:450 + dx] = face
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def chromium_args(video: Path) -> list[str]:
    return ["--no-sandbox", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"]


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        total += times.get(pid, 0.0)
    return total


def measure(browser, url: str, clients: int, seconds: float, server_pid: int,
            browser_pid: int | None, shot: Path | None) -> dict:
    pages = []
    for _ in range(clients):
        page = browser.new_page()
        page.goto(url + "/ui?autostart=1")
        pages.append(page)
    for page in pages:
        page.locator("#faces li.face").first.wait_for(timeout=60_000)
    time.sleep(2)                                        # past start-up
    start = [page.evaluate("window.feropsStats") for page in pages]
    cpu0 = tree_cpu_s(server_pid), tree_cpu_s(browser_pid) if browser_pid else 0.0
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    cpu1 = tree_cpu_s(server_pid), tree_cpu_s(browser_pid) if browser_pid else 0.0
    end = [page.evaluate("window.feropsStats") for page in pages]
    if shot:
        pages[0].screenshot(path=str(shot), full_page=True)
    for page in pages:
        page.close()
    frames = [e["frames"] - s["frames"] for s, e in zip(start, end, strict=True)]
    server_cpu = (cpu1[0] - cpu0[0]) / wall
    return {"clients": clients, "seconds": round(wall, 1),
            "fps_per_client": [round(f / wall, 1) for f in frames],
            "errors": sum(e["errors"] - s["errors"] for s, e in zip(start, end, strict=True)),
            "kb_per_frame": round(sum(e["bytes"] - s["bytes"] for s, e in
                                      zip(start, end, strict=True)) / 1024 / max(1, sum(frames)),
                                  1),
            "server_cpu_cores": round(server_cpu, 3),
            "server_cpu_cores_per_client": round(server_cpu / clients, 3),
            "server_cpu_ms_per_frame": round(1000 * (cpu1[0] - cpu0[0]) / max(1, sum(frames)),
                                             2),
            "browser_cpu_cores": round((cpu1[1] - cpu0[1]) / wall, 3) if browser_pid else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--clients", default="1,2", help="browser pages at once, per run")
    parser.add_argument("--port", type=int, default=3918)
    parser.add_argument("--out", default="browser")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from benchmarks.serving import start_server
    chromium = shutil.which("chromium")
    if not chromium:
        parser.error("Chromium is missing: bash scripts/browser.sh installs it")
    work = Path(tempfile.mkdtemp(prefix="ferops-browser-"))
    video = face_video(work / "face.y4m")
    proc = start_server(args.port, work / "serve.log", {})
    url = f"http://127.0.0.1:{args.port}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    shot = RESULTS / f"{args.out}.png"
    runs = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=chromium_args(video))
            browser_pid = _browser_pid()
            for i, n in enumerate(int(c) for c in args.clients.split(",")):
                runs.append(measure(browser, url, n, args.seconds, proc.pid, browser_pid,
                                    shot if i == 0 else None))
                print(runs[-1], flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {"runs": runs, "frame": "640x480 fake camera, sent as 480 px JPEG to /analyze",
              "screenshot": shot.name, "target_fps": 10,
              "note": "server, Chromium and the fake camera share the same cores"}
    print(write_result(args.out, result).read_text())
    return 0


def _browser_pid() -> int | None:
    """The newest Chromium main process (the one Playwright just started)."""
    newest = None
    for cmd in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmd.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"chromium") and b"--type=" not in b" ".join(argv):
            pid = int(cmd.parent.name)
            newest = max(newest or 0, pid)
    return newest


if __name__ == "__main__":
    raise SystemExit(main())
