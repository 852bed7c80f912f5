"""The validate stage with real Great Expectations on small in-memory tables."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferops.config import ClassesConfig, ValidateConfig
from ferops.data.table import ImageTable, save_table
from ferops.data.validate import compute_image_stats, main, validate_table
from tests.factories import PARAMS, write_params

CLASSES = PARAMS.classes
CFG = PARAMS.validate
PER_SPLIT = {"train": 12, "val": 2, "test": 2}
NO_QUARANTINE = pd.DataFrame(columns=["origin", "source", "reason"], dtype=object)


def noise(rng: np.random.Generator, side: int = 48, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=(side, side), dtype=np.uint8)


def make_rows(labels=CLASSES.names, per_split=PER_SPLIT, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"label": label, "split": split, "image": noise(rng),
             "origin": f"data/demo/{split}/{label}/{i}.png"}
            for label in labels for split, n in per_split.items() for i in range(n)]


def to_table(rows: list[dict]) -> ImageTable:
    images = [r["image"] for r in rows]
    meta = pd.DataFrame({
        "sha256": [hashlib.sha256(im.tobytes()).hexdigest() for im in images],
        "label": [r["label"] for r in rows], "split": [r["split"] for r in rows],
        "source": "demo", "origin": [r["origin"] for r in rows],
        "height": [im.shape[0] for im in images], "width": [im.shape[1] for im in images],
    })
    return ImageTable(meta, images)


def run(rows: list[dict], quarantine: pd.DataFrame = NO_QUARANTINE,
        classes: ClassesConfig = CLASSES, cfg: ValidateConfig = CFG):
    return validate_table(to_table(rows), quarantine, classes, cfg)


def failed(report, critical: bool | None = True) -> dict[str, list[str]]:
    return {r.name: r.offenders for r in report.failures(critical)}


def only_failure(report, fragment: str) -> list[str]:
    """The single failed critical check must contain fragment; return its offenders."""
    names = failed(report)
    assert not report.success
    assert len(names) == 1 and fragment in next(iter(names)), names
    return next(iter(names.values()))


def test_good_table_passes_every_expectation():
    report = run(make_rows())
    assert report.success, failed(report, None)
    assert report.failures(None) == []
    assert len(report.results) >= 15
    assert {r.critical for r in report.results} == {True, False}
    assert report.summary["class_counts"]["happy"] == {"train": 12, "val": 2, "test": 2}
    json.dumps(report.summary)  # plain types only


def test_image_stats_are_per_image_and_exact():
    rows = make_rows(per_split={"train": 2})
    rows[0]["image"] = np.full((20, 30), 7, np.uint8)
    stats = compute_image_stats(to_table(rows))
    assert len(stats) == len(rows)
    first = stats.iloc[0]
    assert (first["height"], first["width"], first["dtype"]) == (20, 30, "uint8")
    assert (first["mean"], first["std"], first["min"], first["max"]) == (7, 0, 7, 7)
    img = rows[1]["image"]
    assert stats.iloc[1]["std"] == pytest.approx(img.std())
    assert stats.iloc[1]["mean"] == pytest.approx(img.mean())


def test_unknown_label_is_named():
    rows = make_rows()
    rows[3]["label"] = "contempt"
    assert only_failure(run(rows), "label in allowed set") == [rows[3]["origin"]]


def test_missing_split_is_critical():
    rows = make_rows(per_split={"train": 12, "val": 2})
    offenders = only_failure(run(rows), "required splits")
    assert offenders == ["test"]


def test_too_few_training_images_names_the_class():
    rows = [r for r in make_rows() if not (r["label"] == "fear" and r["origin"].endswith(
        ("/0.png", "/1.png", "/2.png")) and r["split"] == "train")]
    assert only_failure(run(rows), "training images per class") == ["fear"]


def test_absent_class_fails_training_minimum():
    rows = make_rows(labels=CLASSES.names[:-1])
    names = failed(run(rows))
    assert names[">= 10 training images per class"] == ["neutral"]


def test_duplicate_across_splits_names_both_copies():
    rows = make_rows()
    train_row = rows[0]
    test_row = next(r for r in rows if r["split"] == "test")
    test_row["image"] = train_row["image"].copy()
    report = run(rows)
    assert not report.success
    critical = {o.name: set(o.offenders) for o in report.failures(critical=True)}
    warnings = {o.name: set(o.offenders) for o in report.failures(critical=False)}
    both = {train_row["origin"], test_row["origin"]}
    assert critical == {"no image in two splits (leakage)": both}
    assert warnings["no duplicate images (sha256 unique)"] == both


def test_duplicate_within_one_split_is_only_a_warning():
    # ingest keeps duplicates inside a protected split (a published test set stays as is)
    rows = make_rows()
    tests = [r for r in rows if r["split"] == "test"]
    tests[1]["image"] = tests[0]["image"].copy()
    report = run(rows)
    assert report.success
    assert [o.name for o in report.failures(critical=False)] == [
        "no duplicate images (sha256 unique)"]


def test_blank_image_is_named():
    rows = make_rows()
    rows[5]["image"] = np.full((48, 48), 128, np.uint8)
    assert only_failure(run(rows), "std >= 3.0") == [rows[5]["origin"]]


def test_too_small_image_is_named():
    rows = make_rows()
    rows[7]["image"] = noise(np.random.default_rng(1), side=8)
    names = failed(run(rows))
    assert names == {"height >= 16": [rows[7]["origin"]], "width >= 16": [rows[7]["origin"]]}


def test_wrong_dtype_is_critical():
    rows = make_rows()
    rows[2]["image"] = rows[2]["image"].astype(np.float32)
    assert only_failure(run(rows), "dtype uint8") == [rows[2]["origin"]]


def test_quarantine_fraction_too_high():
    rows = make_rows()  # 112 images; 10 quarantined is 8 % > 5 %
    quarantine = pd.DataFrame({"origin": [f"data/incoming/x{i}.png" for i in range(10)],
                               "source": "incoming", "reason": "corrupt"})
    report = run(rows, quarantine)
    offenders = only_failure(report, "quarantine fraction")
    assert offenders[0] == "data/incoming/x0.png"
    assert report.summary["quarantine_reasons"]["corrupt"]["count"] == 10
    assert run(rows, quarantine.head(3)).success


def test_dark_images_are_only_a_warning():
    rows = make_rows()
    rng = np.random.default_rng(2)
    for row in rows[:5]:  # 5 of 112 = 4.5 % outside mean_range, more than the 1 % allowed
        row["image"] = noise(rng, high=12)
    report = run(rows)
    assert report.success
    warnings = failed(report, critical=False)
    assert list(warnings) == ["mean in [15.0, 240.0] for 99% of images"]
    assert set(next(iter(warnings.values()))) == {r["origin"] for r in rows[:5]}
    assert "⚠️" in report.to_markdown()


def test_missing_class_in_val_is_a_warning():
    rows = [r for r in make_rows() if not (r["label"] == "sad" and r["split"] == "val")]
    report = run(rows)
    assert report.success
    assert failed(report, critical=False) == {"every class present in val": ["sad"]}


def test_merge_folds_a_label_into_its_target():
    names = tuple(n for n in CLASSES.names if n != "disgust")
    rows = [r for r in make_rows() if r["label"] != "disgust"]
    rows += make_rows(labels=["disgust"], per_split={"train": 5, "val": 1, "test": 1}, seed=3)
    merged = PARAMS.classes.replace(names=names, merge={"disgust": "angry"})
    report = run(rows, classes=merged)
    assert report.success, failed(report, None)
    assert report.summary["class_counts"]["angry"]["train"] == 17
    # disgust is unknown then
    assert not run(rows, classes=PARAMS.classes.replace(names=names)).success


def test_drop_allows_any_canonical_label():
    rows = make_rows()
    rows[0]["label"] = "contempt"
    dropping = CLASSES.replace(others="drop")
    assert not run(rows).success
    report = run(rows, classes=dropping)
    # angry lost one training image (11 left) but still meets the minimum of 10
    assert report.success, failed(report, None)


def write_ingest(tmp_path: Path, rows: list[dict], quarantine: pd.DataFrame) -> Path:
    in_dir = tmp_path / "ingest"
    save_table(to_table(rows), in_dir)
    quarantine.to_csv(in_dir / "quarantine.csv", index=False)
    write_params(tmp_path)
    return in_dir



def call_main(tmp_path: Path, in_dir: Path) -> int:
    return main(["--params", str(tmp_path / "params.yaml"), "--in", str(in_dir),
                 "--out", str(tmp_path / "validate"), "-q"])


def test_main_writes_reports_for_good_data(tmp_path):
    quarantine = pd.DataFrame({"origin": ["data/incoming/bad.png"], "source": "incoming",
                               "reason": "corrupt image"})
    assert call_main(tmp_path, write_ingest(tmp_path, make_rows(), quarantine)) == 0
    summary = json.loads((tmp_path / "validate" / "summary.json").read_text(encoding="utf-8"))
    assert summary["success"] is True and summary["n_images"] == 112
    assert {e["name"] for e in summary["expectations"]} >= {"std >= 3.0 (no blank/constant images)"}
    report = (tmp_path / "validate" / "report.md").read_text(encoding="utf-8")
    assert "PASS" in report and "corrupt image" in report and "data/incoming/bad.png" in report
    assert not list((tmp_path / "validate").glob("*.tmp"))


def test_main_fails_with_exit_code_2_naming_the_file(tmp_path, capsys):
    rows = make_rows()
    rows[4]["image"] = np.zeros((48, 48), np.uint8)
    rows[4]["origin"] = "data/incoming/happy/blank.png"
    assert call_main(tmp_path, write_ingest(tmp_path, rows, NO_QUARANTINE)) == 2
    err = capsys.readouterr().err
    assert "validation failed: 1 critical expectation(s) failed" in err
    assert "std >= 3.0" in err and "data/incoming/happy/blank.png" in err
    assert "Calculating Metrics" not in err  # GX progress bars are off
    report = (tmp_path / "validate" / "report.md").read_text(encoding="utf-8")
    assert "FAIL" in report and "❌" in report and "data/incoming/happy/blank.png" in report
    summary = json.loads((tmp_path / "validate" / "summary.json").read_text(encoding="utf-8"))
    assert summary["success"] is False


def test_main_without_ingest_output_is_a_clean_error(tmp_path, capsys):
    write_params(tmp_path)
    assert call_main(tmp_path, tmp_path / "nothing") == 2
    assert "ingest" in capsys.readouterr().err
