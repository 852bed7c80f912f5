"""Stage 3, preprocess: every validated image -> (size, size) uint8 grayscale.

Uses ferops.faces.normalize_face, the function the service and camera client use too.
Pixels stay in [0, 255]; the model scales them to [0, 1] itself (one place).

    python -m ferops.data.preprocess [--in artifacts/ingest] [--validation artifacts/validate]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferops.config import load_params
from ferops.data.arrays import save_arrays
from ferops.data.table import ImageTable, load_table
from ferops.errors import DataError
from ferops.faces import normalize_face
from ferops.stage import run_stage, stage_parser

log = logging.getLogger(__name__)


def preprocess(table: ImageTable, size: int) -> np.ndarray:
    """(N,) ragged grayscale images -> (N, size, size) uint8."""
    out = np.empty((len(table), size, size), dtype=np.uint8)
    for i, image in enumerate(tqdm(table.images, desc="preprocess", unit="img", disable=None)):
        out[i] = normalize_face(image, size)
    return out


def require_validated(validation_dir: Path) -> None:
    """Refuse to go on unless the validate stage passed on this data."""
    summary = validation_dir / "summary.json"
    if not summary.is_file():
        raise DataError(f"{summary} not found: run the validate stage first")
    if not json.loads(summary.read_text(encoding="utf-8")).get("success"):
        raise DataError(f"validation failed ({validation_dir / 'report.md'}); "
                        "nothing is preprocessed until the data passes")


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser("ferops preprocess", "Make every validated image a 48x48 gray face.")
    parser.add_argument("--in", dest="src", type=Path, default=Path("artifacts/ingest"))
    parser.add_argument("--validation", type=Path, default=Path("artifacts/validate"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/preprocess"))

    def body(args) -> None:
        params = load_params(args.params)
        require_validated(args.validation)
        table = load_table(args.src)
        images = preprocess(table, params.faces.size)
        save_arrays(args.out, images, table.meta)
        log.info("preprocessed %d images to %dx%d -> %s", len(images), params.faces.size,
                 params.faces.size, args.out)

    return run_stage(body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
