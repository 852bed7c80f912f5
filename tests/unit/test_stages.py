"""preprocess, augment and encode on small in-memory arrays."""

import json

import numpy as np
import pandas as pd
import pytest

from ferops.data.augment import augment, augment_image
from ferops.data.encode import build_label_map, compute_class_weights, encode, map_labels
from ferops.data.preprocess import preprocess, require_validated
from ferops.data.table import ImageTable
from ferops.errors import DataError
from tests.conftest import noise_image
from tests.factories import PARAMS


def make_meta(labels, splits):
    n = len(labels)
    return pd.DataFrame({"sha256": [f"{i:064x}" for i in range(1, n + 1)], "label": labels,
                         "split": splits, "source": "t", "origin": [f"o{i}" for i in range(n)]})


def test_preprocess_makes_every_image_48x48_uint8(rng):
    images = [noise_image(rng, s) for s in (48, 96, 30)] + [np.full((60, 40), 9, np.uint8)]
    meta = make_meta(["happy"] * 4, ["train"] * 4).assign(
        height=[i.shape[0] for i in images], width=[i.shape[1] for i in images])
    out = preprocess(ImageTable(meta, images), 48)
    assert out.shape == (4, 48, 48) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], images[0])  # already 48x48: untouched
    assert (out[3] == 9).all()  # a constant stays constant: no rescaling to [0, 1] here


def test_preprocess_refuses_unvalidated_data(tmp_path):
    with pytest.raises(DataError, match="run the validate stage"):
        require_validated(tmp_path)
    (tmp_path / "summary.json").write_text(json.dumps({"success": False}))
    with pytest.raises(DataError, match="validation failed"):
        require_validated(tmp_path)


def test_augment_only_touches_train_and_is_seeded(rng):
    images = np.stack([noise_image(rng) for _ in range(6)])
    meta = make_meta(["happy", "sad"] * 3, ["train", "train", "train", "train", "val", "test"])
    cfg = PARAMS.augment.replace(multiplier=3)
    out, out_meta = augment(images, meta, cfg, seed=1)
    assert out.shape == (6 + 2 * 4, 48, 48) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:6], images)  # originals first, unchanged
    assert out_meta["augmented"].sum() == 8
    assert (out_meta.loc[out_meta["augmented"], "split"] == "train").all()
    assert out_meta["split"].value_counts()[["val", "test"]].tolist() == [1, 1]
    # copies carry their source's label, and differ from it
    assert out_meta["label"].iloc[6:10].tolist() == meta["label"].iloc[:4].tolist()
    assert all(not np.array_equal(out[6 + i], images[i]) for i in range(4))
    again, _ = augment(images, meta, cfg, seed=1)
    other, _ = augment(images, meta, cfg, seed=2)
    np.testing.assert_array_equal(out, again)
    assert not np.array_equal(out[6:], other[6:])


def test_augment_multiplier_one_is_identity(rng):
    images = np.stack([noise_image(rng) for _ in range(3)])
    out, meta = augment(images, make_meta(["happy"] * 3, ["train"] * 3),
                        PARAMS.augment.replace(multiplier=1), 0)
    np.testing.assert_array_equal(out, images)
    assert not meta["augmented"].any()


def test_flip_only_augmentation_mirrors(rng):
    img = noise_image(rng)
    cfg = PARAMS.augment.replace(flip=1.0, rotate_deg=0, shift=0, zoom=0, brightness=0, contrast=0,
                        cutout=0)
    np.testing.assert_array_equal(augment_image(img, cfg, rng), img[:, ::-1])


def test_map_labels_with_merge_subset_and_drop():
    labels = pd.Series(["happy", "disgust", "angry", "sad", "fear"])
    merged = PARAMS.classes.replace(names=("angry", "happy", "sad", "fear"),
                                    merge={"disgust": "angry"})
    assert map_labels(labels, merged).tolist() == [1, 0, 0, 2, 3]
    subset = PARAMS.classes.replace(names=("happy", "neutral", "fear"), others="drop")
    assert map_labels(labels, subset).tolist() == [0, -1, -1, -1, 2]
    with pytest.raises(DataError, match="not in classes.names"):
        map_labels(labels, PARAMS.classes.replace(names=("happy", "fear")))


def test_balanced_class_weights_by_hand():
    y = np.array([0, 0, 0, 1])  # n=4, k=2: w0 = 4/(2*3), w1 = 4/(2*1)
    np.testing.assert_allclose(compute_class_weights(y, 2, "balanced"), [2 / 3, 2.0])
    np.testing.assert_allclose(compute_class_weights(y, 2, "none"), [1.0, 1.0])
    # The cap bounds a rare class's weight and leaves the others as they are.
    np.testing.assert_allclose(compute_class_weights(y, 2, "balanced", max_weight=1.5),
                               [2 / 3, 1.5])
    with pytest.raises(DataError, match="no training images"):
        compute_class_weights(y, 3, "balanced")


def test_encode_splits_shapes_and_summary(rng):
    images = np.stack([noise_image(rng) for _ in range(7)])
    meta = make_meta(["happy", "fear", "neutral", "angry", "fear", "happy", "neutral"],
                     ["train", "train", "train", "train", "val", "test", "test"])
    classes = PARAMS.classes.replace(names=("happy", "neutral", "fear"), others="drop")
    splits, weights, summary, targets = encode(images, meta, classes, "balanced")
    x, y = splits["train"]
    np.testing.assert_array_equal(targets, np.eye(3, dtype=np.float32)[y])  # no votes: one-hot
    assert summary["n_soft_train"] == 0
    assert x.shape == (3, 48, 48, 1) and x.dtype == np.uint8 and y.tolist() == [0, 2, 1]
    np.testing.assert_array_equal(x[1, ..., 0], images[1])
    assert splits["test"][1].tolist() == [0, 1]
    np.testing.assert_allclose(weights, [1.0, 1.0, 1.0])
    assert summary["dropped_by_label"] == {"angry": 1}
    assert summary["counts"]["train"] == {"happy": 1, "neutral": 1, "fear": 1}
    no_neutral = meta.assign(label=meta["label"].replace({"neutral": "happy"}))
    with pytest.raises(DataError, match="no training images"):
        encode(images, no_neutral, classes, "balanced")


def test_encode_turns_votes_into_soft_targets_through_merges_and_drops(rng):
    images = np.stack([noise_image(rng) for _ in range(5)])
    meta = make_meta(["happy", "sad", "neutral", "happy", "sad"],
                     ["train", "train", "train", "train", "val"]).assign(votes=[
                         '{"happy": 6, "surprise": 2, "contempt": 2}',   # contempt -> dropped
                         '{"sad": 4, "fear": 4, "angry": 2}',  # fear merges, angry drops
                         "",                                             # a hard label only
                         '{"contempt": 5}',                              # nothing in the set
                         '{"sad": 9}'])                                  # val: no target
    classes = PARAMS.classes.replace(names=("happy", "sad", "neutral", "surprise"),
                                     merge={"fear": "sad"}, others="drop")
    splits, _, summary, targets = encode(images, meta, classes, "none")
    assert splits["train"][1].tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(targets, [[0.75, 0, 0, 0.25], [0, 1, 0, 0], [0, 0, 1, 0],
                                         [1, 0, 0, 0]], atol=1e-6)
    assert summary["n_soft_train"] == 3
    assert targets.dtype == np.float32


def test_label_map_carries_the_input_spec():
    lm = build_label_map(PARAMS.classes, PARAMS.faces)
    assert lm["classes"][0] == "angry" and lm["input"]["height"] == 48
    assert lm["input"]["value_range"] == [0, 255]
