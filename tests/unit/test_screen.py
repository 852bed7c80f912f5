"""Screening the drop folder: what ingest or validate would refuse is moved aside, kept, with
its reason, and what stays passes ingest and the Great Expectations suite."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ferops.config import load_params
from ferops.data import screen
from ferops.data.ingest import ingest
from ferops.data.validate import validate_table
from tests.conftest import noise_image, png_bytes
from tests.factories import write_params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_params(tmp_path)
    return tmp_path


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / "data/incoming" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def good(seed: int, side: int = 48) -> bytes:
    return png_bytes(noise_image(np.random.default_rng(seed), side))


def log_rows(root: Path) -> list[dict]:
    with open(root / "artifacts/rejected/rejected.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_bad_files_are_moved_aside_with_their_reason_and_good_ones_stay(project: Path):
    params = load_params(project / "params.yaml")
    keep = [put(project, f"happy/ok_{i}.png", good(i)) for i in range(3)]
    keep.append(put(project, "validation/sad/ok.png", good(9)))     # split folder above label
    tiny = png_bytes(noise_image(np.random.default_rng(5), 12))
    bad = {
        "happy/tiny.png": (tiny, "12x12 pixels: smaller than validate.min_side (16 px)"),
        "happy/truncated.png": (good(6)[:60], "decode"),
        "happy/blank.png": (png_bytes(np.full((48, 48), 128, np.uint8)), "blank image"),
        "contempt/x.png": (good(7), "label 'contempt' is not in the class set"),
        "smiling/x.png": (good(8), "unknown label folder 'smiling'"),
        "loose.png": (good(10), "file outside a label folder"),
    }
    for rel, (data, _) in bad.items():
        put(project, rel, data)
    pending = put(project, "happy/coming.png.part", b"half")
    hidden = put(project, "happy/.x.png", tiny)

    moved = screen.screen(project, params)

    assert {r.path for r in moved} == {f"data/incoming/{rel}" for rel in bad}
    for r in moved:
        rel = r.path.removeprefix("data/incoming/")
        data, why = bad[rel]
        assert why in r.reason or (why == "decode" and "image" in r.reason.lower()), r
        assert not (project / r.path).exists()
        assert (project / r.kept_at).read_bytes() == data           # kept, byte for byte
        assert r.kept_at.startswith("artifacts/rejected/") and r.kept_at.endswith(rel)
    assert {row["path"]: row["reason"] for row in log_rows(project)} == {
        r.path: r.reason for r in moved}
    assert all(p.is_file() for p in [*keep, pending, hidden])      # nothing good is touched


def test_what_screening_keeps_passes_ingest_and_validate(project: Path):
    """The screen is the ingest and validate rules, not a guess at them."""
    params = load_params(project / "params.yaml")
    for split in ("train", "val", "test"):
        for c, label in enumerate(params.classes.names):
            n = params.validate.min_per_class if split == "train" else 2
            for i in range(n):
                put(project, f"{split}/{label}/{i}.png", good(hash((split, c, i)) % 2**32))
    put(project, "train/happy/tiny.png", png_bytes(noise_image(np.random.default_rng(1), 12)))
    put(project, "train/sad/blank.png", png_bytes(np.zeros((48, 48), np.uint8)))
    put(project, "train/sad/broken.png", b"\x89PNG\r\n\x1a\nnot really")

    def check():
        src = params.ingest.catalog["incoming"]
        table, quarantine, *_ = ingest([src], params.ingest, params.faces, project,
                                       min_std=params.validate.min_std)
        return quarantine, validate_table(table, quarantine, params.classes, params.validate)

    quarantine, report = check()
    assert not report.success                      # the tiny image fails a critical rule
    assert len(quarantine) == 2                    # blank and broken: quarantined by ingest
    assert len(screen.screen(project, params)) == 3
    quarantine, report = check()
    assert quarantine.empty and report.success


def test_same_name_rejected_twice_keeps_both(project: Path):
    params = load_params(project / "params.yaml")
    first = put(project, "contempt/a.png", good(1)).read_bytes()
    [one] = screen.screen(project, params)
    second = put(project, "contempt/a.png", good(2)).read_bytes()
    [two] = screen.screen(project, params)
    assert one.kept_at != two.kept_at
    assert (project / one.kept_at).read_bytes() == first
    assert (project / two.kept_at).read_bytes() == second
    assert len(log_rows(project)) == 2


def test_cli_dry_run_moves_nothing_and_fails(project: Path, capsys):
    bad = put(project, "happy/tiny.png", png_bytes(noise_image(np.random.default_rng(1), 12)))
    assert screen.main(["--params", str(project / "params.yaml"), "--dry-run"]) == 1
    assert bad.is_file() and "would move data/incoming/happy/tiny.png" in capsys.readouterr().out
    assert screen.main(["--params", str(project / "params.yaml")]) == 0
    assert not bad.exists() and "1 file(s) moved aside" in capsys.readouterr().out
    assert screen.main(["--params", str(project / "params.yaml"), "--dry-run"]) == 0


def test_empty_or_missing_drop_folder_is_nothing_to_do(project: Path):
    params = load_params(project / "params.yaml")
    assert screen.screen(project, params) == []
    assert not (project / "artifacts/rejected").exists()
