"""The `ferops` console script: one subcommand per stage or tool.

Each subcommand is the `main()` of a module that also runs as `python -m <module>` (that is
what dvc.yaml calls), so `ferops ingest --help` and `python -m ferops.data.ingest --help` agree.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("ferops.synthetic", "generate the synthetic demo faces (not real people)"),
    "screen": ("ferops.data.screen", "move drop-folder files ingest/validate would refuse aside"),
    "ingest": ("ferops.data.ingest", "read every configured source into one image table"),
    "validate": ("ferops.data.validate", "run the Great Expectations suite on the ingested data"),
    "preprocess": ("ferops.data.preprocess", "make every validated image a 48x48 gray face"),
    "augment": ("ferops.data.augment", "seeded offline augmentation of the training split"),
    "encode": ("ferops.data.encode", "map labels onto the class set; write training arrays"),
    "train": ("ferops.training.train", "train the CNN on artifacts/dataset (resumable)"),
    "evaluate": ("ferops.evaluate", "score the model: accuracy, macro-F1, confusion, calibration"),
    "register": ("ferops.register", "log the run to MLflow and register it as @challenger"),
    "promote": ("ferops.gate:promote_main", "promote @challenger if it beats @champion"),
    "rollback": ("ferops.gate:rollback_main", "restore @previous as @champion"),
    "checkout": ("ferops.lineage", "restore a registered version's code, params and data"),
    "serve": ("ferops.run_service", "serve the champion over HTTP (BentoML, serving/service.py)"),
    "camera": ("ferops.camera.cli", "live emotions from a camera or video through the service"),
    "analyze": ("ferops.analyze", "emotions of faces in images, folders, videos (no server)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return ("usage: ferops <command> [options]\n\n"
            "Facial emotion recognition as a continuous-retraining pipeline.\n\n"
            "commands:\n" + "\n".join(lines) +
            "\n\nRun `ferops <command> --help` for a command's options. "
            "`dvc repro` runs the stages in order.")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        from ferops import __version__
        print(f"ferops {__version__}")
        return 0
    if args[0] not in COMMANDS:
        print(f"ferops: unknown command '{args[0]}'\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, _, func = COMMANDS[args[0]][0].partition(":")
    entry = getattr(importlib.import_module(module_name), func or "main")
    return int(entry(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
