"""The synthetic demo faces: right shapes, deterministic, laid out for ingest, learnable
but not trivially so."""

import hashlib

import cv2
import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from ferops.errors import DataError
from ferops.faces import normalize_face
from ferops.synthetic import CLASSES, generate_demo, main, render_face, render_sample


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read(path):
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("label", CLASSES)
def test_render_gray_and_color_shapes(label):
    gray = render_face(label, np.random.default_rng(0), 48)
    color = render_face(label, np.random.default_rng(1), 64, color=True)
    assert gray.shape == (48, 48) and gray.dtype == np.uint8
    assert color.shape == (64, 64, 3) and color.dtype == np.uint8
    assert gray.std() > 10  # a picture, not a blank (validate rejects std < 3)
    # Colour images carry colour: the channels are not copies of each other.
    assert np.abs(color[..., 2].astype(int) - color[..., 0].astype(int)).mean() > 2


def test_render_depends_only_on_the_generator_state():
    a = render_face("fear", np.random.default_rng(7), 56)
    b = render_face("fear", np.random.default_rng(7), 56)
    c = render_face("fear", np.random.default_rng(8), 56)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_render_rejects_unknown_label_and_tiny_size():
    with pytest.raises(ValueError, match="unknown demo label"):
        render_face("contempt", np.random.default_rng(0))  # canonical, but not drawable
    with pytest.raises(ValueError, match="size"):
        render_face("happy", np.random.default_rng(0), size=4)


def test_generate_writes_counts_and_layout(tmp_path):
    counts = generate_demo(tmp_path, {"train": 3, "test": 2}, seed=5, sizes=(40, 50))
    assert counts == {"train": dict.fromkeys(CLASSES, 3), "test": dict.fromkeys(CLASSES, 2)}
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert len(files) == 7 * 5
    assert "train/happy/happy_train_00002.png" in files
    assert "test/neutral/neutral_test_00001.png" in files
    assert {p.name for p in tmp_path.iterdir()} == {"train", "test"}
    for path in tmp_path.rglob("*.png"):
        image = read(path)
        assert image.dtype == np.uint8 and image.shape[0] == image.shape[1]
        assert 40 <= image.shape[0] <= 50


def test_generate_color_share_sets_the_channels(tmp_path):
    generate_demo(tmp_path / "gray", {"train": 2}, seed=1, color_share=0.0)
    generate_demo(tmp_path / "color", {"train": 2}, seed=1, color_share=1.0)
    assert all(read(p).ndim == 2 for p in (tmp_path / "gray").rglob("*.png"))
    assert all(read(p).shape[2] == 3 for p in (tmp_path / "color").rglob("*.png"))


def test_generate_is_byte_identical_for_a_seed(tmp_path):
    per_class = {"train": 3, "test": 1}
    generate_demo(tmp_path / "a", per_class, seed=5)
    generate_demo(tmp_path / "b", per_class, seed=5)
    generate_demo(tmp_path / "c", per_class, seed=6)
    first = digest(tmp_path / "a")
    assert len(first) == 28 and digest(tmp_path / "b") == first
    other = digest(tmp_path / "c")
    assert other.keys() == first.keys()
    assert all(other[k] != first[k] for k in first)  # every image changes with the seed


def test_an_image_does_not_depend_on_what_else_is_generated(tmp_path):
    generate_demo(tmp_path / "small", {"test": 1}, seed=3, classes=("sad",))
    generate_demo(tmp_path / "big", {"train": 4, "test": 2}, seed=3)
    path = "test/sad/sad_test_00000.png"
    assert (tmp_path / "small" / path).read_bytes() == (tmp_path / "big" / path).read_bytes()
    assert np.array_equal(read(tmp_path / "big" / path), render_sample(3, "test", "sad", 0))


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "README.txt").write_text("not ours")
    with pytest.raises(DataError, match="not empty"):
        generate_demo(tmp_path, {"train": 1}, seed=1)
    assert not (tmp_path / "train").exists()
    generate_demo(tmp_path, {"train": 2, "test": 1}, seed=1, overwrite=True)
    generate_demo(tmp_path, {"train": 1}, seed=1, overwrite=True)
    # train/ was replaced (2 -> 1 per class); test/ and the unrelated file were left alone.
    assert len(list((tmp_path / "train").rglob("*.png"))) == 7
    assert len(list((tmp_path / "test").rglob("*.png"))) == 7
    assert (tmp_path / "README.txt").read_text() == "not ours"


def test_overwrite_never_deletes_foreign_files(tmp_path):
    (tmp_path / "train" / "holiday").mkdir(parents=True)
    (tmp_path / "train" / "holiday" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="holiday"):
        generate_demo(tmp_path, {"train": 1}, seed=1, overwrite=True)
    assert (tmp_path / "train" / "holiday" / "photo.jpg").exists()


@pytest.mark.parametrize("bad", [
    {"per_class": {"../x": 1}}, {"per_class": {"train": -1}}, {"classes": ("bored",)},
    {"sizes": (64, 32)}, {"color_share": 1.5}, {"seed": -1},
])
def test_rejects_bad_arguments_before_writing(tmp_path, bad):
    kwargs = {"per_class": {"train": 1}, "seed": 1, **bad}
    with pytest.raises(ValueError):
        generate_demo(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_main_writes_the_folder_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["--out", str(out), "--train", "2", "--test", "1", "--seed", "9", "-q"]
    assert main(args) == 0
    assert len(list(out.rglob("*.png"))) == 21
    before = digest(out)
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert digest(out) == before


def test_learnable_by_a_linear_model_but_not_trivially():
    # Raw pixels (as ingest and preprocess will see them: any size -> 48x48 gray) into a
    # linear classifier. Chance is 1/7; the expression is in the geometry, under pose,
    # lighting, occluder and noise nuisances, so a linear model must not solve it.
    n = 150
    x = np.stack([normalize_face(render_sample(11, "train", label, i), 48).reshape(-1)
                  for label in CLASSES for i in range(n)]).astype(np.float32)
    y = np.repeat(np.arange(len(CLASSES)), n)
    x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
    train = np.arange(len(y)) % 2 == 0
    clf = RidgeClassifier(alpha=100.0).fit(x[train], y[train])
    accuracy = clf.score(x[~train], y[~train])
    assert 0.45 < accuracy < 0.995, accuracy
    # Every class is learnable, not just a few easy ones.
    per_class = [np.mean(clf.predict(x[~train & (y == c)]) == c) for c in range(len(CLASSES))]
    assert min(per_class) > 0.2, dict(zip(CLASSES, per_class, strict=True))
