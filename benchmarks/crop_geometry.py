"""Measure the crop geometry (faces.crop) that makes live crops frame a face as FER2013 does.

    python benchmarks/crop_geometry.py [--n 1000] [--fer PATH]

A FER2013 crop is the training frame. Each Training face is enlarged 4x and put in a
640x480 scene (benchmarks/scenes.py, upright, no rotation) and each detector is run on it.
For every face found, the frame relative to the detector's box is
    scale = frame side / box side,  (dx, dy) = (frame centre - box centre) / box side.
The medians are what params.yaml's faces.crop should hold for that detector; the
interquartile ranges say how much a single live crop varies. Training faces only: this
sets a parameter, so PublicTest and PrivateTest stay unseen.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import PROJECT, SHARED_DATA, write_result  # noqa: E402
from benchmarks.scenes import Condition, load_fer, match, scenes  # noqa: E402
from ferops.config import load_params  # noqa: E402
from ferops.detection import find_faces  # noqa: E402

UPRIGHT = Condition("upright", (192, 192), noise=1.0)


def measure(cfg, frames) -> dict:
    rows = []
    for s in frames:
        dets = find_faces(s.image, cfg)
        i = match(s, [d.box for d in dets])
        if i is None:
            continue
        b = dets[i].box
        rows.append((s.side / b.w, (s.centre[0] - (b.x + b.w / 2)) / b.w,
                     (s.centre[1] - (b.y + b.h / 2)) / b.w))
    a = np.array(rows)
    q = np.percentile(a, [25, 50, 75], axis=0).round(3)
    return {"faces_found": len(rows), "of": len(frames),
            "median": dict(zip(("scale", "dx", "dy"), q[1].tolist(), strict=True)),
            "iqr": {k: [float(q[0, j]), float(q[2, j])] for j, k in
                    enumerate(("scale", "dx", "dy"))}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="Training faces")
    ap.add_argument("--fer", type=Path, default=SHARED_DATA / "fer2013" / "fer2013.csv.gz")
    ap.add_argument("--name", default="crop_geometry")
    args = ap.parse_args(argv)
    faces_cfg = load_params(PROJECT / "params.yaml").faces
    faces, _ = load_fer(args.fer, "Training", args.n, seed=1)
    frames = scenes(faces, UPRIGHT, seed=2)
    result = {name: measure(faces_cfg.replace(detector=name), frames)
              for name in ("blazeface", "haar")}
    for name, r in result.items():
        m = r["median"]
        print(f"{name:10s} {r['faces_found']}/{r['of']} found: "
              f"{{scale: {m['scale']}, dx: {m['dx']}, dy: {m['dy']}}}  iqr {r['iqr']}")
    out = write_result(args.name, {"source": "Training", "face_side_px": 192,
                                   "blazeface": faces_cfg.blazeface.model_dump(),
                                   "detectors": result})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
