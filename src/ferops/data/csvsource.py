"""FER2013 (`emotion,pixels,Usage`) and FER+ (vote counts joined on row position) readers."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ferops.data.records import SourceRead, rel_path
from ferops.errors import DataError
from ferops.labels import FER2013_IDS

FER_COLUMNS = ("emotion", "pixels", "Usage")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER_SIDE = 48
# FER+ vote columns in file order; the last two are not emotions.
FERPLUS_EMOTIONS = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
                    "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear",
                    "contempt": "contempt"}
FERPLUS_OTHER = ("unknown", "NF")


def load_csv(path: Path, columns: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """Read a CSV as strings; each row keeps its 0-based data-row position in column `_row`.

    Malformed lines and lines that are not UTF-8 are returned as quarantine entries instead of
    failing the whole file; a file that is not a CSV with these columns is a DataError.
    """
    refused: list[dict[str, str]] = []
    try:
        frame, skipped = _read_csv_tolerant(path, "utf-8")
        bad_text = np.zeros(len(frame), dtype=bool)
    except UnicodeDecodeError:
        # Latin-1 decodes any byte; FER files are pure ASCII, so a non-ASCII row is corrupt.
        frame, skipped = _read_csv_tolerant(path, "latin-1")
        bad_text = ~frame.apply(lambda col: col.str.isascii()).all(axis=1).to_numpy()
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: expected columns {','.join(columns)}; missing {missing} "
                        f"(found {list(frame.columns)[:12]})")
    n_total = len(frame) + len(skipped)
    frame["_row"] = np.setdiff1d(np.arange(n_total), skipped)
    for row in skipped:
        refused.append({"origin": f"{path.name}:row {row}", "reason": "malformed CSV line"})
    for row in frame.loc[bad_text, "_row"]:
        refused.append({"origin": f"{path.name}:row {row}", "reason": "row is not UTF-8 text"})
    return frame.loc[~bad_text].reset_index(drop=True), refused


def _read_csv_tolerant(path: Path, encoding: str) -> tuple[pd.DataFrame, list[int]]:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding,
                                on_bad_lines="warn")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a readable CSV file: {exc}") from None
    skipped = []
    for w in caught:
        # pandas reports 1-based file lines ("Skipping line 7: ..."); the header is line 1.
        skipped += [int(n) - 2 for n in re.findall(r"[Ll]ine (\d+)", str(w.message))]
    return frame, sorted(set(skipped))


def parse_pixels(text: str) -> np.ndarray:
    """'70 80 ...' (2,304 integers 0-255) -> (48, 48) uint8; ValueError with a reason."""
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")
    except ValueError:
        raise ValueError("pixels are not space-separated integers") from None
    if values.size != FER_SIDE * FER_SIDE:
        raise ValueError(f"{values.size} pixel values, expected {FER_SIDE * FER_SIDE}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values outside 0-255")
    return values.astype(np.uint8).reshape(FER_SIDE, FER_SIDE)


def read_fer2013(path: Path, root: Path) -> SourceRead:
    """FER2013 as published: Training -> train, PublicTest -> val, PrivateTest -> test."""
    frame, refused = load_csv(path, FER_COLUMNS)
    out = SourceRead(quarantine=refused)
    name = rel_path(path, root)
    rows = zip(frame["_row"], frame["emotion"], frame["pixels"], frame["Usage"], strict=True)
    for row, emotion, pixels, usage in tqdm(rows, total=len(frame), desc="ingest fer2013",
                                            unit="row", disable=None):
        origin = f"{name}:row {row}"
        try:
            label = _fer_label(emotion)
            split = USAGE_TO_SPLIT.get(usage.strip())
            if split is None:
                raise ValueError(f"Usage '{usage}' is not Training, PublicTest or PrivateTest")
            out.add(parse_pixels(pixels), label, split, origin)
        except ValueError as exc:
            out.refuse(origin, str(exc))
    return out


def _fer_label(emotion: str) -> str:
    text = emotion.strip()
    if not text.isdigit() or int(text) >= len(FER2013_IDS):
        raise ValueError(f"emotion '{emotion}' is not an id 0-{len(FER2013_IDS) - 1}")
    return FER2013_IDS[int(text)]


def read_ferplus(path: Path, votes_path: Path, root: Path, min_share: float) -> SourceRead:
    """FER2013 pixels relabelled by FER+ majority vote (joined on row position, not name)."""
    if not votes_path.exists():
        raise DataError(f"FER+ votes file {votes_path} not found")
    fer = read_fer2013(path, root)
    votes, refused = load_csv(votes_path, ("Usage", "Image name", *FERPLUS_EMOTIONS,
                                           *FERPLUS_OTHER))
    n_fer, n_votes = len(fer.images) + len(fer.quarantine), len(votes) + len(refused)
    if n_fer != n_votes:
        # The join is by row position: different lengths mean every later row may be shifted.
        raise DataError(f"{votes_path} has {n_votes} rows but {path} has {n_fer}: FER+ labels "
                        "join FER2013 on row position, so both must be the complete files")
    labels, counts = ferplus_labels(votes, min_share), ferplus_votes(votes)
    out = SourceRead(quarantine=fer.quarantine + refused)
    for image, split, origin in zip(fer.images, fer.splits, fer.origins, strict=True):
        row = int(origin.rsplit(" ", 1)[1])
        verdict = labels.get(row, "FER+ has no usable vote row for it")
        if verdict in FERPLUS_EMOTIONS.values():
            out.add(image, verdict, split, origin, votes=counts[row])
        elif verdict.startswith(FERPLUS_PROTOCOL):
            out.exclude(origin, verdict)
        else:
            out.refuse(origin, verdict)
    return out


# Verdicts that are FER+'s labelling protocol at work, not damaged rows.
FERPLUS_PROTOCOL = ("FER+: no clear majority", "FER+: majority vote is",
                    "FER+: not a face (dropped by FER+)")


def ferplus_labels(votes: pd.DataFrame, min_share: float) -> dict[int, str]:
    """Row position -> majority label, or -> the reason there is none.

    FER+'s own majority rule: a single vote is an outlier and is dropped; the top emotion
    needs more than min_share of the remaining votes; not-a-face/unknown majorities are
    refused, as are rows FER+ itself dropped (empty image name).
    """
    cols = [*FERPLUS_EMOTIONS, *FERPLUS_OTHER]
    counts = votes[cols].apply(pd.to_numeric, errors="coerce").to_numpy()
    out: dict[int, str] = {}
    names = [*FERPLUS_EMOTIONS.values(), *FERPLUS_OTHER]
    for row, name, c in zip(votes["_row"], votes["Image name"], counts, strict=True):
        if not str(name).strip():
            out[row] = "FER+: not a face (dropped by FER+)"
        elif np.isnan(c).any():
            out[row] = "FER+: vote counts are not numbers"
        else:
            out[row] = _majority(np.where(c > 1, c, 0), names, min_share)
    return out


def ferplus_votes(votes: pd.DataFrame) -> dict[int, str]:
    """Row position -> JSON {emotion: votes} for the rows with a majority label.

    The same outlier rule as the majority (a single vote is dropped), over the eight
    emotions only: 'unknown' and 'not a face' votes say nothing about which emotion it is.
    The soft-label target of a face (encode) is this distribution.
    """
    counts = votes[list(FERPLUS_EMOTIONS)].apply(pd.to_numeric, errors="coerce").to_numpy()
    names = list(FERPLUS_EMOTIONS.values())
    out = {}
    for row, c in zip(votes["_row"], counts, strict=True):
        if not np.isnan(c).any():
            out[row] = json.dumps({n: int(v) for n, v in zip(names, c, strict=True) if v > 1})
    return out


def _majority(c: np.ndarray, names: list[str], min_share: float) -> str:
    total = c.sum()
    top = int(np.argmax(c))
    if total == 0 or (c == c[top]).sum() > 1 or c[top] <= min_share * total:
        return f"FER+: no clear majority (votes {c.astype(int).tolist()})"
    if names[top] in FERPLUS_OTHER:
        return f"FER+: majority vote is '{names[top]}'"
    return names[top]
