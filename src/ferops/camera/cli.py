"""`ferops-camera`: live emotions from a webcam, video file or stream, via the ferops service.

Faces are found on this machine; only 48x48 grayscale face crops are sent to the service.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ferops.camera.headless import run_headless
from ferops.camera.labeling import CONSENT_NOTICE, ConsentStore, Labeler
from ferops.camera.pipeline import CameraError, Summary
from ferops.camera.realtime import gui_problem, run_realtime
from ferops.config import ConfigError, Params, load_params

EPILOG = """examples:
  ferops-camera                                   webcam 0, live window
  ferops-camera --source clip.mp4 --label         label faces with keys 1..K (asks consent)
  ferops-camera --headless --source clip.mp4 --out-video out.mp4 --out-jsonl out.jsonl
  ferops-camera --headless --source clip.mp4 --label-all happy --consent

exit status: 0 done; 1 faces were found but the service classified none; 2 bad arguments,
unopenable source, no GUI support, or labeling without consent."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferops-camera", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show live facial emotions. Faces are detected on this machine and only\n"
                    "their 48x48 grayscale crops are sent to the ferops service; frames never\n"
                    "leave this machine.")
    p.add_argument("--source", default="0", metavar="SRC",
                   help="webcam index, video file or stream URL (default: 0, the first webcam)")
    p.add_argument("--service", default=None, metavar="URL",
                   help="service base URL (default: camera.service_url in params)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="API key sent as 'Authorization: Bearer <key>' "
                        "(default: $FEROPS_API_KEY, if set)")
    p.add_argument("--params", default=None, metavar="PATH",
                   help="params file (default: ./params.yaml, else the project's)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds per service request (default: camera.timeout_s)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop after N frames")
    p.add_argument("--headless", action="store_true",
                   help="no window: process every frame of the source and write the outputs")
    p.add_argument("--out-video", default=None, metavar="PATH",
                   help="headless: annotated video (mp4v)")
    p.add_argument("--out-jsonl", default=None, metavar="PATH",
                   help="headless: one JSON line per frame (boxes, labels, probabilities)")
    p.add_argument("--label", action="store_true",
                   help="window: keys 1..K save the largest face crop with that class into "
                        "camera.drop_folder/<label>/ (after a one-time consent)")
    p.add_argument("--label-all", default=None, metavar="LABEL",
                   help="headless: save every detected face crop with LABEL (needs consent)")
    p.add_argument("--consent", action="store_true",
                   help="accept the labeling consent notice (remembered in camera.consent_file)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        params = load_params(args.params)
        if not args.headless:
            problem = gui_problem()
            if problem:
                raise CameraError(problem)
        return _run(args, params)
    except (CameraError, ConfigError) as exc:
        print(f"ferops-camera: error: {exc}", file=sys.stderr)
        return 2


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.headless and (args.out_video or args.out_jsonl or args.label_all):
        parser.error("--out-video, --out-jsonl and --label-all need --headless")
    if args.headless and args.label:
        parser.error("--label needs the window; for headless runs use --label-all LABEL")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be at least 1")


def _run(args: argparse.Namespace, params: Params) -> int:
    labeler = _make_labeler(args, params)
    service = args.service or params.camera.service_url
    api_key = args.api_key if args.api_key is not None else \
        os.environ.get(params.serving.api_key_env) or None
    if args.headless:
        summary = run_headless(args.source, service, args.out_video, args.out_jsonl, params,
                               api_key=api_key, timeout_s=args.timeout,
                               max_frames=args.max_frames, labeler=labeler,
                               label_all=args.label_all, progress=sys.stderr.isatty())
    else:
        summary = run_realtime(args.source, service, params, api_key=api_key,
                               timeout_s=args.timeout, labeler=labeler,
                               max_frames=args.max_frames)
    return _report(summary, args, service)


def _make_labeler(args: argparse.Namespace, params: Params) -> Labeler | None:
    if not (args.label or args.label_all):
        return None
    names = params.classes.names
    if args.label_all and args.label_all not in names:
        raise CameraError(f"--label-all {args.label_all!r} is not a class ({', '.join(names)})")
    consent = ConsentStore(params.camera.consent_file)
    if args.consent:
        consent.grant()
    elif args.label_all and not consent.granted():
        # Headless labeling has no window to ask in: the terminal, or nothing is stored.
        if not (sys.stdin.isatty() and _ask_on_terminal()):
            raise CameraError("labeling stores face crops and needs consent: pass --consent "
                              f"(remembered in {consent.path}) or run it on a terminal")
        consent.grant()
    return Labeler(names, params.camera.drop_folder, consent)


def _ask_on_terminal() -> bool:
    print("\n".join(CONSENT_NOTICE).replace("Press y", "Type y"), file=sys.stderr)
    try:
        return input("accept? [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def _report(summary: Summary, args: argparse.Namespace, service: str) -> int:
    print(f"ferops-camera: {summary.line()}")
    for path in (args.out_video, args.out_jsonl):
        if path and args.headless:
            print(f"ferops-camera: wrote {path}")
    if summary.faces and not summary.labeled and summary.errors:
        print(f"ferops-camera: no face was classified: is the service running at {service}?",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
