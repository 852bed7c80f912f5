"""Face detectors side by side: ms per 640x480 frame and recall per condition; writes JSON.

    python benchmarks/detectors.py [--n 200] [--fer PATH] [--name detectors]

Faces are FER2013 PublicTest crops (never PrivateTest: this chooses the default detector)
pasted into cluttered 640x480 scenes (benchmarks/scenes.py): frontal (100-240 px), turned
25-30 degrees, small (56-64 px), dark and noisy, and large (200-240 px: the ceiling, where
what is missed is mostly a crop that is hardly a face). Every detector sees the same scenes,
in one run, one thread, through ferops.detection.find_faces (the code the service runs).
Targets (issue 19): <= 5 ms per frame, recall >= 99 % frontal and >= 95 % turned.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks._common import PROJECT, SHARED_DATA, write_result  # noqa: E402
from benchmarks.scenes import CONDITIONS, load_fer, match, scenes  # noqa: E402
from ferops.config import load_params  # noqa: E402
from ferops.detection import find_faces  # noqa: E402
from ferops.faces import eye_angle  # noqa: E402

CHOICES = ("frontal", "turned_30", "small_60", "dark_noisy", "large")


def detectors(faces_cfg) -> dict:
    """Haar, BlazeFace's ranges at the models' own input sizes (the default until
    2026-12-07 was `both` at 128), and the short-range model on larger inputs; the
    committed default is among them under its own name."""
    def blaze(rng, side=faces_cfg.blazeface.short_input_side):
        return faces_cfg.replace(detector="blazeface", blazeface=faces_cfg.blazeface.replace(
            range=rng, short_input_side=side))
    table = {"haar": faces_cfg.replace(detector="haar"),
             "blazeface_short128": blaze("short", 128), "blazeface_full192": blaze("full"),
             "blazeface_both128": blaze("both", 128), "blazeface_short192": blaze("short", 192),
             "blazeface_short256": blaze("short", 256), "blazeface_short320": blaze("short", 320)}
    table.setdefault(default_name(faces_cfg), faces_cfg)
    return table


def default_name(faces_cfg) -> str:
    c = faces_cfg.blazeface
    if faces_cfg.detector == "haar":
        return "haar"
    return f"blazeface_{c.range}{c.short_input_side if c.range != 'full' else 192}"


def run(cfg, frames) -> dict:
    find_faces(frames[0].image, cfg)  # build this thread's detector outside the timing
    found, times, angle_err, extra = 0, [], [], 0
    for s in frames:
        start = time.perf_counter()
        dets = find_faces(s.image, cfg)
        times.append((time.perf_counter() - start) * 1000)
        i = match(s, [d.box for d in dets])
        extra += len(dets) - (i is not None)
        if i is not None:
            found += 1
            if dets[i].eyes is not None:
                # A FER2013 face is about level, so its eye line turns with the paste.
                angle_err.append(abs(eye_angle(dets[i]) + s.degrees))
    return {"recall": round(found / len(frames), 4), "found": found, "n": len(frames),
            "false_per_frame": round(extra / len(frames), 3),
            "ms_median": round(statistics.median(times), 2),
            "ms_p90": round(float(np.percentile(times, 90)), 2),
            "eye_angle_error_median_deg": round(statistics.median(angle_err), 2)
            if angle_err else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="faces per condition")
    ap.add_argument("--fer", type=Path, default=SHARED_DATA / "fer2013" / "fer2013.csv.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="detectors")
    args = ap.parse_args(argv)
    faces_cfg = load_params(PROJECT / "params.yaml").faces
    faces, _ = load_fer(args.fer, "PublicTest", args.n, args.seed)
    table = {}
    for c, cond in enumerate(CHOICES):
        frames = scenes(faces, CONDITIONS[cond], args.seed + 1 + c)
        for name, cfg in tqdm(detectors(faces_cfg).items(), desc=cond, unit="detector",
                              disable=None):
            table.setdefault(name, {})[cond] = run(cfg, frames)
    for name, row in table.items():
        print(f"{name:19s} " + "  ".join(
            f"{c} {r['recall']:.1%} ({r['ms_median']:.1f} ms)" for c, r in row.items()))
    out = write_result(args.name, {"faces_per_condition": len(faces), "source": "PublicTest",
                                   "frame": "640x480", "threads": 1,
                                   "conditions": {c: vars(CONDITIONS[c]) for c in CHOICES},
                                   "default": default_name(faces_cfg),
                                   "min_score": faces_cfg.blazeface.min_score,
                                   "detectors": table})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
