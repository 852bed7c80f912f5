import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from skimage import data as skdata

from ferops.config import SourceConfig
from ferops.data.ingest import assign_splits, hash_image, ingest, main
from ferops.data.table import load_table
from ferops.errors import DataError
from tests.conftest import PROJECT, noise_image, png_bytes
from tests.factories import PARAMS

FACES = PARAMS.faces
CFG = PARAMS.ingest.replace(val_fraction=0.2, test_fraction=0.2)


def folder(name: str, path: str, faces: str = "crop", optional: bool = False) -> SourceConfig:
    return SourceConfig(name=name, kind="folder", path=path, faces=faces, optional=optional)


def test_folder_with_train_test_gets_val_carved_from_train(write_folder_dataset, tmp_path):
    write_folder_dataset("data/set", {"happy": 30, "sad": 30})
    table, quarantine, removed, report, _ = ingest([folder("set", "data/set")], CFG, FACES,
                                                   tmp_path)
    assert len(table) == 120 and quarantine.empty and removed.empty
    splits = table.meta["split"].value_counts()
    assert splits["test"] == 60  # the source's own test split is kept as is
    assert 0 < splits["val"] < 60 and splits["train"] + splits["val"] == 60
    assert set(table.meta["label"]) == {"happy", "sad"}
    assert report["counts"]["test"] == {"happy": 30, "sad": 30}


def test_split_assignment_is_stable_as_data_grows(rng):
    hashes = [hash_image(noise_image(rng)) for _ in range(200)]
    first = assign_splits([None] * 100, hashes[:100], 0.1, 0.1)
    grown = assign_splits([None] * 200, hashes, 0.1, 0.1)
    assert grown[:100] == first
    assert {"train", "val", "test"} <= set(grown)


def test_label_aliases_and_unsplit_folders(tmp_path, rng):
    for name in ("Happiness", "surprised"):
        (tmp_path / "drop" / name).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "drop" / name / f"{i}.png").write_bytes(png_bytes(noise_image(rng)))
    table, *_ = ingest([folder("drop", "drop")], CFG, FACES, tmp_path)
    assert sorted(set(table.meta["label"])) == ["happy", "surprise"]


