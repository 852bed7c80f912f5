"""Serving speed, side by side in one run: in-process model vs the real HTTP service.

    python benchmarks/serving.py                 # the champion in ~/bentoml or $BENTOML_HOME
    python benchmarks/serving.py --seconds 5 --out serving-quick

It starts `bentoml serve` on 127.0.0.1 with the current champion, then measures:
  * in-process batched throughput of the same model (ferops.inference, batch 128);
  * for each server configuration in --configs (params.yaml's, one worker on all cores, one
    worker on one thread, two workers on one thread each), each in its own `bentoml serve`:
    - /classify at a fixed 200 requests/s (open loop, latency measured from the scheduled
      send time, so a stalled server cannot hide its queueing), after a warm-up, --repeats
      times: each p99 and their median;
    - /classify with one face per request at concurrency 1, 8, 32, 64 (closed loop):
      throughput and p50/p95/p99 latency; the served/in-process throughput ratio;
  * /analyze on a 640x480 JPEG with one face: requests/s;
  * the camera client headless on a 640x480 one-face video through the service: frames/s.
The load generator (aiohttp) runs on the same 2 cores as the server, so served figures are
a lower bound for a server with its own machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import PROJECT, write_result  # noqa: E402

# Server configurations measured one after the other in one run (serving: keys overridden).
CONFIGS = {
    "eager": {},                              # params.yaml as it is (2 workers x 1 thread)
    "eager-1worker": {"workers": 1, "model_threads": 0},    # one process, TF on all cores
    "eager-1thread": {"workers": 1, "model_threads": 1},    # TF on one core, loop on the other
    "eager-2workers": {"workers": 2, "model_threads": 1},
}
TARGETS = {"served_over_inprocess": 0.5, "p99_ms_at_200rps": 50, "analyze_rps": 30,
           "camera_fps": 30}


def use_artifacts(project: Path, home: Path) -> None:
    """Serve <project>/artifacts/model (e.g. a FER2013 run) from a fresh BentoML store."""
    import json
    import shutil

    import bentoml
    os.environ["BENTOML_HOME"] = str(home)
    label_map = json.loads((project / "artifacts/model/label_map.json").read_text())
    metrics = json.loads((project / "artifacts/eval/metrics.json").read_text())
    with bentoml.models.create("ferops-emotion", module="ferops.benchmark", metadata={
            "label_map": label_map, "metrics": metrics, "registry_version": "artifacts",
            "registry_name": str(project)}) as model:
        target = Path(model.path) / "mlflow_model/data"
        target.mkdir(parents=True)
        shutil.copy(project / "artifacts/model/model.keras", target / "model.keras")


def face_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A 640x480 BGR frame with one real face (scikit-image's astronaut photo)."""
    import cv2
    from skimage import data
    # Head and shoulders, face about 100 px wide: one detection, no false positive.
    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[10:290, 110:390]
    frame = np.full((height, width, 3), 90, np.uint8)
    frame[90:390, 170:470] = cv2.resize(face, (300, 300))
    return frame


def one_crop() -> list:
    from ferops.config import load_params
    from ferops.detection import extract_faces
    from ferops.faces import to_gray
    found = extract_faces(to_gray(face_frame()), load_params(PROJECT / "params.yaml").faces)
    if not found:
        raise RuntimeError("the benchmark face was not detected")
    return found[0][1].tolist()


def inprocess(seconds: float) -> dict:
    import bentoml

    from ferops.inference import load_bento_predictor
    model = bentoml.models.get("ferops-emotion:latest")
    pred = load_bento_predictor(model.path, dict(model.info.metadata), str(model.tag))
    out = {"model": str(model.tag), "model_version": pred.version,
           "parameters": pred.info["parameters"]}
    for batch in (128, 1):
        x = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
        pred.classify(x)  # warm-up (graph tracing)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            pred.classify(x)
            n += batch
        out[f"faces_per_s_batch{batch}"] = round(n / (time.perf_counter() - start), 1)
    return out


