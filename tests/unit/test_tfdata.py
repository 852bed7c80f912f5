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
