"""Time every data stage on the full FER2013 and a no-change `dvc repro`; write JSON.

    python benchmarks/data_pipeline.py [--fer PATH] [--skip-dvc]

Part 1 runs the stage functions in-process (what each stage costs by itself).
Part 2 runs the real `dvc repro` in a temporary copy of the project with FER2013 placed
under data/ (first run, then a no-change run, repeated). Targets on a 2-core machine:
ingest + validate + preprocess <= 60 s; no-change repro <= 10 s.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from benchmarks._common import PROJECT, SHARED_DATA, write_result  # noqa: E402
from ferops.config import SourceConfig, load_params  # noqa: E402
from ferops.data.augment import augment  # noqa: E402
from ferops.data.encode import encode  # noqa: E402
from ferops.data.ingest import ingest  # noqa: E402
from ferops.data.preprocess import preprocess  # noqa: E402
from ferops.data.validate import validate_table  # noqa: E402

# The venv's dvc, so the script works without an activated venv.
DVC = str(Path(sys.executable).parent / "dvc")


def time_stages(fer: Path) -> dict:
    params = load_params(PROJECT / "params.yaml")
    src = SourceConfig(name="fer2013", kind="fer2013", path=str(fer))
    t = {}
    start = time.perf_counter()
    table, quarantine, _, report, _ = ingest([src], params.ingest, params.faces, Path("/"),
                                             min_std=params.validate.min_std)
    t["ingest_s"] = time.perf_counter() - start
    start = time.perf_counter()
    result = validate_table(table, quarantine, params.classes, params.validate)
    t["validate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    images = preprocess(table, params.faces.size)
    t["preprocess_s"] = time.perf_counter() - start
    start = time.perf_counter()
    aug_images, aug_meta = augment(images, table.meta, params.augment, params.seed)
    t["augment_s"] = time.perf_counter() - start
    start = time.perf_counter()
    encode(aug_images, aug_meta, params.classes, params.encode.class_weights)
    t["encode_s"] = time.perf_counter() - start
    t = {k: round(v, 2) for k, v in t.items()}
    t["ingest_validate_preprocess_s"] = round(t["ingest_s"] + t["validate_s"]
                                              + t["preprocess_s"], 2)
    return {"stages": t, "n_images_read": sum(s["read"] for s in report["per_source"].values()),
            "n_kept": report["n_kept"], "n_quarantined": report["n_quarantined"],
            "validation_success": result.success, "augment_multiplier": params.augment.multiplier}


def time_dvc(fer: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "ferops"
        subprocess.run(["git", "clone", "-q", str(PROJECT), str(clone)], check=True)
        for rel in ("params.yaml", "dvc.yaml", "src"):  # benchmark the working tree
            src = PROJECT / rel
            if src.is_dir():
                shutil.copytree(src, clone / rel, dirs_exist_ok=True)
            else:
                shutil.copy2(src, clone / rel)
        (clone / "data/fer2013").mkdir(parents=True)
        shutil.copy2(fer, clone / "data/fer2013/fer2013.csv.gz")
        raw = yaml.safe_load((clone / "params.yaml").read_text())
        raw["ingest"]["sources"] = ["fer2013"]
        (clone / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        first = _timed([DVC, "repro", "encode"], clone)
        nochange = [_timed([DVC, "repro", "encode"], clone) for _ in range(repeats)]
    return {"dvc_repro_first_s": round(first, 2),
            "dvc_repro_nochange_s": [round(x, 2) for x in nochange],
            "dvc_repro_nochange_median_s": round(statistics.median(nochange), 2)}


def _timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer", type=Path, default=SHARED_DATA / "fer2013/fer2013.csv.gz")
    parser.add_argument("--skip-dvc", action="store_true", help="only the in-process timings")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.fer.is_file():
        parser.error(f"{args.fer} not found (set --fer or FEROPS_SHARED_DATA)")
    result = time_stages(args.fer.resolve())
    if not args.skip_dvc:
        result |= time_dvc(args.fer.resolve(), args.repeats)
    result["targets"] = {"ingest_validate_preprocess_s": 60, "dvc_repro_nochange_s": 10}
    out = write_result("data_pipeline", result)
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