def percentiles(lat: list[float]) -> dict:
    a = np.array(lat) * 1000
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)}


async def closed_loop(url: str, body: dict, concurrency: int, seconds: float,
                      raw: bytes | None = None) -> dict:
    """Closed loop at `concurrency`; with `raw`, that body as application/octet-stream."""
    import aiohttp
    lat, errors = [], 0
    stop = time.perf_counter() + seconds
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t = time.perf_counter()
                post = session.post(url, json=body) if raw is None else session.post(
                    url, data=raw, headers={"content-type": "application/octet-stream"})
                async with post as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests": len(lat), "errors": errors,
            "requests_per_s": round(len(lat) / wall, 1), **percentiles(lat)}


async def open_loop(url: str, body: dict, rate: float, seconds: float) -> dict:
    import aiohttp
    lat, errors, tasks = [], 0, []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        # Open a pool of warm connections first: connection setup is not service latency.
        async def warm() -> None:
            async with session.post(url, json=body) as r:
                await r.read()
        await asyncio.gather(*(warm() for _ in range(32)))
        async def one(scheduled: float) -> None:
            nonlocal errors
            async with session.post(url, json=body) as r:
                await r.read()
                errors += r.status != 200
            lat.append(time.perf_counter() - scheduled)
        # The load generator's own garbage collection would stall sending and count as
        # service latency (latency runs from the scheduled send time): off while measuring.
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        gc.enable()
    return {"rate_per_s": rate, "requests": len(lat), "errors": errors, **percentiles(lat)}


async def analyze_rate(url: str, jpeg: bytes, concurrency: int, seconds: float) -> dict:
    import aiohttp
    done, faces, stop = 0, 0, time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            nonlocal done, faces
            while time.perf_counter() < stop:
                form = aiohttp.FormData()
                form.add_field("image", jpeg, filename="f.jpg", content_type="image/jpeg")
                async with session.post(url, data=form) as r:
                    faces += len((await r.json()).get("faces", []))
                    done += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"concurrency": concurrency, "requests_per_s": round(done / wall, 1),
            "faces_per_request": round(faces / max(done, 1), 2)}


def camera_fps(service: str, frames: int) -> dict:
    import cv2
    try:
        from ferops.camera import run_headless
    except ImportError as exc:
        return {"skipped": f"camera client not importable: {exc}"}
    tmp = Path(tempfile.mkdtemp(prefix="ferops-cam-"))
    video = tmp / "one_face.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    base = face_frame()
    for i in range(frames):
        writer.write(np.roll(base, (i % 20) - 10, axis=1))
    writer.release()
    summary = run_headless(str(video), service, tmp / "out.mp4", tmp / "out.jsonl")
    return {"frames": frames, "fps": round(summary.fps, 1),
            **{k: v for k, v in vars(summary).items() if isinstance(v, int | float | str)}}


