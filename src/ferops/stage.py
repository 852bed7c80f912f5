"""Shared plumbing for the thin main() of each stage: arguments, logging, clean errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from ferops.config import ConfigError
from ferops.errors import FeropsError

log = logging.getLogger("ferops")


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every stage shares."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--params", default="params.yaml",
                        help="parameters file (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    return parser


def run_stage(body: Callable[[argparse.Namespace], int | None],
              parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, set up logging, run body; user errors become one line and exit code 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(body(args) or 0)
    except (FeropsError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
