"""Shared plumbing for the thin main() of each stage: arguments, logging, clean errors.

When $FEROPS_EVENTS names a file, each stage appends one JSON line when it starts and one
when it ends: {"event": "start" | "done" | "failed", "stage": ..., "kind": ..., "message": ...}.
The retraining flow reads these instead of parsing `dvc repro`'s log: which stages ran, which
one failed, and whether the data (kind "data") or MLflow (kind "registry_unavailable")
was the cause.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ferops import tfquiet
from ferops.config import ConfigError
from ferops.errors import FeropsError

log = logging.getLogger("ferops")
EVENTS_ENV = "FEROPS_EVENTS"


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every stage shares."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--params", default="params.yaml",
                        help="parameters file (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    return parser


def stage_name(prog: str) -> str:
    """`ferops train` -> train, `ferops-validate` -> validate."""
    return prog.split()[-1].removeprefix("ferops-")


def record_event(event: str, stage: str, **fields) -> None:
    """Append one event line to $FEROPS_EVENTS (nothing when it is unset)."""
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    line = json.dumps({"event": event, "stage": stage, "at": round(time.time(), 3),
                       **fields}) + "\n"
    with open(path, "a", encoding="utf-8") as f:  # one short append: atomic on POSIX
        f.write(line)


def quiet_tensorflow() -> None:
    """Hide TensorFlow's start-up chatter (oneDNN, CPU features, CUDA stubs) before it loads.

    Level 2 drops C++ INFO and WARNING lines; on a machine with no NVIDIA device the failed
    cuInit ERROR line is noise too, so level 3 there. An explicit TF_CPP_MIN_LOG_LEVEL wins.
    Python warnings (Keras) are untouched. Called at entry points, never by the library.
    """
    no_gpu = not Path("/dev/nvidiactl").exists()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu else "2")
    tfquiet.install()  # what the level no longer hides (TensorFlow 2.19+)


def run_stage(body: Callable[[argparse.Namespace], int | None],
              parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, set up logging, run body; user errors become one line and exit code 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow()
    stage = stage_name(parser.prog)
    record_event("start", stage)
    try:
        code = int(body(args) or 0)
    except (FeropsError, ConfigError) as exc:
        kind = exc.kind if isinstance(exc, FeropsError) else "config"
        record_event("failed", stage, kind=kind, message=str(exc)[:2000])
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseException as exc:  # a crash: recorded, then the traceback as usual
        record_event("failed", stage, kind="crash", message=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    record_event("done" if code == 0 else "failed", stage, **({} if code == 0 else {
        "kind": "exit", "message": f"exit code {code}"}))
    return code
