"""ferops.training.tfdata: the training input pipeline (batched on-line augmentation, mixup)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from ferops.training.tfdata import OnlineAugment, make_dataset, mixup_batch


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 48, 48, 1), dtype=np.uint8)
    return x, np.arange(20) % 4


def test_evaluation_batches_are_the_arrays_in_order(arrays):
    x, y = arrays
    batches = list(make_dataset(x, y, 4, 8, training=False, seed=1))
    xs = np.concatenate([b[0].numpy() for b in batches])
    ys = np.concatenate([b[1].numpy() for b in batches])
    np.testing.assert_array_equal(xs, x.astype(np.float32))
    np.testing.assert_array_equal(ys.argmax(1), y)
    assert all(len(b) == 2 for b in batches)  # no sample weights outside training


def test_training_batches_are_augmented_in_range_and_weighted(arrays):
    x, y = arrays
    weights = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    ds = make_dataset(x, y, 4, 20, training=True, seed=1, augment=OnlineAugment(),
                      class_weights=weights)
    xb, yb, wb = (t.numpy() for t in next(iter(ds)))
    assert xb.shape == x.shape and xb.min() >= 0 and xb.max() <= 255
    # Shuffled and transformed: no output image equals its input.
    assert not any(np.array_equal(xb[i], x[j]) for i in range(20) for j in range(20))
    np.testing.assert_allclose(wb, weights[yb.argmax(1)])


def test_mixup_mixes_images_labels_and_weights_with_one_lambda_per_image():
    x = tf.constant(np.stack([np.full((4, 4, 1), v, np.float32) for v in (0, 100, 200)]))
    onehot = tf.one_hot([0, 1, 2], 3)
    weight = tf.constant([1.0, 2.0, 3.0])
    xm, ym, wm = (t.numpy() for t in mixup_batch(x, onehot, 0.4, tf.constant([3, 4]), weight))
    lam = ym[[0, 1, 2], [0, 1, 2]]  # each row's own class keeps weight lam
    assert (lam >= 0.5).all() and (lam <= 1.0).all()
    np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
    partner = [2, 1, 0]  # mirror pairing in the batch
    own, other = np.array([0.0, 100, 200]), np.array([0.0, 100, 200])[partner]
    np.testing.assert_allclose(xm[:, 0, 0, 0], lam * own + (1 - lam) * other, rtol=1e-5)
    np.testing.assert_allclose(wm, lam * np.array([1, 2, 3]) + (1 - lam) *
                               np.array([1, 2, 3])[partner], rtol=1e-5)
    assert ym[0, 2] == pytest.approx(1 - lam[0], abs=1e-6)


def test_mixup_in_the_pipeline_gives_soft_labels(arrays):
    x, y = arrays
    ds = make_dataset(x, y, 4, 20, training=True, seed=1, augment=OnlineAugment(mixup=0.4))
    _, yb = (t.numpy() for t in next(iter(ds)))
    np.testing.assert_allclose(yb.sum(1), 1.0, rtol=1e-6)
    assert ((yb > 0) & (yb < 1)).any()
    plain = make_dataset(x, y, 4, 20, training=True, seed=1, augment=OnlineAugment())
    assert set(np.unique(next(iter(plain))[1].numpy())) <= {0.0, 1.0}


def face_like_batch(n: int = 64) -> tf.Tensor:
    """Smooth shading plus sharp edges (a face has both): blur, light and codec show on it."""
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32)
    base = 60 + 2.5 * xx + 1.5 * yy
    base[12:20, 10:38] = 30  # an eyebrow-like bar: a sharp edge
    base[(xx // 6 + yy // 6) % 2 == 0] += 40
    return tf.constant(np.repeat(np.clip(base, 0, 255)[None, :, :, None], n, axis=0))


LIVE = {"blur": 1.0, "light": 0.5, "noise": 8.0, "jpeg": 1.0}
OFF = {"flip": False, "rotate_deg": 0.0, "shift": 0.0, "zoom": 0.0, "erase": 0.0}


def sharpness(x: np.ndarray) -> np.ndarray:
    """Energy of the horizontal gradient per image."""
    return (np.diff(x, axis=2) ** 2).mean(axis=(1, 2, 3))


@pytest.mark.parametrize("name", sorted(LIVE))
def test_each_live_domain_augmentation_does_what_it_says_and_only_when_on(name):
    from ferops.training.tfdata import augment_batch
    x = face_like_batch()
    seed = tf.constant([5, 6])
    off = augment_batch(x, OnlineAugment(**OFF), seed).numpy()
    np.testing.assert_array_equal(off, x.numpy())  # every live option defaults to off
    out = augment_batch(x, OnlineAugment(**OFF, **{name: LIVE[name]}), seed).numpy()
    again = augment_batch(x, OnlineAugment(**OFF, **{name: LIVE[name]}), seed).numpy()
    np.testing.assert_array_equal(out, again)  # seeded: a run is reproducible
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    diff = out - x.numpy()
    changed = np.abs(diff).max(axis=(1, 2, 3)) > 1
    if name == "blur":
        assert (sharpness(out) <= sharpness(x.numpy()) + 1e-3).all()
        assert (sharpness(out) < 0.7 * sharpness(x.numpy())).mean() > 0.3  # strength varies
    elif name == "light":
        darker = out.mean(axis=(1, 2, 3)) < x.numpy().mean(axis=(1, 2, 3)) - 5
        assert 0.25 < darker.mean() < 0.75  # about half of the images
        assert (out.mean(axis=(1, 2, 3)) <= x.numpy().mean(axis=(1, 2, 3)) + 1e-3).all()
    elif name == "noise":
        std = diff.std(axis=(1, 2, 3))
        assert std.max() <= 8.0 * 1.2 and std.max() > 4 and abs(diff.mean()) < 1
    elif name == "jpeg":
        assert changed.all()  # every image went through the codec
        assert np.abs(diff).mean() < 10  # and still looks like itself
        assert np.corrcoef(out.ravel(), x.numpy().ravel())[0, 1] > 0.97
    if name != "jpeg":
        assert changed.mean() > 0.3


def test_the_live_domain_trains_through_the_pipeline(arrays):
    x, y = arrays
    ds = make_dataset(x, y, 4, 20, training=True, seed=1, augment=OnlineAugment(**LIVE))
    xb, _ = (t.numpy() for t in next(iter(ds)))
    assert xb.shape == x.shape and np.isfinite(xb).all()
    assert xb.min() >= 0 and xb.max() <= 255


def test_soft_targets_replace_the_one_hot_and_weights_follow_the_hard_label(arrays):
    x, y = arrays
    targets = np.full((20, 4), 0.1, np.float32)
    targets[np.arange(20), y] = 0.7
    weights = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    ds = make_dataset(x, y, 4, 20, training=True, seed=1, augment=OnlineAugment(flip=False,
                      rotate_deg=0, shift=0, zoom=0, erase=0), class_weights=weights,
                      targets=targets)
    xb, tb, wb = (t.numpy() for t in next(iter(ds)))
    # Rows are shuffled: match each batch row back to its image.
    order = [int(np.flatnonzero((x == xr.astype(np.uint8)).all(axis=(1, 2, 3)))[0]) for xr in xb]
    np.testing.assert_allclose(tb, targets[order])
    np.testing.assert_allclose(wb, weights[y[order]])
