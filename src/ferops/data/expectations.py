"""Great Expectations plumbing for the validate stage: the checks, and running them.

Each check is a real GX 1.x expectation on one of three in-memory frames:
  images        one row per image (see validate.compute_image_stats)
  class_counts  one row per class of classes.names, image counts per split after merges
  quarantine    one row per kept (0) or quarantined (1) item, so its mean is the fraction
Severity travels inside the expectation itself as meta={"critical": bool, "name": str}:
critical failures stop the pipeline, warnings are only reported.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx
import pandas as pd
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)

from ferops.config import SPLITS, ClassesConfig, ValidateConfig
from ferops.labels import CANONICAL

FRAMES = ("images", "class_counts", "quarantine")
# The column that names a bad row in each frame: a file for images, a class for counts.
INDEX_COLUMN = {"images": "origin", "class_counts": "label", "quarantine": "origin"}
MAX_OFFENDERS = 20
# Largest/smallest training class above this is reported (warning only). FER2013's
# happy/disgust is ~16.5; a model trained on such data needs class weights (encode does that).

E = gx.expectations


@dataclass(frozen=True)
class Check:
    frame: str                       # which of FRAMES the expectation runs on
    expectation: Any                 # a gx.expectations.Expectation carrying name/critical meta
    fallback_offenders: tuple[str, ...] = ()  # named when GX has no row list (aggregate checks)


@dataclass
class Outcome:
    """One expectation's verdict, in plain JSON-friendly types."""

    name: str
    expectation: str
    column: str | None
    critical: bool
    success: bool
    unexpected_count: int | None
    offenders: list[str] = field(default_factory=list)
    observed: Any = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_checks(classes: ClassesConfig, cfg: ValidateConfig,
                 quarantined_origins: Sequence[str] = ()) -> list[Check]:
    """Every expectation of the stage, with its severity, in report order."""
    return [*_image_checks(classes, cfg), *_count_checks(cfg),
            Check("quarantine", _expect(E.ExpectColumnMeanToBeBetween, "quarantined", True,
                                        f"quarantine fraction <= {cfg.max_quarantine_fraction}",
                                        max_value=cfg.max_quarantine_fraction),
                  tuple(quarantined_origins[:MAX_OFFENDERS]))]


def allowed_labels(classes: ClassesConfig) -> list[str]:
    """Labels an image may carry: the classes and merge sources, or any canonical one on drop."""
    if classes.others == "drop":
        return list(CANONICAL)
    return sorted({*classes.names, *classes.merge})


def _image_checks(classes: ClassesConfig, cfg: ValidateConfig) -> list[Check]:
    lo, hi = cfg.mean_range
    specs = [
        (E.ExpectColumnValuesToNotBeNull, "label", True, "label present", {}),
        (E.ExpectColumnValuesToBeInSet, "label", True, "label in allowed set",
         {"value_set": allowed_labels(classes)}),
        # Soft labels (FER+ votes) must say what the label says, or training learns noise.
        (E.ExpectColumnValuesToBeInSet, "votes_ok", True,
         "annotator votes, where present, have the label as their single top",
         {"value_set": [True]}),
        (E.ExpectColumnValuesToBeInSet, "split", True, f"split in {list(SPLITS)}",
         {"value_set": list(SPLITS)}),
        (E.ExpectColumnDistinctValuesToContainSet, "split", True,
         f"required splits present {list(cfg.required_splits)}",
         {"value_set": list(cfg.required_splits)}),
        # A warning: ingest removes duplicates except inside protected splits (ingest.
        # protect_splits), which keep a published test set as published. Leakage is critical.
        (E.ExpectColumnValuesToBeUnique, "sha256", False, "no duplicate images (sha256 unique)",
         {}),
        (E.ExpectColumnValuesToBeBetween, "n_splits", True,
         "no image in two splits (leakage)", {"max_value": 1}),
        (E.ExpectColumnValuesToBeInSet, "dtype", True, "dtype uint8", {"value_set": ["uint8"]}),
        (E.ExpectColumnValuesToBeInSet, "ndim", True, "2-D grayscale", {"value_set": [2]}),
        (E.ExpectColumnValuesToBeBetween, "height", True, f"height >= {cfg.min_side}",
         {"min_value": cfg.min_side}),
        (E.ExpectColumnValuesToBeBetween, "width", True, f"width >= {cfg.min_side}",
         {"min_value": cfg.min_side}),
        (E.ExpectColumnValuesToBeBetween, "std", True,
         f"std >= {cfg.min_std} (no blank/constant images)", {"min_value": cfg.min_std}),
        (E.ExpectColumnValuesToBeBetween, "mean", False,
         f"mean in [{lo}, {hi}] for {cfg.mean_range_mostly:.0%} of images",
         {"min_value": lo, "max_value": hi, "mostly": cfg.mean_range_mostly}),
    ]
    return [Check("images", _expect(cls, col, crit, name, **kw))
            for cls, col, crit, name, kw in specs]


