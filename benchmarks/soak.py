"""Soak: a real `bentoml serve` at a fixed request rate for minutes, answers checked.

    python benchmarks/soak.py                          # 4 min at 100 requests/s, the champion
    python benchmarks/soak.py --seconds 60 --rate 50 --from-artifacts /path/to/project

Mixed traffic, open loop (sends on schedule, whatever the server does): 80 % /classify with
one face crop, 20 % /analyze with a 640x480 one-face photo, and --malformed of all requests
replaced by hostile ones (bad JSON, wrong pixels, text fields, truncated images). Before the
soak every valid body is sent once by a lone client; during it, every answer must equal that
one (probabilities within 1e-4: another batch composition changes the last float bits).
/livez is probed 10 times a second (its latency is what an orchestrator sees), and the
server's resident memory (the process and every descendant) is sampled every 10 s. Writes
benchmarks/results/<out>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_result  # noqa: E402
from benchmarks.serving import face_frame, one_crop, start_server, use_artifacts  # noqa: E402

TARGETS = {"errors": 0, "malformed_500": 0, "wrong_answers": 0, "rss_growth_pct": 5,
           "livez_p99_ms": 50}


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants (BentoML's workers are started
    by its process manager, outside the server's process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in status.splitlines()
                       if x.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


def bodies() -> tuple[list, list]:
    """(valid, malformed) requests as (endpoint, kind, payload)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(face_frame()[..., ::-1]).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    crop = one_crop()
    valid = [("classify", "json", json.dumps({"crops": [crop]}).encode()),
             ("analyze", "file", jpeg)]
    malformed = [("classify", "json", b"{nope"),
                 ("classify", "json", json.dumps({"crops": [[[300] * 48] * 48]}).encode()),
                 ("classify", "json", b"[" * 50_000),
                 # Near the 8 MB limit: 3.5 M integers parsed before the crop count fails.
                 ("classify", "json", b'{"crops": [' + b"0," * 3_500_000 + b"0]}"),
                 ("analyze", "text", "http://127.0.0.1:9/x.png"),
                 ("analyze", "file", jpeg[: len(jpeg) // 3]),
                 ("analyze", "file", b"not an image" * 100)]
    return valid, malformed


def same(a, b) -> bool:
    """Equal, but floats within 1e-4: a crop batched with other crops can differ in the last
    float bits (another summation order), never in label, box or face count."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= 1e-4
    return a == b


async def send(session, url: str, job) -> tuple[int, object]:
    import aiohttp
    endpoint, kind, payload = job
    if kind == "json":
        req = session.post(f"{url}/{endpoint}", data=payload,
                           headers={"content-type": "application/json"})
    else:
        form = aiohttp.FormData()
        if kind == "file":
            form.add_field("image", payload, filename="f.jpg", content_type="image/jpeg")
        else:
            form.add_field("image", payload)
        req = session.post(f"{url}/{endpoint}", data=form)
    async with req as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body[:200].decode("latin-1")


async def soak(url: str, pgid: int, rate: float, seconds: float, malformed_share: float,
               analyze_share: float) -> dict:
    import aiohttp
    valid, bad = bodies()
    counts = {"valid": 0, "malformed": 0, "errors": 0, "wrong_answers": 0,
              "malformed_500": 0, "malformed_503": 0, "malformed_2xx": 0, "valid_503": 0}
    examples: list = []
    livez: list[float] = []
    rss: list[dict] = []
    rng = np.random.default_rng(0)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as session:
        expected = [await send(session, url, job) for job in valid]
        if any(status != 200 for status, _ in expected):
            raise RuntimeError(f"a lone client's request failed: {expected}")
        start = time.perf_counter()
        stop = start + seconds

        async def one(job, want) -> None:
            status, answer = await send(session, url, job)
            if want is None:  # malformed
                counts["malformed"] += 1
                # 503 is load shedding (a full queue refuses before reading); any other 5xx
                # would be the service failing on bad input.
                counts["malformed_500"] += status >= 500 and status != 503
                counts["malformed_503"] += status == 503
                counts["malformed_2xx"] += status < 400
            else:
                counts["valid"] += 1
                if status != 200:
                    counts["errors"] += 1
                    counts["valid_503"] += status == 503
                    examples.append((status, str(answer)[:200]))
                elif not same(answer, want):
                    counts["wrong_answers"] += 1
                    examples.append(("wrong", str(answer)[:200]))

        async def probe() -> None:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                async with session.get(f"{url}/livez") as r:
                    await r.read()
                livez.append(time.perf_counter() - t)
                await asyncio.sleep(0.1)

        async def sample() -> None:
            while time.perf_counter() < stop:
                rss.append({"t_s": round(time.perf_counter() - start, 1),
                            "rss_mb": tree_rss_mb(pgid)})
                await asyncio.sleep(10)
            rss.append({"t_s": round(time.perf_counter() - start, 1),
                        "rss_mb": tree_rss_mb(pgid)})

        helpers = [asyncio.create_task(probe()), asyncio.create_task(sample())]
        tasks, i = [], 0
        while (scheduled := start + i / rate) < stop:
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            if rng.random() < malformed_share:
                job, want = bad[int(rng.integers(len(bad)))], None
            else:
                k = 1 if rng.random() < analyze_share else 0
                job, want = valid[k], expected[k][1]
            tasks.append(asyncio.create_task(one(job, want)))
            i += 1
        await asyncio.gather(*tasks, *helpers)
    lat = np.array(livez) * 1000
    first = rss[1]["rss_mb"] if len(rss) > 2 else rss[0]["rss_mb"]  # after 10 s of warm-up
    growth = 100 * (rss[-1]["rss_mb"] - first) / first
    return {**counts, "sent": i, "examples": examples[:10],
            "livez": {"probes": len(lat), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                      "p99_ms": round(float(np.percentile(lat, 99)), 2),
                      "max_ms": round(float(lat.max()), 2)},
            "rss_mb": rss, "rss_growth_pct": round(growth, 2),
            "rss_growth_from": "the sample at 10 s (after warm-up) to the last"}


async def decode_burst(url: str, pgid: int, parallel: int = 6) -> dict:
    """`parallel` /analyze uploads of a ~40-megapixel JPEG at once: the server's peak RSS."""
    import aiohttp
    from PIL import Image
    side = (6000, 6600)  # 39.6 M pixels, under faces.max_pixels (40 M)
    img = Image.linear_gradient("L").resize(side).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=60)
    jpeg = buf.getvalue()
    base = tree_rss_mb(pgid)
    peak, done = base, False
    async with aiohttp.ClientSession() as session:
        async def watch() -> None:
            nonlocal peak
            while not done:
                peak = max(peak, tree_rss_mb(pgid))
                await asyncio.sleep(0.1)
        watcher = asyncio.create_task(watch())
        statuses = await asyncio.gather(*(send(session, url, ("analyze", "file", jpeg))
                                          for _ in range(parallel)))
        done = True
        await watcher
    return {"parallel": parallel, "pixels": side[0] * side[1], "jpeg_bytes": len(jpeg),
            "statuses": sorted(s for s, _ in statuses), "rss_before_mb": base,
            "rss_peak_mb": peak, "peak_growth_mb": round(peak - base, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--rate", type=float, default=100, help="requests per second")
    parser.add_argument("--malformed", type=float, default=0.1,
                        help="share of hostile requests interleaved (0-1)")
    parser.add_argument("--analyze-share", type=float, default=0.2,
                        help="share of valid requests that go to /analyze")
    parser.add_argument("--port", type=int, default=3918)
    parser.add_argument("--out", default="soak")
    parser.add_argument("--from-artifacts", type=Path, metavar="PROJECT",
                        help="serve PROJECT/artifacts/model instead of the store's champion")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.from_artifacts:
        use_artifacts(args.from_artifacts, Path(tempfile.mkdtemp(prefix="ferops-bento-")))
    log = Path(tempfile.mkdtemp()) / "serve.log"
    proc = start_server(args.port, log, {})
    try:
        url = f"http://127.0.0.1:{args.port}"
        burst = asyncio.run(decode_burst(url, proc.pid))
        print("decode burst:", burst, flush=True)
        result = asyncio.run(soak(url, proc.pid, args.rate, args.seconds, args.malformed,
                                  args.analyze_share))
        result["decode_burst_40mp"] = burst
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result.update(rate_per_s=args.rate, seconds=args.seconds, targets=TARGETS,
                  model=str(args.from_artifacts or "the store's champion"),
                  server_log_bytes=log.stat().st_size,
                  note="load generator and server share the same cores")
    print(write_result(args.out, result).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
