"""The validate stage: Great Expectations checks on the ingested table, before anything trains.

Reads artifacts/ingest (meta.parquet + pixels.npy + quarantine.csv), writes
artifacts/validate/summary.json and report.md, and stops the pipeline (exit code 2) when a
critical expectation fails. Which checks exist and their severity: ferops.data.expectations.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferops.config import SPLITS, ClassesConfig, ValidateConfig, load_params
from ferops.data import expectations as ex
from ferops.data.table import ImageTable, load_table
from ferops.errors import DataError
from ferops.files import write_atomic
from ferops.stage import run_stage, stage_parser

log = logging.getLogger("ferops.validate")

CHUNK = 4096  # images stacked at once: bounds the float64 temporaries of std to ~75 MB at 48x48
SHOWN_IN_ERROR = 5


@dataclass
class ValidationReport:
    success: bool
    results: list[ex.Outcome]
    summary: dict[str, Any]

    def failures(self, critical: bool | None = True) -> list[ex.Outcome]:
        """Failed expectations: critical ones (default), warnings (False) or all (None)."""
        return [r for r in self.results
                if not r.success and (critical is None or r.critical == critical)]

    def to_markdown(self) -> str:
        """The human-readable report.md."""
        return "\n".join([*_md_header(self), *_md_expectations(self.results),
                          *_md_offenders(self.results), *_md_counts(self.summary),
                          *_md_quarantine(self.summary)]) + "\n"


def compute_image_stats(table: ImageTable) -> pd.DataFrame:
    """One row per image: identity columns, shape, dtype and pixel statistics.

    Images are grouped by shape and dtype and reduced as stacked arrays, so 36,000 48x48
    images take well under a second. Empty or non-numeric images get zero/NaN statistics;
    the shape and dtype checks reject them.
    """
    meta = table.meta.reset_index(drop=True)
    frame = pd.DataFrame({c: meta[c] for c in ("origin", "label", "split", "source", "sha256")})
    frame["votes_ok"] = [votes_agree(v, lab) for v, lab in zip(meta["votes"], meta["label"],
                                                                 strict=True)]
    for column, values in _pixel_stats(table.images).items():
        frame[column] = values
    return frame


def votes_agree(votes: str, label: str) -> bool:
    """No votes, or annotator votes (JSON {label: count >= 0}) whose single top is label."""
    if not votes:
        return True
    try:
        counts = json.loads(votes)
        values = [float(v) for v in counts.values()]
    except (ValueError, TypeError, AttributeError):
        return False
    if not values or min(values) < 0 or not np.isfinite(values).all():
        return False
    top = max(values)
    return top > 0 and counts.get(label) == top and values.count(top) == 1


def _pixel_stats(images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    out = {k: np.zeros(len(images), np.float64) for k in ("mean", "std", "min", "max")}
    groups: dict[tuple[tuple[int, ...], str], list[int]] = defaultdict(list)
    for i, img in enumerate(images):
        groups[(img.shape, img.dtype.str)].append(i)
    for indices in groups.values():
        _reduce_group(images, indices, out)
    shapes = [img.shape for img in images]
    return {"height": np.array([s[0] if s else 0 for s in shapes], np.int64),
            "width": np.array([s[1] if len(s) > 1 else 0 for s in shapes], np.int64),
            "ndim": np.array([len(s) for s in shapes], np.int64),
            "dtype": np.array([img.dtype.name for img in images], object), **out}


def _reduce_group(images: Sequence[np.ndarray], indices: list[int],
                 out: dict[str, np.ndarray]) -> None:
    """Fill out[stat][indices] for images of one shape and dtype, CHUNK at a time."""
    first = images[indices[0]]
    if not first.size:
        return  # zeros: the size checks name these
    if first.dtype.kind not in "biuf":
        for values in out.values():
            values[indices] = np.nan  # the dtype check names these
        return
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start:start + CHUNK]
        flat = np.stack([images[i] for i in chunk]).reshape(len(chunk), -1)
        out["mean"][chunk] = flat.mean(axis=1, dtype=np.float64)
        out["std"][chunk] = flat.std(axis=1, dtype=np.float64)
        out["min"][chunk] = flat.min(axis=1)
        out["max"][chunk] = flat.max(axis=1)


def count_classes(stats: pd.DataFrame, classes: ClassesConfig) -> pd.DataFrame:
    """Images per class of classes.names and split, after merges; absent classes count 0.

    imbalance is largest training class / this class (NaN where the class has none; the
    min_per_class check already fails then).
    """
    merged = stats["label"].replace(classes.merge)
    counts = (pd.crosstab(merged, stats["split"])
              .reindex(index=list(classes.names), columns=list(SPLITS), fill_value=0)
              .astype(np.int64))
    counts.index.name, counts.columns.name = "label", None
    train = counts["train"].astype(np.float64)
    counts["imbalance"] = (train.max() / train.where(train > 0)) if len(train) else train
    return counts.reset_index()


def build_frames(table: ImageTable, quarantine: pd.DataFrame,
                 classes: ClassesConfig) -> dict[str, pd.DataFrame]:
    """The three frames the expectations run on (see ferops.data.expectations)."""
    images = compute_image_stats(table)
    # How many splits hold each content hash: > 1 is train/eval leakage.
    images["n_splits"] = (images.groupby("sha256", dropna=False)["split"]
                          .transform("nunique").fillna(1).astype(np.int64))
    kept = pd.DataFrame({"origin": images["origin"], "quarantined": 0.0})
    held = pd.DataFrame({"origin": quarantine["origin"], "quarantined": 1.0})
    return {"images": images, "class_counts": count_classes(images, classes),
            "quarantine": pd.concat([kept, held], ignore_index=True)}


def validate_table(table: ImageTable, quarantine: pd.DataFrame, classes: ClassesConfig,
                   cfg: ValidateConfig) -> ValidationReport:
    """Run every expectation; success is False when any critical one failed."""
    frames = build_frames(table, quarantine, classes)
    checks = ex.build_checks(classes, cfg, [str(o) for o in quarantine["origin"]])
    results = ex.run_checks(frames, checks)
    success = all(r.success for r in results if r.critical)
    return ValidationReport(success, results, _summarize(success, results, frames, quarantine))


def _summarize(success: bool, results: list[ex.Outcome], frames: dict[str, pd.DataFrame],
               quarantine: pd.DataFrame) -> dict[str, Any]:
    images, counts = frames["images"], frames["class_counts"]
    n_q, n = len(quarantine), len(images) + len(quarantine)
    train = counts["train"]
    reasons = quarantine.groupby("reason", sort=True)["origin"]
    return ex.to_plain({
        "success": success,
        "n_images": len(images),
        "n_quarantined": n_q,
        "quarantine_fraction": n_q / n if n else 0.0,
        "critical_failures": sum(1 for r in results if r.critical and not r.success),
        "warnings": sum(1 for r in results if not r.critical and not r.success),
        "counts": {s: g.value_counts(dropna=False).sort_index().to_dict()
                   for s, g in images.groupby("split")["label"]},
        "class_counts": counts.set_index("label")[list(SPLITS)].to_dict(orient="index"),
        "imbalance_ratio": float(train.max() / train.min()) if len(train) and train.min() else None,
        "quarantine_reasons": {str(r): {"count": len(g), "examples": list(g[:5])}
                               for r, g in reasons},
        "expectations": [r.as_dict() for r in results],
    })


ICONS = {"pass": "✅", "critical": "❌", "warning": "⚠️"}


def _icon(r: ex.Outcome) -> str:
    return ICONS["pass"] if r.success else ICONS["critical" if r.critical else "warning"]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    text = "—" if value is None or value == [] else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:120]


def _md_header(report: ValidationReport) -> list[str]:
    s = report.summary
    return [f"# Data validation: {'PASS' if report.success else 'FAIL'}", "",
            f"{s['n_images']} images kept, {s['n_quarantined']} quarantined "
            f"(fraction {s['quarantine_fraction']:.2%}). Critical failures: "
            f"{s['critical_failures']}, warnings: {s['warnings']}. Largest/smallest training "
            f"class: {_cell(s['imbalance_ratio'] and round(s['imbalance_ratio'], 2))}.", "",
            f"{ICONS['pass']} passed, {ICONS['critical']} critical failure (stops the pipeline), "
            f"{ICONS['warning']} warning (reported only).", ""]


def _md_expectations(results: list[ex.Outcome]) -> list[str]:
    lines = ["## Expectations", "", "| | Expectation | Column | Severity | Unexpected | Observed |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {_icon(r)} | {_cell(r.name)} | {_cell(r.column)} | "
              f"{'critical' if r.critical else 'warning'} | {_cell(r.unexpected_count)} | "
              f"{_cell(r.observed)} |" for r in results]
    return [*lines, ""]


def _md_offenders(results: list[ex.Outcome]) -> list[str]:
    failed = [r for r in results if not r.success]
    lines = ["## Offending files", ""] if failed else []
    for r in failed:
        count = "" if r.unexpected_count is None else f" ({r.unexpected_count})"
        lines += [f"### {_icon(r)} {r.name}{count}", ""]
        lines += [f"- `{o}`" for o in r.offenders] or ["- (no rows to name)"]
        if r.unexpected_count and r.unexpected_count > len(r.offenders):
            lines.append(f"- ... and {r.unexpected_count - len(r.offenders)} more")
        lines.append("")
    return lines


def _md_counts(summary: dict[str, Any]) -> list[str]:
    counts = summary["class_counts"]
    lines = ["## Images per class and split (after merges)", "",
             f"| class | {' | '.join(SPLITS)} | total |", "|---" * (len(SPLITS) + 2) + "|"]
    for label, row in counts.items():
        values = [row[s] for s in SPLITS]
        lines.append(f"| {label} | {' | '.join(map(str, values))} | {sum(values)} |")
    return [*lines, ""]


def _md_quarantine(summary: dict[str, Any]) -> list[str]:
    reasons = summary["quarantine_reasons"]
    excluded = summary.get("n_excluded", 0)
    note = ([f"{excluded} rows were excluded by their source's own labelling protocol "
             "(e.g. FER+ votes without a majority); they are listed in "
             "artifacts/ingest/excluded.csv and do not count as quarantine.", ""]
            if excluded else [])
    if not reasons:
        return ["## Quarantine", "", *note, "Nothing was quarantined."]
    lines = ["## Quarantine", "", *note, "| reason | count | first origins |", "|---|---|---|"]
    lines += [f"| {_cell(r)} | {v['count']} | {_cell(', '.join(v['examples']))} |"
              for r, v in reasons.items()]
    return lines


def read_quarantine(path: Path) -> pd.DataFrame:
    """quarantine.csv as strings; a header-only or empty file is an empty frame."""
    columns = ["origin", "source", "reason"]
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=columns, dtype=object)
    missing = [c for c in ("origin", "reason") if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (expected {columns})")
    return frame


def write_outputs(report: ValidationReport, out_dir: Path) -> None:
    """summary.json and report.md, each written to a temp name and renamed into place."""
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {"summary.json": json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n",
             "report.md": report.to_markdown()}
    for name, text in texts.items():
        write_atomic(out_dir / name, text)


def describe_failures(report: ValidationReport, report_path: Path) -> str:
    """The DataError message: each failed critical check and its first offenders."""
    failed = report.failures()
    lines = [f"validation failed: {len(failed)} critical expectation(s) failed:"]
    for r in failed:
        shown = ", ".join(r.offenders[:SHOWN_IN_ERROR])
        shown += ", ..." if len(r.offenders) > SHOWN_IN_ERROR else ""
        if r.unexpected_count is not None:  # a per-row check: count, then the rows
            shown = f"{r.unexpected_count} offending row(s): {shown}"
        elif r.observed is not None:  # an aggregate: the value it saw
            shown = f"observed {_cell(r.observed)}" + (f"; {shown}" if shown else "")
        lines.append(f" - {r.name}: {shown or 'failed'}")
    lines.append(f"See {report_path}")
    return "\n".join(lines)


def _run(args: Any) -> int:
    params = load_params(args.params)
    if not (args.in_dir / "meta.parquet").is_file():
        raise DataError(f"no ingested table in {args.in_dir} (run the ingest stage first)")
    if not (args.in_dir / "quarantine.csv").is_file():
        raise DataError(f"{args.in_dir / 'quarantine.csv'} not found (run the ingest stage first)")
    table = load_table(args.in_dir)
    quarantine = read_quarantine(args.in_dir / "quarantine.csv")
    report = validate_table(table, quarantine, params.classes, params.validate)
    excluded = args.in_dir / "excluded.csv"
    if excluded.is_file():
        report.summary["n_excluded"] = len(read_quarantine(excluded))
    write_outputs(report, args.out)
    for r in report.failures(critical=False):
        shown = ", ".join(r.offenders[:SHOWN_IN_ERROR]) or r.observed
        log.warning("warning: %s failed (%s)", r.name, shown)
    if not report.success:
        raise DataError(describe_failures(report, args.out / "report.md"))
    log.info("validation passed: %d images, report in %s", len(table), args.out / "report.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser("ferops-validate", "Validate the ingested table with Great Expectations.")
    parser.add_argument("--in", dest="in_dir", type=Path, default=Path("artifacts/ingest"),
                        help="ingest output directory (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/validate"),
                        help="report directory (default: %(default)s)")
    return run_stage(_run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
