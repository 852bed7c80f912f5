"""The synthetic demo faces: deterministic, laid out for ingest, learnable but not trivial."""

import hashlib

import numpy as np
import pytest
from skimage.feature import hog
from sklearn.linear_model import LogisticRegression

from ferops.data.demo import CLASSES, generate_demo, render_face
from ferops.errors import DataError
from ferops.faces import normalize_face


def digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def test_render_shapes_and_color():
    rng = np.random.default_rng(0)
    gray = render_face("happy", rng, 48)
    color = render_face("sad", rng, 64, color=True)
    assert gray.shape == (48, 48) and gray.dtype == np.uint8 and gray.std() > 5
    assert color.shape == (64, 64, 3) and color.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown demo label"):
        render_face("bored", rng)


def test_generate_is_deterministic_and_laid_out_for_ingest(tmp_path):
    counts = generate_demo(tmp_path / "a", {"train": 3, "test": 1}, seed=5)
    assert counts == {"train": dict.fromkeys(CLASSES, 3), "test": dict.fromkeys(CLASSES, 1)}
    files = digest(tmp_path / "a")
    assert len(files) == 7 * 4 and "train/happy/happy_train_00002.png" in files
    assert digest(tmp_path / "a") == files
    generate_demo(tmp_path / "b", {"train": 3, "test": 1}, seed=5)
    assert digest(tmp_path / "b") == files  # byte-identical for the same seed
    generate_demo(tmp_path / "c", {"train": 3, "test": 1}, seed=6)
    assert digest(tmp_path / "c") != files


def test_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    generate_demo(tmp_path, {"train": 1}, seed=1)
    with pytest.raises(DataError, match="not empty"):
        generate_demo(tmp_path, {"train": 1}, seed=1)
    generate_demo(tmp_path, {"train": 2}, seed=1, overwrite=True)
    assert len(list(tmp_path.rglob("*.png"))) == 14


def test_learnable_but_not_trivial():
    # A linear model on HOG features must beat chance (1/7) clearly but not solve the task:
    # the expression is in the geometry, under pose, lighting, occluder and noise nuisances.
    x, y = [], []
    for c, label in enumerate(CLASSES):
        for i in range(100):
            rng = np.random.default_rng([11, c, i])
            face = normalize_face(render_face(label, rng, int(rng.integers(48, 73))), 48)
            x.append(hog(face, pixels_per_cell=(8, 8), cells_per_block=(2, 2)))
            y.append(c)
    x, y = np.array(x), np.array(y)
    train = np.arange(len(y)) % 2 == 0
    clf = LogisticRegression(max_iter=1000, C=1.0).fit(x[train], y[train])
    accuracy = clf.score(x[~train], y[~train])
    assert 0.25 < accuracy < 0.9, accuracy
