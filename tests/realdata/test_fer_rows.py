"""The data stages on a few hundred real FER2013 / FER+ rows from ../shared/data.

Marked fer2013: CI always has the files; on a machine without them, deselect with
`-m "not fer2013"` (these tests fail, rather than skip, when the data is missing).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from ferops.config import (
    SourceConfig,
)
from ferops.data.augment import augment
from ferops.data.encode import encode
from ferops.data.ingest import ingest
from ferops.data.preprocess import preprocess
from ferops.data.table import ImageTable
from ferops.data.validate import validate_table
from ferops.errors import DataError
from ferops.labels import CANONICAL
from tests.conftest import SHARED_DATA
from tests.factories import PARAMS

pytestmark = pytest.mark.fer2013
# 150 Training rows, then 75 each from PublicTest (28709-) and PrivateTest (32298-).
ROWS = [*range(0, 150), *range(28709, 28784), *range(32298, 32373)]


def subset_csv(src: Path, dest: Path, rows: list[int]) -> None:
    """Copy the header and the given data rows (positions kept in order) into dest."""
    assert src.is_file(), f"{src} missing: deselect with -m 'not fer2013'"
    wanted, out = set(rows), []
    with gzip.open(src, "rt", encoding="utf-8", newline="") as fh:
        out.append(next(fh))
        for i, line in enumerate(fh):
            if i in wanted:
                out.append(line)
            if i > max(rows):
                break
    dest.write_text("".join(out), encoding="utf-8")


@pytest.fixture(scope="module")
def fer_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fer")
    subset_csv(SHARED_DATA / "fer2013/fer2013.csv.gz", d / "fer2013.csv", ROWS)
    subset_csv(SHARED_DATA / "ferplus/fer2013new.csv.gz", d / "fer2013new.csv", ROWS)
    return d


def test_fer2013_rows_through_every_stage(fer_dir: Path):
    src = SourceConfig(name="fer2013", kind="fer2013", path="fer2013.csv")
    table, quarantine, removed, report, _ = ingest([src], PARAMS.ingest, PARAMS.faces, fer_dir)
    assert quarantine.empty
    assert report["per_source"]["fer2013"]["read"] == len(ROWS)
    # FER2013 has exact duplicates; a val copy of a test image is removed, the test set is kept
    assert (removed["kept_split"] == "test").all()
    counts = table.meta["split"].value_counts().to_dict()
    assert counts["test"] == 75 and counts["train"] + (removed["split"] == "train").sum() == 150
    assert counts["val"] + (removed["split"] == "val").sum() == 75
    assert set(table.meta["label"]) <= set(CANONICAL[:7])
    # the first FER2013 row is an angry face starting "70 80 82 72 58" (see the data README)
    assert table.meta["label"].iat[0] == "angry"
    assert table.images[0][0, :5].tolist() == [70, 80, 82, 72, 58]
    present = tuple(sorted(set(table.meta.loc[table.meta["split"] == "train", "label"])))
    assert len(present) >= 6  # the 150 first rows cover (nearly) every emotion
    result = validate_table(table, quarantine, PARAMS.classes.replace(names=present, others="drop"),
                            PARAMS.validate.replace(min_per_class=1))
    assert [f.name for f in result.failures(critical=True)] == []
    images = preprocess(table, 48)
    np.testing.assert_array_equal(images[0], table.images[0])  # already 48x48 gray
    aug, meta = augment(images, table.meta, PARAMS.augment.replace(multiplier=2), seed=1)
    present_only = PARAMS.classes.replace(names=present, others="drop")
    splits, weights, summary, targets = encode(aug, meta, present_only, "balanced")
    assert summary["n_soft_train"] == 0                       # FER2013 has no votes
    test_in_classes = table.meta.query("split == 'test'")["label"].isin(present).sum()
    assert len(splits["train"][0]) == 2 * counts["train"]
    assert len(splits["test"][0]) == test_in_classes
    assert np.isfinite(weights).all()


def test_ferplus_majority_labels_join_on_row_position(fer_dir: Path):
    src = SourceConfig(name="ferplus", kind="ferplus", path="fer2013.csv",
                       votes="fer2013new.csv")
    table, quarantine, removed, report, excluded = ingest([src], PARAMS.ingest, PARAMS.faces,
                                                         fer_dir)
    assert len(table) + len(quarantine) + len(removed) + len(excluded) == len(ROWS)
    assert len(table) > 0.7 * len(ROWS)
    # FER+'s protocol (no majority, unknown, not a face) excludes rows; none of it is
    # quarantine, which is for damaged rows and would trip validate's 5 % ceiling.
    assert len(excluded) > 0 and report["n_excluded"] == len(excluded)
    reasons = set(excluded["reason"].str.split(" \\(").str[0])
    assert reasons <= {"FER+: no clear majority", "FER+: not a face",
                       "FER+: majority vote is 'unknown'", "FER+: majority vote is 'NF'"}
    assert not quarantine["reason"].str.startswith("FER+").any()
    assert report["per_source"]["ferplus"]["excluded"] == len(excluded)
    # Row 0: FER2013 says angry; FER+ votes for it are checked against the file itself.
    votes = (fer_dir / "fer2013new.csv").read_text().splitlines()
    header, first = votes[0].split(","), votes[1].split(",")
    counts = dict(zip(header[2:], map(int, first[2:]), strict=True))
    top = max(counts, key=counts.get)
    origin0 = "fer2013.csv:row 0"
    if origin0 in set(table.meta["origin"]):
        label = table.meta.set_index("origin").loc[origin0, "label"]
        assert {"anger": "angry", "neutral": "neutral", "sadness": "sad", "fear": "fear",
                "happiness": "happy", "surprise": "surprise", "disgust": "disgust",
                "contempt": "contempt"}[top] == label


def test_ferplus_votes_become_soft_targets_that_agree_with_the_majority(fer_dir: Path):
    src = SourceConfig(name="ferplus", kind="ferplus", path="fer2013.csv",
                       votes="fer2013new.csv")
    table, quarantine, _, _, _ = ingest([src], PARAMS.ingest, PARAMS.faces, fer_dir)
    # Each kept row's votes are the file's emotion counts with single votes dropped.
    lines = (fer_dir / "fer2013new.csv").read_text().splitlines()
    header = lines[0].split(",")
    names = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
             "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear",
             "contempt": "contempt"}
    for origin, votes in zip(table.meta["origin"], table.meta["votes"], strict=True):
        row = int(origin.rsplit(" ", 1)[1])           # the row's position in the file
        counts = dict(zip(header[2:], map(int, lines[row + 1].split(",")[2:]), strict=True))
        assert json.loads(votes) == {names[k]: v for k, v in counts.items()
                                     if k in names and v > 1}
    assert table.meta["votes"].map(len).gt(2).all()
    trained = table.meta.loc[table.meta["split"] == "train", "label"]
    ferplus = PARAMS.classes.replace(names=tuple(sorted(set(trained))), others="drop")
    result = validate_table(table, quarantine, ferplus,
                            PARAMS.validate.replace(min_per_class=1))
    assert [f.name for f in result.failures(critical=True)] == []
    images = preprocess(table, 48)
    aug, meta = augment(images, table.meta, PARAMS.augment.replace(multiplier=2), seed=1)
    splits, _, summary, targets = encode(aug, meta, ferplus, "none")
    y = splits["train"][1]
    assert summary["n_soft_train"] == len(y) == len(targets)      # augmented copies too
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    assert (targets.argmax(axis=1) == y).all()                     # the majority stays on top
    assert (targets.max(axis=1) < 1).mean() > 0.3                  # and most are truly soft


def test_validate_refuses_votes_that_contradict_the_label(fer_dir: Path):
    src = SourceConfig(name="ferplus", kind="ferplus", path="fer2013.csv",
                       votes="fer2013new.csv")
    table, quarantine, _, _, _ = ingest([src], PARAMS.ingest, PARAMS.faces, fer_dir)
    bad = table.meta.copy()
    bad.loc[bad.index[0], "votes"] = json.dumps({"happy": 1, "sad": 9}) \
        if bad["label"].iat[0] != "sad" else json.dumps({"happy": 9, "sad": 1})
    trained = bad.loc[bad["split"] == "train", "label"]
    classes = PARAMS.classes.replace(names=tuple(sorted(set(trained))), others="drop")
    result = validate_table(ImageTable(bad, table.images), quarantine, classes,
                            PARAMS.validate.replace(min_per_class=1))
    failed = [f.name for f in result.failures(critical=True)]
    assert failed == ["annotator votes, where present, have the label as their single top"]


def test_ferplus_row_count_mismatch_is_a_clear_error(fer_dir: Path, tmp_path: Path):
    lines = (fer_dir / "fer2013new.csv").read_text().splitlines(keepends=True)
    (tmp_path / "votes.csv").write_text("".join(lines[:-10]))
    (tmp_path / "fer2013.csv").write_text((fer_dir / "fer2013.csv").read_text())
    src = SourceConfig(name="ferplus", kind="ferplus", path="fer2013.csv", votes="votes.csv")
    with pytest.raises(DataError, match="290 rows but .*fer2013.csv has 300"):
        ingest([src], PARAMS.ingest, PARAMS.faces, tmp_path)
