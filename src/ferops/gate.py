"""`ferops promote` and `ferops rollback`: the champion/challenger gate from the command line.

    ferops promote   # re-score @challenger and @champion on the current test split
    ferops rollback  # @champion <- @previous
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ferops.config import load_params
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def print_decision(decision, out: Path | None) -> None:
    from dataclasses import asdict
    text = json.dumps(asdict(decision), indent=2)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")


def _classes(data: Path) -> list[str] | None:
    """Class names for the decision's messages (the label map beside the test arrays)."""
    path = data / "label_map.json"
    return json.loads(path.read_text()).get("classes") if path.is_file() else None


def promote_main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops promote",
                          "Promote @challenger to @champion only if it beats it on the "
                          "current test split by the configured margin and floor.")
    parser.add_argument("--data", type=Path, default=Path("artifacts/dataset"))
    parser.add_argument("--no-export", action="store_true",
                        help="do not import the new champion into the BentoML model store")
    parser.add_argument("--out", type=Path, default=Path("artifacts/registry/decision.json"))

    def body(args) -> None:
        from ferops import registry
        from ferops.errors import FeropsError
        cfg = load_params(args.params).registry
        if not (args.data / "x_test.npy").is_file():
            raise FeropsError(f"{args.data}/x_test.npy not found: run `dvc repro` first")
        x, y = np.load(args.data / "x_test.npy"), np.load(args.data / "y_test.npy")
        with registry.reporting_failures():
            decision = registry.promote(cfg.model_name, x, y, cfg, _classes(args.data))
        print_decision(decision, args.out)
        if not args.no_export:
            with registry.reporting_failures():
                exported = registry.sync_bento(cfg.model_name)
            if exported is not None:
                log.info("exported the champion to BentoML as %s", exported.tag)

    return run_stage(body, parser, argv)


def rollback_main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops rollback", "Restore @previous as @champion in one step.")
    parser.add_argument("--no-export", action="store_true")

    def body(args) -> None:
        from ferops import registry
        cfg = load_params(args.params).registry
        with registry.reporting_failures():
            decision = registry.rollback(cfg.model_name)
        print_decision(decision, None)
        if not args.no_export:
            registry.export_bento(cfg.model_name, decision.champion)

    return run_stage(body, parser, argv)
