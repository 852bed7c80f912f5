"""`ferops-camera` end to end through main(argv): exit codes, messages, outputs, labeling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from ferops.camera.cli import main
from ferops.camera.realtime import gui_problem
from tests.camera.fakes import FakeService
from tests.conftest import PROJECT
from tests.factories import free_port


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_missing_source_exits_2_with_one_line(params_file, tmp_path, capsys):
    code = main(["--headless", "--source", str(tmp_path / "nope.mp4"),
                 "--params", str(params_file)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot open video source" in err and "nope.mp4" in err


def test_unreadable_source_exits_2(params_file, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    assert main(["--headless", "--source", str(junk), "--params", str(params_file)]) == 2
    assert "cannot open video source" in capsys.readouterr().err


@pytest.mark.skipif(gui_problem() is None, reason="this OpenCV can open windows")
def test_window_mode_without_gui_exits_2(face_video, params_file, capsys):
    code = main(["--source", str(face_video), "--params", str(params_file)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--headless" in err and ("opencv-python" in err or "DISPLAY" in err)


def test_headless_cli_writes_outputs(face_video, fake_service, params_file, tmp_path, capsys):
    jsonl, video = tmp_path / "f.jsonl", tmp_path / "v.mp4"
    code = main(["--headless", "--source", str(face_video), "--service", fake_service.url,
                 "--params", str(params_file), "--out-jsonl", str(jsonl),
                 "--out-video", str(video), "--max-frames", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "frames 5," in out and "errors 0" in out
    assert len(jsonl.read_text().splitlines()) == 5 and video.stat().st_size > 0


def test_headless_cli_with_no_service_exits_1(face_video, params_file, tmp_path, capsys):
    jsonl = tmp_path / "f.jsonl"
    code = main(["--headless", "--source", str(face_video), "--service", closed_port_url(),
                 "--params", str(params_file), "--out-jsonl", str(jsonl), "--max-frames", "3",
                 "--timeout", "0.5"])
    assert code == 1 and "no face was classified" in capsys.readouterr().err
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 3 and not any(r["service_ok"] for r in records)


def test_api_key_is_sent_as_bearer(face_video, params_file, capsys):
    service = FakeService(api_key="s3cret").start()
    try:
        args = ["--headless", "--source", str(face_video), "--service", service.url,
                "--params", str(params_file), "--max-frames", "2"]
        assert main([*args, "--api-key", "wrong"]) == 1
        assert "401" in capsys.readouterr().out
        assert main([*args, "--api-key", "s3cret"]) == 0
    finally:
        service.stop()


def test_label_all_without_consent_stores_nothing(face_video, fake_service, params,
                                                  params_file, capsys):
    code = main(["--headless", "--source", str(face_video), "--service", fake_service.url,
                 "--params", str(params_file), "--max-frames", "3", "--label-all", "happy"])
    assert code == 2 and "consent" in capsys.readouterr().err
    drop = Path(params.camera.drop_folder)
    assert not drop.exists() or not list(drop.rglob("*"))
    assert not Path(params.camera.consent_file).exists()


def test_label_all_with_consent_saves_crops(face_video, fake_service, params, params_file):
    code = main(["--headless", "--source", str(face_video), "--service", fake_service.url,
                 "--params", str(params_file), "--max-frames", "3", "--label-all", "sad",
                 "--consent"])
    assert code == 0
    saved = sorted(Path(params.camera.drop_folder, "sad").iterdir())
    assert len(saved) >= 3 and all(p.suffix == ".png" for p in saved)
    for path in saved:
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    assert Path(params.camera.consent_file).is_file()


def test_label_all_unknown_class_exits_2(face_video, params_file, capsys):
    code = main(["--headless", "--source", str(face_video), "--params", str(params_file),
                 "--label-all", "bored", "--consent"])
    assert code == 2 and "not a class" in capsys.readouterr().err


def test_argument_errors(params_file):
    with pytest.raises(SystemExit) as exc:
        main(["--out-video", "x.mp4", "--params", str(params_file)])
    assert exc.value.code == 2


def test_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "ferops.camera", "--help"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "--headless" in result.stdout