def make_bad_drop_folder(root: Path, rng) -> dict[str, str]:
    """A drop folder with good files and every kind of bad file; returns origin -> reason."""
    good = root / "data/incoming/happy"
    good.mkdir(parents=True)
    for i in range(4):
        (good / f"ok_{i}.png").write_bytes(png_bytes(noise_image(rng)))
    full = png_bytes(noise_image(rng))
    (good / "halfwritten.png").write_bytes(full[: len(full) // 2])
    (good / "empty.png").write_bytes(b"")
    (good / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    (good / "upload.png.part").write_bytes(full[:100])
    unknown = root / "data/incoming/confused"
    unknown.mkdir()
    (unknown / "x.png").write_bytes(png_bytes(noise_image(rng)))
    return {"data/incoming/happy/halfwritten.png": "corrupt or truncated",
            "data/incoming/happy/empty.png": "empty file",
            "data/incoming/happy/corrupt.png": "corrupt or truncated",
            "data/incoming/confused/x.png": "unknown label folder 'confused'"}


def test_bad_files_are_quarantined_with_reasons_and_good_ones_kept(tmp_path, rng):
    expected = make_bad_drop_folder(tmp_path, rng)
    table, quarantine, _, report, _ = ingest([folder("incoming", "data/incoming", "auto")], CFG,
                                          FACES, tmp_path)
    assert sorted(table.meta["origin"]) == [f"data/incoming/happy/ok_{i}.png" for i in range(4)]
    reasons = dict(zip(quarantine["origin"], quarantine["reason"], strict=True))
    assert set(reasons) == set(expected)
    for origin, fragment in expected.items():
        assert fragment in reasons[origin]
    assert report["pending"] == ["data/incoming/happy/upload.png.part"]

    # The writer finishes the upload and the user fixes the broken file: a rerun takes both.
    part = tmp_path / "data/incoming/happy/upload.png.part"
    part.write_bytes(png_bytes(noise_image(rng)))
    part.rename(part.with_suffix(""))
    (tmp_path / "data/incoming/happy/corrupt.png").write_bytes(png_bytes(noise_image(rng)))
    table, quarantine, _, report, _ = ingest([folder("incoming", "data/incoming", "auto")], CFG,
                                          FACES, tmp_path)
    assert len(table) == 6 and report["n_pending"] == 0
    assert "data/incoming/happy/corrupt.png" not in set(quarantine["origin"])


def test_missing_optional_source_is_empty_but_required_one_fails(tmp_path):
    table, *_ = ingest([folder("incoming", "data/incoming", optional=True)], CFG, FACES, tmp_path)
    assert len(table) == 0
    with pytest.raises(DataError, match="not found"):
        ingest([folder("demo", "data/demo")], CFG, FACES, tmp_path)


def test_photos_get_their_face_detected_and_cropped(tmp_path, rng):
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    (tmp_path / "photos/neutral").mkdir(parents=True)
    ok, blob = cv2.imencode(".jpg", photo)
    (tmp_path / "photos/neutral/astronaut.jpg").write_bytes(blob.tobytes())
    (tmp_path / "photos/neutral/wall.png").write_bytes(png_bytes(noise_image(rng, 400)))
    table, quarantine, *_ = ingest([folder("p", "photos", "detect")], CFG, FACES, tmp_path)
    assert table.meta["origin"].tolist() == ["photos/neutral/astronaut.jpg"]
    h, w = table.images[0].shape
    assert h == w and 90 < h < 250  # a face-sized square crop, not the 512px photo
    assert "no face found" in quarantine.set_index("origin").loc["photos/neutral/wall.png",
                                                                  "reason"]


def write_fer_csv(path: Path, rows: list[str], encoding_bytes: bytes | None = None) -> None:
    text = "emotion,pixels,Usage\n" + "".join(r + "\n" for r in rows)
    data = text.encode() if encoding_bytes is None else encoding_bytes
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def fer_row(rng, emotion=3, usage="Training", n=2304) -> str:
    pixels = " ".join(map(str, noise_image(rng).reshape(-1)[:n].tolist()
                          + [7] * max(0, n - 2304)))
    return f"{emotion},{pixels},{usage}"


def test_fer2013_csv_bad_rows_are_quarantined(tmp_path, rng):
    rows = [fer_row(rng, usage=u) for u in ("Training", "PublicTest", "PrivateTest")]
    rows += [fer_row(rng, n=2303), fer_row(rng, emotion=9), fer_row(rng, usage="Secret"),
             "3,1 2 x,Training", fer_row(rng, emotion=0)]
    path = tmp_path / "fer.csv.gz"
    write_fer_csv(path, rows)
    src = SourceConfig(name="fer", kind="fer2013", path="fer.csv.gz")
    table, quarantine, *_ = ingest([src], CFG, FACES, tmp_path)
    assert table.meta["split"].tolist() == ["train", "val", "test", "train"]
    assert table.meta["label"].tolist() == ["happy", "happy", "happy", "angry"]
    reasons = dict(zip(quarantine["origin"], quarantine["reason"], strict=True))
    assert reasons["fer.csv.gz:row 3"] == "2303 pixel values, expected 2304"
    assert "emotion '9'" in reasons["fer.csv.gz:row 4"]
    assert "Usage 'Secret'" in reasons["fer.csv.gz:row 5"]
    assert "not space-separated integers" in reasons["fer.csv.gz:row 6"]


def test_fer2013_non_utf8_rows_are_quarantined_and_the_rest_kept(tmp_path, rng):
    rows = [fer_row(rng), fer_row(rng), fer_row(rng)]
    blob = ("emotion,pixels,Usage\n" + "\n".join(rows) + "\n").encode()
    broken = blob.replace(b",Training\n", b",Tr\xe4ining\n", 2).replace(
        b",Tr\xe4ining\n", b",Training\n", 1)  # only the second row gets a Latin-1 byte
    (tmp_path / "fer.csv").write_bytes(broken)
    src = SourceConfig(name="fer", kind="fer2013", path="fer.csv")
    table, quarantine, *_ = ingest([src], CFG, FACES, tmp_path)
    assert len(table) == 2
    assert quarantine.to_dict("records") == [
        {"origin": "fer.csv:row 1", "source": "fer", "reason": "row is not UTF-8 text"}]


def test_csv_without_the_fer_columns_is_a_clear_error(tmp_path):
    (tmp_path / "fer.csv").write_text("a,b\n1,2\n")
    src = SourceConfig(name="fer", kind="fer2013", path="fer.csv")
    with pytest.raises(DataError, match="expected columns emotion,pixels,Usage"):
        ingest([src], CFG, FACES, tmp_path)


def test_duplicates_leakage_and_conflicts(tmp_path, rng):
    a, b, c, d = (noise_image(rng) for _ in range(4))
    layout = {"train/happy": [a, a, b, c], "test/happy": [b], "test/sad": [c],
              "train/sad": [d], "test/angry": [d, d]}
    for rel, images in layout.items():
        (tmp_path / "set" / rel).mkdir(parents=True)
        for i, img in enumerate(images):
            (tmp_path / "set" / rel / f"{i}.png").write_bytes(png_bytes(img))
    cfg = PARAMS.ingest.replace(val_fraction=0.0, test_fraction=0.0, protect_splits=("test",))
    table, quarantine, removed, report, _ = ingest([folder("set", "set")], cfg, FACES, tmp_path)
    kinds = dict(zip(removed["origin"], removed["kind"], strict=True))
    assert kinds == {"set/train/happy/1.png": "duplicate", "set/train/happy/2.png": "leakage"}
    # c is happy in train but sad in test; d is sad in train but angry (twice) in test:
    # the protected test copies stay as published, the conflicting train copies are refused.
    assert sorted(quarantine["origin"]) == ["set/train/happy/3.png", "set/train/sad/0.png"]
    assert sorted(table.meta["origin"]) == ["set/test/angry/0.png", "set/test/angry/1.png",
                                            "set/test/happy/0.png", "set/test/sad/0.png",
                                            "set/train/happy/0.png"]
    assert report["n_leakage_removed"] == 1 and report["n_duplicates_removed"] == 1


def test_leakage_fail_policy_stops(tmp_path, rng):
    img = noise_image(rng)
    for rel in ("train/happy", "test/happy"):
        (tmp_path / "set" / rel).mkdir(parents=True)
        (tmp_path / "set" / rel / "x.png").write_bytes(png_bytes(img))
    cfg = PARAMS.ingest.replace(leakage="fail")
    with pytest.raises(DataError, match="two splits"):
        ingest([folder("set", "set")], cfg, FACES, tmp_path)


def test_main_writes_table_quarantine_and_report(tmp_path, write_folder_dataset):
    write_folder_dataset("data/demo", {"happy": 5, "sad": 5})
    (tmp_path / "data/demo/train/happy/bad.png").write_bytes(b"")
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "artifacts/ingest"
    assert main(["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path),
                 "--out", str(out), "-q"]) == 0
    table = load_table(out)
    assert len(table) == 20 and all(img.shape == (48, 48) for img in table.images)
    report = json.loads((out / "report.json").read_text())
    assert report["n_quarantined"] == 1
    assert (out / "quarantine.csv").read_text().count("empty file") == 1


def test_main_missing_source_exits_2_with_message(tmp_path, capsys):
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    code = main(["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "source 'demo': data/demo not found" in capsys.readouterr().err


def test_blank_images_are_quarantined(tmp_path, rng):
    (tmp_path / "set/train/happy").mkdir(parents=True)
    (tmp_path / "set/train/happy/black.png").write_bytes(png_bytes(np.zeros((48, 48), np.uint8)))
    (tmp_path / "set/train/happy/ok.png").write_bytes(png_bytes(noise_image(rng)))
    table, quarantine, *_ = ingest([folder("set", "set")], CFG, FACES, tmp_path, min_std=3.0)
    assert table.meta["origin"].tolist() == ["set/train/happy/ok.png"]
    assert quarantine["reason"].tolist() == ["blank or constant image (pixel std 0.00 < 3)"]