def start_server(port: int, log: Path, overrides: dict) -> subprocess.Popen:
    import requests
    import yaml
    env = dict(os.environ)
    if overrides:  # a params copy with serving keys changed; the service reads FEROPS_PARAMS
        raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
        raw["serving"].update(overrides)
        params = log.parent / "params.yaml"
        params.write_text(yaml.safe_dump(raw))
        env["FEROPS_PARAMS"] = str(params)
    bentoml = Path(sys.executable).parent / "bentoml"
    proc = subprocess.Popen([str(bentoml), "serve", "serving.service:EmotionService",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=PROJECT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    raise RuntimeError(f"service did not become ready; see {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--port", type=int, default=3917)
    parser.add_argument("--frames", type=int, default=300, help="camera video length")
    parser.add_argument("--out", default="serving")
    parser.add_argument("--workers", type=int, help="override serving.workers")
    parser.add_argument("--max-latency-ms", type=int,
                        help="override serving.batch_max_latency_ms")
    parser.add_argument("--skip-camera", action="store_true")
    parser.add_argument("--configs", default="eager,eager-1worker",
                        help=f"server configurations to measure side by side in this run, "
                             f"from {', '.join(CONFIGS)}; the first gives the headline figures")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fixed-rate measurements per configuration (the machine is "
                             "noisy: each p99 is kept and the median reported)")
    parser.add_argument("--from-artifacts", type=Path, metavar="PROJECT",
                        help="serve PROJECT/artifacts/model instead of the store's champion "
                             "(e.g. the folder kept by accuracy.py --keep)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.from_artifacts:
        use_artifacts(args.from_artifacts, Path(tempfile.mkdtemp(prefix="ferops-bento-")))
    local = inprocess(args.seconds)
    print("in-process:", local, flush=True)
    overrides = {k: v for k, v in (("workers", args.workers),
                                   ("batch_max_latency_ms", args.max_latency_ms)) if v}
    body = {"crops": [one_crop()]}
    runs = {}
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    for i, batching in enumerate(names):
        settings = CONFIGS[batching] | overrides
        log = Path(tempfile.mkdtemp()) / "serve.log"
        proc = start_server(args.port, log, settings)
        url = f"http://127.0.0.1:{args.port}"
        try:
            run = runs[batching] = {"serving_overrides": settings}
            # The fixed-rate test runs first, after a discarded warm-up at the same rate:
            # BentoML's batcher learns its batching wait from recent waits, so a preceding
            # overload (concurrency 64) would inflate latency here for a minute.
            asyncio.run(open_loop(url + "/classify", body, 200, 5))
            fixed = [asyncio.run(open_loop(url + "/classify", body, 200, args.seconds))
                     for _ in range(args.repeats)]
            run["classify_200rps"] = {
                "p99_ms_median": float(np.median([f["p99_ms"] for f in fixed])),
                "p50_ms_median": float(np.median([f["p50_ms"] for f in fixed])),
                "runs": fixed}
            print(batching, "classify at 200/s:", run["classify_200rps"], flush=True)
            run["classify_closed_loop"] = []
            for c in (1, 8, 32, 64):
                run["classify_closed_loop"].append(
                    asyncio.run(closed_loop(url + "/classify", body, c, args.seconds)))
                print(batching, "classify:", run["classify_closed_loop"][-1], flush=True)
            best = max(s["requests_per_s"] for s in run["classify_closed_loop"])
            run["served_over_inprocess"] = round(best / local["faces_per_s_batch128"], 3)
            if i:  # analyze and the camera do not use the batcher: measured once
                continue
            # The compact input: 2,304 raw bytes per face instead of ~9 KB of JSON.
            crop = np.asarray(body["crops"], np.uint8)
            big = {"crops": [body["crops"][0]] * 8}
            run["classify_json_vs_raw"] = {
                f"{name}_{n}_crops": asyncio.run(closed_loop(
                    url + "/classify", payload, 8, args.seconds,
                    None if name == "json" else np.repeat(crop, n, 0).tobytes()))
                for n, payload in ((1, body), (8, big)) for name in ("json", "raw")}
            print("json vs raw:", run["classify_json_vs_raw"], flush=True)
            buf = io.BytesIO()
            from PIL import Image
            Image.fromarray(face_frame()[..., ::-1]).save(buf, "JPEG", quality=90)
            analyze = asyncio.run(analyze_rate(url + "/analyze", buf.getvalue(), 4,
                                               args.seconds))
            print("analyze:", analyze, flush=True)
            camera = {} if args.skip_camera else camera_fps(url, args.frames)
            print("camera:", camera, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    main_run = runs[names[0]]
    result = {
        "in_process": local, "classify_closed_loop": main_run["classify_closed_loop"],
        "classify_200rps": main_run["classify_200rps"],
        "analyze_640x480": analyze, "camera_headless_640x480": camera,
        "served_over_inprocess": main_run["served_over_inprocess"],
        "serving_overrides": main_run["serving_overrides"], "targets": TARGETS,
        "classify_json_vs_raw_concurrency8": main_run.get("classify_json_vs_raw"),
        "batchers_side_by_side": runs,
        "note": "load generator and server share the same cores",
    }
    print(write_result(args.out, result).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
