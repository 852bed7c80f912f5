"""Markdown for the Prefect artifacts of a retraining run (pure functions of files and dicts)."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.newdata import DropSnapshot

METRIC_ROWS = ("accuracy", "macro_f1", "ece", "ece_calibrated", "n")
METRIC_SPLITS = ("val", "test", "test_single_pass", "test_tta_flip")


@dataclass
class RunSummary:
    """What one retraining run did, filled in step by step."""
    project: str
    trigger: str
    step: str = "start"                               # the step in progress (for failures)
    snapshot: DropSnapshot | None = None
    rejected: list[dict] = field(default_factory=list)  # moved aside by the screening
    data_before: str | None = None
    data_after: str | None = None
    push: str = "not run"
    stages: list[str] = field(default_factory=list)   # dvc stages that actually ran
    new_version: str | None = None                    # registered by this run
    metrics: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    decision_note: str = ""
    decided_now: bool = False                         # the gate ran in this run
    reload: str = "not run"
    confusion: str = ""                               # markdown table, or ""


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value).replace("|", "\\|")


def data_section(s: RunSummary) -> str:
    snap = s.snapshot
    lines = ["## Data added", ""]
    if snap is None or not snap.new:
        lines.append("No new labeled faces in the drop folder.")
    else:
        rows = [[label, n] for label, n in snap.per_label.items()]
        lines += [f"{len(snap.new)} new labeled faces (baseline: {snap.baseline}):", "",
                  table(["label", "new faces"], [*rows, ["**total**", len(snap.new)]])]
    if s.rejected:
        lines += ["", f"{len(s.rejected)} file(s) moved aside before versioning (kept with "
                  "their reason; not in the data version):", "",
                  table(["file", "kept at", "reason"],
                        [[r["path"], r["kept_at"], r["reason"]] for r in s.rejected[:50]])]
        if len(s.rejected) > 50:
            lines.append(f"\n... and {len(s.rejected) - 50} more")
    if s.data_after is None:
        version = f"not versioned (data.dvc still `{s.data_before}`)"
    elif s.data_before == s.data_after:
        version = f"unchanged (`{s.data_after}`)"
    else:
        version = f"`{s.data_before}` -> `{s.data_after}`"
    lines += ["", f"- data version (data.dvc): {version}",
              f"- dvc push: {s.push}",
              f"- stages run: {', '.join(s.stages) if s.stages else 'none (up to date)'}"]
    return "\n".join(lines)


def metrics_section(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "## Metrics\n\nNo artifacts/eval/metrics.json."
    splits = [sp for sp in METRIC_SPLITS if f"{sp}_accuracy" in metrics]
    rows = [[key, *(metrics.get(f"{sp}_{key}") for sp in splits)] for key in METRIC_ROWS]
    return "## Metrics (artifacts/eval/metrics.json)\n\n" + table(["metric", *splits], rows)


def decision_section(s: RunSummary) -> str:
    lines = ["## Promotion decision", ""]
    if s.decision_note:
        lines += [s.decision_note, ""]
    d = s.decision
    if d:
        lines.append(table(["action", "challenger", "champion before", "metric",
                            "challenger score", "champion score"],
                           [[f"**{d.get('action')}**", d.get("challenger"), d.get("champion"),
                             d.get("metric"), d.get("challenger_score"),
                             d.get("champion_score")]]))
        lines += ["", f"Reason: {d.get('reason')}"]
        stats = d.get("stats") or {}
        if stats:  # the paired comparison on the same test images (ferops/promotion.py)
            low, high = stats.get("accuracy_diff_95") or (None, None)
            lines += ["", table(["rule", "test images", "only challenger right",
                                 "only champion right", "McNemar p (one-sided)",
                                 "accuracy difference", "95 % interval"],
                                [[stats.get("rule"), stats.get("n"),
                                  stats.get("only_challenger_right"),
                                  stats.get("only_champion_right"), stats.get("p_value"),
                                  stats.get("accuracy_diff"), f"[{low}, {high}]"]])]
    lines += ["", f"Service reload: {s.reload}"]
    return "\n".join(lines)


def confusion_table(csv_path: Path, classes: list[str] | None = None) -> str:
    """The test confusion matrix (rows: actual, columns: predicted) from DVC's plot CSV."""
    try:
        with open(csv_path, newline="") as f:
            pairs = Counter((r["actual"], r["predicted"]) for r in csv.DictReader(f))
    except (OSError, KeyError):
        return ""
    seen = sorted({a for a, _ in pairs} | {p for _, p in pairs})
    labels = [c for c in (classes or []) if c in seen] + [c for c in seen if c not in
                                                            (classes or [])]
    rows = [[f"**{a}**", *(pairs.get((a, p), 0) for p in labels)] for a in labels]
    return table(["actual \\ predicted", *labels], rows)


def retrain_markdown(s: RunSummary, quarantine: str = "") -> str:
    """The artifact of a completed run; quarantine: ingest's quarantine table (the files it
    refused and trained without), or ""."""
    version = f"new model version {s.new_version}" if s.new_version else "no new model version"
    parts = [f"# ferops retraining: {version}", "",
             f"Trigger: {s.trigger}. Project: `{s.project}`.", "", data_section(s), "",
             "## Quarantined by ingest (artifacts/ingest/quarantine.csv)", "",
             quarantine or "Nothing.", "",
             metrics_section(s.metrics), "", decision_section(s)]
    if s.confusion:
        parts += ["", "## Test confusion matrix (rows: actual, columns: predicted)", "",
                  s.confusion]
    return "\n".join(parts) + "\n"


def validation_markdown(s: RunSummary, report_md: str, quarantine: str) -> str:
    """The artifact of a run stopped by Great Expectations: its report comes first."""
    return "\n".join([
        "# ferops retraining stopped: data validation failed", "",
        "Nothing was versioned, trained or registered: data.dvc, the DVC remote and the "
        "champion are as they were. The good faces stay in the drop folder; fix or remove "
        "the files named below and the next run picks them up.",
        "", data_section(s), "", "## Quarantined by ingest (artifacts/ingest/quarantine.csv)",
        "", quarantine or "Nothing.", "", "---", "", report_md]) + "\n"


def failure_markdown(s: RunSummary, step: str, message: str) -> str:
    return "\n".join([f"# ferops retraining failed at step `{step}`", "", "```", message.strip(),
                      "```", "", "The champion is unchanged unless the decision below says "
                      "otherwise.", "", data_section(s), "", decision_section(s)]) + "\n"


def quarantine_table(csv_path: Path, limit: int = 50) -> str:
    try:
        with open(csv_path, newline="") as f:
            rows = [[r.get("origin"), r.get("reason")] for r in csv.DictReader(f)]
    except OSError:
        return ""
    if not rows:
        return ""
    more = f"\n\n... and {len(rows) - limit} more" if len(rows) > limit else ""
    return table(["file", "reason"], rows[:limit]) + more
