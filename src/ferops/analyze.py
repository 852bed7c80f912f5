"""`ferops analyze`: emotions of every face in images, folders and videos, without a server.

    ferops analyze photo.jpg                          # a table, one row per face
    ferops analyze photos/ --format csv > faces.csv   # every image under a folder
    ferops analyze clip.mp4 --every 5 --annotate out/ --timeline out/
    ferops analyze a.jpg --model artifacts/model      # the model `dvc repro` just trained

The model is the champion exported to BentoML by `ferops promote` unless --model, --bento
or --registry names another. Annotated copies and timelines are written only when asked;
nothing is written beside the inputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ferops.camera.overlay import COLORS, GREY, draw_text
from ferops.config import load_params
from ferops.errors import FeropsError
from ferops.recognizer import FaceResult, Recognizer
from ferops.stage import quiet_tensorflow

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
COLUMNS = ("file", "frame", "t", "face", "x", "y", "w", "h", "label", "confidence")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ferops analyze", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, help="images, videos or folders of them")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="a model folder (artifacts/model)")
    src.add_argument("--bento", help="a BentoML model tag (default: the newest export)")
    src.add_argument("--registry", metavar="REF", help="an MLflow version or @alias")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--every", type=int, default=1, help="videos: analyze every n-th frame")
    p.add_argument("--max-frames", type=int, help="videos: stop after this many frames")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write copies with boxes and labels here (videos as .mp4)")
    p.add_argument("--timeline", type=Path, metavar="DIR",
                   help="videos: write a per-video emotion timeline plot (PNG) here")
    p.add_argument("--params", type=Path, help="params.yaml to read (default: ./params.yaml, "
                   "else the project's)")
    p.add_argument("--abstain-below", type=float, metavar="P",
                   help="answer `uncertain` below this confidence (default: params.yaml)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    try:
        files = list(expand(args.paths))
        if not files:
            raise FeropsError("no image or video files among the given paths")
        rec = load(args)
        rows = []
        for path in tqdm(files, desc="analyze", unit="file", disable=len(files) < 2 or None):
            rows.extend(analyze_file(rec, path, args))
    except (FeropsError, OSError) as exc:
        print(f"ferops analyze: error: {exc}", file=sys.stderr)
        return 1
    emit(rows, args.format)
    return 0


def expand(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*")
                              if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif path.exists():
            yield path
        else:
            raise FeropsError(f"{path}: no such file or folder")


def load(args) -> Recognizer:
    params = load_params(args.params)
    kw = {"faces": params.faces, "abstain_below": params.serving.abstain_below
          if args.abstain_below is None else args.abstain_below}
    if args.model:
        return Recognizer.from_model_dir(args.model, **kw)
    if args.registry:
        return Recognizer.from_registry(args.registry, **kw)
    return Recognizer.from_bento(args.bento, **kw)


def analyze_file(rec: Recognizer, path: Path, args) -> list[dict]:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return analyze_video(rec, path, args)
    try:
        faces = rec.analyze(path)
    except FeropsError as exc:  # one unreadable image does not stop a folder
        print(f"ferops analyze: {path}: {exc}", file=sys.stderr)
        return []
    if args.annotate:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is not None:
            args.annotate.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.annotate / path.name), draw(frame, faces))
    return [row(path, 0, 0.0, i, f) for i, f in enumerate(faces)]


def analyze_video(rec: Recognizer, path: Path, args) -> list[dict]:
    rows, timeline, writer = [], [], None
    cap = cv2.VideoCapture(str(path)) if args.annotate else None
    try:
        for frame in rec.analyze_video(path, args.every, args.max_frames):
            rows.extend(row(path, frame.index, frame.t, i, f) for i, f in enumerate(frame.faces))
            timeline.append((frame.t, frame.faces[0].probabilities if frame.faces else None))
            if cap is not None:
                writer = _write_annotated(cap, writer, frame, args, path)
    finally:
        if cap is not None:
            cap.release()
        if writer is not None:
            writer.release()
    if args.timeline and timeline:
        args.timeline.mkdir(parents=True, exist_ok=True)
        plot_timeline(timeline, path.name, args.timeline / f"{path.stem}-timeline.png")
    return rows


def _write_annotated(cap, writer, frame, args, path: Path):
    """Copy frames up to this analyzed one into the annotated video, boxes drawn on it."""
    image = None
    while cap.get(cv2.CAP_PROP_POS_FRAMES) <= frame.index:
        ok, image = cap.read()
        if not ok:
            return writer
        if writer is None:
            args.annotate.mkdir(parents=True, exist_ok=True)
            fps = (cap.get(cv2.CAP_PROP_FPS) or 25.0) / max(1, args.every)
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(args.annotate / f"{path.stem}.mp4"),
                                     cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if image is not None:
        writer.write(draw(image, frame.faces))
    return writer


def row(path: Path, index: int, t: float, i: int, f: FaceResult) -> dict:
    return {"file": str(path), "frame": index, "t": t, "face": i, "x": f.box.x, "y": f.box.y,
            "w": f.box.w, "h": f.box.h, "label": f.label, "confidence": f.confidence,
            "probabilities": f.probabilities}


def emit(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=[*COLUMNS, *_classes(rows)])
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r[k] for k in COLUMNS}, **r["probabilities"]})
    else:
        print(f"{'file':30s} {'frame':>5s} {'face':>4s} {'box':>20s}  {'label':10s} conf")
        for r in rows:
            box = f"{r['x']},{r['y']},{r['w']},{r['h']}"
            print(f"{_short(r['file']):30s} {r['frame']:5d} {r['face']:4d} {box:>20s}  "
                  f"{r['label']:10s} {r['confidence']:.2f}")
        if not rows:
            print("(no faces found)")


def _classes(rows: list[dict]) -> list[str]:
    return list(rows[0]["probabilities"]) if rows else []


def _short(name: str) -> str:
    return name if len(name) <= 30 else "..." + name[-27:]


def draw(frame: np.ndarray, faces: list[FaceResult]) -> np.ndarray:
    for f in faces:
        b, color = f.box, COLORS.get(f.label, GREY)
        cv2.rectangle(frame, (b.x, b.y), (b.x + b.w, b.y + b.h), color, 2)
        draw_text(frame, f"{f.label} {f.confidence:.2f}", (b.x, max(0, b.y - 22)), bg=color,
                  color=(0, 0, 0))
    return frame


def plot_timeline(points: list[tuple[float, dict | None]], title: str, out: Path) -> None:
    """Each class's probability over time for the largest face (gaps: no face)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = next((list(p) for _, p in points if p), [])
    t = np.array([pt for pt, _ in points])
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for c in classes:
        ax.plot(t, [p[c] if p else np.nan for _, p in points], label=c, lw=1.4)
    ax.set_xlabel("seconds")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}: emotions of the largest face")
    ax.legend(ncol=len(classes) or 1, fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.22))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