def _count_checks(cfg: ValidateConfig) -> list[Check]:
    return [
        Check("class_counts", _expect(E.ExpectColumnValuesToBeBetween, "train", True,
                                      f">= {cfg.min_per_class} training images per class",
                                      min_value=cfg.min_per_class)),
        Check("class_counts", _expect(E.ExpectColumnValuesToBeBetween, "val", False,
                                      "every class present in val", min_value=1)),
        Check("class_counts", _expect(E.ExpectColumnValuesToBeBetween, "test", False,
                                      "every class present in test", min_value=1)),
        Check("class_counts", _expect(E.ExpectColumnValuesToBeBetween, "imbalance", False,
                                      f"train imbalance (largest/this class) <= "
                                      f"{cfg.max_imbalance:g}",
                                      max_value=cfg.max_imbalance)),
    ]


def _expect(cls: type, column: str, critical: bool, name: str, **kwargs: Any) -> Any:
    return cls(column=column, meta={"critical": critical, "name": name}, **kwargs)


@functools.cache
def _context() -> tuple[Any, dict[str, Any]]:
    """One quiet ephemeral context per process (GX takes seconds to start), with a batch
    definition per frame; suites are replaced on every run, so reuse is safe."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    # In-memory stores without a data-docs site (we write our own report), no progress bars
    # (they would clutter dvc repro's output) and no usage statistics.
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(),
                               progress_bars=ProgressBarsConfig(globally=False),
                               analytics_enabled=False)
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas("ferops_validate")
    batches = {name: source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
               for name in FRAMES}
    return context, batches


def run_checks(frames: dict[str, pd.DataFrame], checks: Sequence[Check]) -> list[Outcome]:
    """Run the checks frame by frame; outcomes come back in the order of checks."""
    context, batches = _context()
    by_name = {c.expectation.meta["name"]: c for c in checks}  # names are unique per run
    outcomes: dict[str, Outcome] = {}
    for frame in FRAMES:
        picked = [c.expectation for c in checks if c.frame == frame]
        if not picked:
            continue
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=f"ferops_{frame}", expectations=picked))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(data=batches[frame], suite=suite, name=f"ferops_{frame}"))
        result = definition.run(batch_parameters={"dataframe": frames[frame]}, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": [INDEX_COLUMN[frame]]})
        for res in result.results:
            name = res.expectation_config.meta["name"]
            outcomes[name] = _outcome(res, by_name[name], INDEX_COLUMN[frame])
    return [outcomes[name] for name in by_name if name in outcomes]


def _outcome(res: Any, check: Check, index_column: str) -> Outcome:
    config, result = res.expectation_config, res.result or {}
    error = _exception_message(res.exception_info)
    offenders = _offenders(result, index_column) or (
        [] if res.success else list(check.fallback_offenders))
    observed = result.get("observed_value")
    if error:
        observed = f"error: {error}"
    elif observed is None and "unexpected_list" in result:
        observed = to_plain(result.get("partial_unexpected_list", [])[:5])
    return Outcome(name=config.meta["name"], expectation=config.type,
                   column=config.kwargs.get("column"), critical=bool(config.meta["critical"]),
                   success=bool(res.success), unexpected_count=result.get("unexpected_count"),
                   offenders=offenders, observed=to_plain(observed))


def _offenders(result: dict[str, Any], index_column: str) -> list[str]:
    """The first distinct names of failing rows, or the values a set check missed."""
    rows = result.get("unexpected_index_list") or []
    names = [str(r.get(index_column)) for r in rows if isinstance(r, dict)]
    names = names or [str(v) for v in result.get("partial_missing_list") or []]
    return list(dict.fromkeys(names))[:MAX_OFFENDERS]


def _exception_message(info: Any) -> str | None:
    # GX nests exception_info per metric for some expectations; look one level down too.
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [_exception_message(v) for v in info.values() if isinstance(v, dict)]
    return next((m for m in nested if m), None)


def to_plain(value: Any) -> Any:
    """numpy scalars and containers to JSON-friendly Python values (NaN to None)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
