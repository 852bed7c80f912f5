"""`ferops analyze` and the Recognizer API on real photos (scikit-image's), with a real Keras
model folder: the commands the README shows, run as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from ferops.analyze import main as analyze_main
from ferops.inference import UNCERTAIN
from ferops.recognizer import Recognizer
from tests.conftest import PROJECT
from tests.factories import PARAMS

CLASSES = list(PARAMS.classes.names)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    astronaut = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(folder / "astronaut.jpg"), astronaut)
    cv2.imwrite(str(folder / "no-face.png"), cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    video = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10,
                            (512, 512))
    for i in range(12):
        m = cv2.getRotationMatrix2D((256, 256), (i - 6) * 3, 1.0)
        video.write(cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REPLICATE))
    video.release()
    return folder


def test_recognizer_finds_the_face_with_the_service_answer_shape(demo_model_dir, photos):
    rec = Recognizer.from_model_dir(demo_model_dir)
    (face,) = rec.analyze(photos / "astronaut.jpg")
    assert 140 < face.box.x + face.box.w / 2 < 280 and face.label in CLASSES
    assert set(face.probabilities) == set(CLASSES)
    assert abs(sum(face.probabilities.values()) - 1) < 1e-3
    assert face.confidence == max(face.probabilities.values())
    assert rec.analyze(photos / "no-face.png") == []
    # bytes and arrays give the same answer as the path
    same = rec.analyze((photos / "astronaut.jpg").read_bytes())
    assert same[0].box == face.box and same[0].label == face.label


def test_abstention_answers_uncertain_below_the_threshold(demo_model_dir, photos):
    (face,) = Recognizer.from_model_dir(demo_model_dir, abstain_below=0.999).analyze(
        photos / "astronaut.jpg")
    assert face.label == UNCERTAIN and face.best_guess in CLASSES
    assert "best_guess" in face.to_json()
    (plain,) = Recognizer.from_model_dir(demo_model_dir, abstain_below=None).analyze(
        photos / "astronaut.jpg")
    assert plain.label in CLASSES and "best_guess" not in plain.to_json()


def test_video_frames_are_sampled_and_timed(demo_model_dir, photos):
    frames = list(Recognizer.from_model_dir(demo_model_dir).analyze_video(
        photos / "clip.mp4", every=4))
    assert [f.index for f in frames] == [0, 4, 8]
    assert [f.t for f in frames] == [0.0, 0.4, 0.8]
    assert all(len(f.faces) == 1 for f in frames)


def test_cli_csv_for_a_folder_skips_what_it_cannot_read(demo_model_dir, photos, capsys):
    rc = analyze_main([str(photos), "--model", str(demo_model_dir), "--format", "csv",
                       "--every", "6"])
    out, err = capsys.readouterr()
    assert rc == 0 and "broken.jpg" in err  # reported, and the folder goes on
    rows = list(csv.DictReader(io.StringIO(out)))
    files = sorted({Path(r["file"]).name for r in rows})
    assert files == ["astronaut.jpg", "clip.mp4"]  # no-face.png has no row
    assert sorted(int(r["frame"]) for r in rows if r["file"].endswith(".mp4")) == [0, 6]
    assert set(CLASSES) <= set(rows[0])


def test_cli_writes_annotated_copies_and_a_timeline(demo_model_dir, photos, tmp_path):
    out = tmp_path / "out"
    rc = analyze_main([str(photos / "astronaut.jpg"), str(photos / "clip.mp4"), "--model",
                       str(demo_model_dir), "--annotate", str(out), "--timeline", str(out),
                       "--format", "json", "--every", "2"])
    assert rc == 0
    annotated = cv2.imread(str(out / "astronaut.jpg"))
    original = cv2.imread(str(photos / "astronaut.jpg"))
    assert annotated.shape == original.shape and np.abs(
        annotated.astype(int) - original).sum() > 0  # boxes drawn
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert (out / "clip-timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_help_and_errors(tmp_path):
    ferops = [sys.executable, "-m", "ferops.cli"]
    help_text = subprocess.run([*ferops, "analyze", "--help"], capture_output=True, text=True,
                               cwd=PROJECT, check=True).stdout
    assert "--annotate" in help_text and "--timeline" in help_text
    missing = subprocess.run([*ferops, "analyze", str(tmp_path / "nope.jpg")],
                             capture_output=True, text=True, cwd=PROJECT)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    no_model = subprocess.run([*ferops, "analyze", str(PROJECT / "README.md"), "--model",
                               str(tmp_path)], capture_output=True, text=True, cwd=PROJECT)
    assert no_model.returncode == 1 and "no model.keras (run `dvc repro`" in no_model.stderr
    (tmp_path / "empty").mkdir()
    nothing = subprocess.run([*ferops, "analyze", str(tmp_path / "empty")],
                             capture_output=True, text=True, cwd=PROJECT)
    assert nothing.returncode == 1 and "no image or video files" in nothing.stderr


def test_json_output_is_one_object_per_face(demo_model_dir, photos, capsys):
    assert analyze_main([str(photos / "astronaut.jpg"), "--model", str(demo_model_dir),
                         "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["face"] == 0 and row["label"] in CLASSES and row["w"] > 50
