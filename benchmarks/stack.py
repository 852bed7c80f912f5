"""The containerised stack's costs: image sizes, cold and warm builds, start, the loop.

    python benchmarks/stack.py            # warm: whatever images and wheels are cached
    python benchmarks/stack.py --cold     # first removes the images and the wheel cache

On a temporary copy of the project (so this checkout's data and stores are untouched):
`deploy/stack.sh build` (timed; then again, warm), `up` (timed to healthy + deployments),
a first model from the retrain deployment, then five labeled faces in the drop folder and the
time until the service container answers with the new version (the watcher deployment polls
every minute), with a light /classify load counting failures. Then `wipe`. Needs a running
Docker engine (scripts/docker-engine.sh). Writes benchmarks/results/<out>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import PROJECT, write_result  # noqa: E402

SERVICE = "http://127.0.0.1:3000"
IMAGES = ("ferops:latest", "ferops-postgres:15", "ferops-base:bookworm")


def sh(args: list[str], cwd: Path, timeout: float = 3600) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return round(time.monotonic() - t0, 1)


def make_project(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (PROJECT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / rel, dest / rel)
    set_params(dest, epochs=1, max_train_images=300)   # a weak first model
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "stack benchmark"]):
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=dest,
                       check=True, capture_output=True)
    sh([sys.executable, "-m", "dvc", "pull", "-q", "data.dvc"], dest)


def set_params(root: Path, **train) -> None:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    raw["train"].update({"profile": "demo", **train})
    raw["registry"]["floor"] = 0.0
    raw["pipelines"].update(min_new_faces=4, push_data=False)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def image_sizes_mb() -> dict[str, float]:
    out = {}
    for tag in IMAGES:
        proc = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            out[tag] = round(int(proc.stdout.strip()) / 2**20)
    return out


def served_version(headers: dict) -> str | None:
    try:
        r = requests.post(f"{SERVICE}/info", json={}, headers=headers, timeout=10)
        return r.json().get("model_version") if r.ok else None
    except requests.RequestException:
        return None


def wait_version(headers: dict, version: str, timeout: float) -> float:
    t0 = time.monotonic()
    while served_version(headers) != version:
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"the service did not serve version {version} in {timeout} s")
        time.sleep(2)
    return time.monotonic() - t0


def add_faces(root: Path, n: int) -> None:
    from ferops.synthetic import render_face
    for i in range(n):
        label = ("happy", "sad")[i % 2]
        folder = root / "data/incoming" / label
        folder.mkdir(parents=True, exist_ok=True)
        image = render_face(label, np.random.default_rng([31, i]), 64)
        Image.fromarray(image).save(folder / f"bench_{i}.png")


def load(headers: dict, stop: threading.Event, counts: dict) -> None:
    body = {"crops": [np.random.default_rng(0).integers(0, 256, (48, 48)).tolist()]}
    with requests.Session() as s:
        while not stop.is_set():
            try:
                ok = s.post(f"{SERVICE}/classify", json=body, headers=headers, timeout=10).ok
            except requests.RequestException:
                ok = False
            counts["ok" if ok else "failed"] += 1
            time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold", action="store_true",
                        help="remove the stack's images and wheel cache first")
    parser.add_argument("--out", default="stack")
    args = parser.parse_args()
    if args.cold:
        subprocess.run(["docker", "rmi", "-f", *IMAGES], capture_output=True)
        subprocess.run(["docker", "image", "prune", "-f"], capture_output=True)
        shutil.rmtree(Path.home() / ".cache/ferops/wheels", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp) / "ferops"
        make_project(proj)
        stack = ["bash", str(proj / "deploy/stack.sh")]
        result: dict = {"cold": args.cold}
        result["build_s"] = sh([*stack, "build"], proj)
        result["warm_build_s"] = sh([*stack, "build"], proj)
        result["image_mb"] = image_sizes_mb()
        try:
            result["up_s"] = sh([*stack, "up"], proj)
            env = dict(line.split("=", 1) for line in (proj / "deploy/.env").read_text().split())
            headers = {"Authorization": f"Bearer {env['FEROPS_API_KEY']}"}
            os.environ["PREFECT_API_URL"] = "http://127.0.0.1:4200/api"
            from prefect.deployments import run_deployment
            t0 = time.monotonic()
            run = run_deployment("ferops-retrain/retrain", timeout=1800,
                                 parameters={"project_dir": "/opt/ferops", "trigger": "manual"})
            if not run.state.is_completed():
                raise SystemExit(f"first retraining: {run.state.message}")
            wait_version(headers, "1", 300)
            result["first_model_s"] = round(time.monotonic() - t0, 1)
            set_params(proj, epochs=20, max_train_images=0)   # the demo recipe
            counts, stop = {"ok": 0, "failed": 0}, threading.Event()
            thread = threading.Thread(target=load, args=(headers, stop, counts), daemon=True)
            thread.start()
            add_faces(proj, 5)
            result["faces_to_new_version_s"] = round(wait_version(headers, "2", 1800), 1)
            result["loop_wall_s"] = round(time.monotonic() - t0, 1)
            stop.set()
            thread.join(30)
            result["classify_during_switch"] = counts
            result["note"] = ("the watcher deployment polls every 60 s: faces_to_new_version_s "
                              "includes up to a minute of that wait")
        finally:
            sh([*stack, "wipe"], proj, timeout=600)
    print(write_result(args.out, result).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
