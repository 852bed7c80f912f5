"""What counts as a new labeled face, and the markdown of a run (no Prefect needed)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines import newdata, report


def touch(root: Path, rel: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_only_labeled_images_count(tmp_path):
    for rel in ("data/incoming/happy/a.png", "data/incoming/happy/b.JPG",
                "data/incoming/sad/deep/c.jpeg", "data/incoming/sad/d.png.part",
                "data/incoming/sad/.e.png", "data/incoming/.hidden/f.png",
                "data/incoming/loose.png", "data/incoming/sad/notes.txt"):
        touch(tmp_path, rel)
    assert newdata.list_faces(tmp_path, "data/incoming") == [
        "data/incoming/happy/a.png", "data/incoming/happy/b.JPG",
        "data/incoming/sad/deep/c.jpeg"]
    snap = newdata.snapshot(tmp_path, "data/incoming")
    assert snap.baseline == "none" and snap.per_label == {"happy": 2, "sad": 1}
    assert newdata.list_faces(tmp_path, "data/nowhere") == []


def test_baseline_is_dvc_state_then_the_manifest(tmp_path):
    for rel in ("data/incoming/happy/a.png", "data/incoming/happy/b.png"):
        touch(tmp_path, rel)
    md5 = "0123456789abcdef0123456789abcdef.dir"
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  path: data\n")
    listing = tmp_path / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    listing.parent.mkdir(parents=True)
    listing.write_text(json.dumps([{"md5": "x", "relpath": "incoming/happy/a.png"}]))
    snap = newdata.snapshot(tmp_path, "data/incoming")
    assert (snap.baseline, snap.new) == ("dvc", ("data/incoming/happy/b.png",))
    newdata.write_manifest(tmp_path, snap, md5)
    touch(tmp_path, "data/incoming/sad/c.png")
    again = newdata.snapshot(tmp_path, "data/incoming")
    assert (again.baseline, again.new) == ("manifest", ("data/incoming/sad/c.png",))
    assert again.digest != snap.digest and len(again.digest) == 16


def test_confusion_table_counts_pairs_in_class_order(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("actual,predicted\nsad,sad\nhappy,sad\nhappy,happy\nhappy,happy\n")
    text = report.confusion_table(csv, ["happy", "sad", "angry"])
    assert text.splitlines()[0] == "| actual \\ predicted | happy | sad |"
    assert "| **happy** | 2 | 1 |" in text and "| **sad** | 0 | 1 |" in text
    assert report.confusion_table(tmp_path / "missing.csv") == ""


def test_retrain_markdown_has_every_section():
    snap = newdata.DropSnapshot(("data/incoming/happy/a.png",), ("data/incoming/happy/a.png",),
                                "manifest", {"happy": 1})
    s = report.RunSummary("/p", "new-data", snapshot=snap, data_before="a.dir",
                          data_after="b.dir", push="pushed", stages=["ingest"], new_version="4",
                          metrics={"test_accuracy": 0.7, "val_accuracy": 0.8},
                          decision={"action": "promoted", "challenger": "4", "champion": "3",
                                    "reason": "better"}, decided_now=True, confusion="| x |")
    text = report.retrain_markdown(s)
    for part in ("new model version 4", "| happy | 1 |", "`a.dir` -> `b.dir`",
                 "| accuracy | 0.8000 | 0.7000 |", "**promoted**", "Reason: better", "| x |"):
        assert part in text, part
