"""tf.data input pipelines: cached uint8 arrays, batched on-line augmentation, prefetch.

No per-image Python: augmentation runs as batched TensorFlow ops inside the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class OnlineAugment:
    flip: bool = True
    rotate_deg: float = 10.0
    shift: float = 0.1
    zoom: float = 0.1
    erase: float = 0.5      # probability of random erasing one patch per image
    erase_frac: float = 0.3  # max patch side as a fraction of the image side
    mixup: float = 0.0       # Beta(a, a) concentration for mixup; 0: off
    # What a camera and the live path do to a face (off: 0). Box jitter and the turn left
    # after alignment are the affine above; these are the optics, the sensor and the codec.
    blur: float = 0.0        # probability of a defocus blur (Gaussian, sigma up to 1.5 px)
    light: float = 0.0       # low light: darken by gamma up to 1 + 2 * light, contrast down
    noise: float = 0.0       # sensor noise: Gaussian, std up to this many grey levels
    jpeg: float = 0.0        # probability of a JPEG re-encode at quality 30-80


def _affine_batch(x: tf.Tensor, cfg: OnlineAugment, seed: tf.Tensor) -> tf.Tensor:
    """Random rotation, zoom and shift of a (B, S, S, 1) float batch, one transform per image."""
    b, side = tf.shape(x)[0], tf.cast(tf.shape(x)[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    angle = tf.random.stateless_uniform([b], seeds[0], -1.0, 1.0) * cfg.rotate_deg * math.pi / 180
    scale = 1.0 + tf.random.stateless_uniform([b], seeds[1], -cfg.zoom, cfg.zoom)
    shift = tf.random.stateless_uniform([b, 2], seeds[2], -cfg.shift, cfg.shift) * side
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    c = (side - 1.0) / 2.0
    # Output pixel (x, y) samples input at A @ ([x, y] - c) + c - shift (inverse mapping).
    tx = c - cos * c + sin * c - shift[:, 0]
    ty = c - sin * c - cos * c - shift[:, 1]
    transforms = tf.stack([cos, -sin, tx, sin, cos, ty, tf.zeros([b]), tf.zeros([b])], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transforms, output_shape=tf.shape(x)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def _erase_batch(x: tf.Tensor, cfg: OnlineAugment, seed: tf.Tensor) -> tf.Tensor:
    """Random erasing: each image loses one random rectangle (filled with its mean) w.p. erase."""
    b, side = tf.shape(x)[0], tf.shape(x)[1]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    sidef = tf.cast(side, tf.float32)
    size = tf.random.stateless_uniform([b, 2], seeds[0], 0.1, cfg.erase_frac) * sidef
    centre = tf.random.stateless_uniform([b, 2], seeds[1], 0.0, 1.0) * sidef
    apply = tf.random.stateless_uniform([b], seeds[2]) < cfg.erase
    grid = tf.cast(tf.range(side), tf.float32)
    in_y = tf.abs(grid[None, :] - centre[:, :1]) < size[:, :1] / 2  # (B, S)
    in_x = tf.abs(grid[None, :] - centre[:, 1:]) < size[:, 1:] / 2
    mask = tf.logical_and(in_y[:, :, None], in_x[:, None, :])
    mask = tf.logical_and(mask, apply[:, None, None])[..., None]  # (B, S, S, 1)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return tf.where(mask, mean, x)


def _gaussian_kernel(sigma: float, radius: int) -> tf.Tensor:
    t = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-(t ** 2) / (2.0 * sigma ** 2))
    return k / tf.reduce_sum(k)


def _blur_batch(x: tf.Tensor, p: float, seed: tf.Tensor) -> tf.Tensor:
    """With probability p an image is blended with its sigma-1.5 blur by a random weight:
    one separable convolution for the batch, a blur strength per image."""
    b = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    k = _gaussian_kernel(1.5, 3)
    padded = tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]], mode="REFLECT")
    blurred = tf.nn.conv2d(padded, tf.reshape(k, [7, 1, 1, 1]), 1, "VALID")
    blurred = tf.nn.conv2d(blurred, tf.reshape(k, [1, 7, 1, 1]), 1, "VALID")
    weight = tf.random.stateless_uniform([b, 1, 1, 1], seeds[0])
    weight *= tf.cast(tf.random.stateless_uniform([b, 1, 1, 1], seeds[1]) < p, tf.float32)
    return x + weight * (blurred - x)


def _light_batch(x: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Low light: half of the images get a gamma in [1, 1 + 2 * strength] (darker shadows)
    and their contrast squeezed by up to `strength` toward a dim mean."""
    b = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    on = tf.cast(tf.random.stateless_uniform([b, 1, 1, 1], seeds[0]) < 0.5, tf.float32)
    gamma = 1.0 + on * tf.random.stateless_uniform([b, 1, 1, 1], seeds[1]) * 2.0 * strength
    squeeze = 1.0 - on * tf.random.stateless_uniform([b, 1, 1, 1], seeds[2]) * strength
    dark = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 0.0, 1.0), gamma)
    mean = tf.reduce_mean(dark, axis=[1, 2, 3], keepdims=True)
    return mean + (dark - mean) * squeeze


def _noise_batch(x: tf.Tensor, std: float, seed: tf.Tensor) -> tf.Tensor:
    seeds = tf.random.experimental.stateless_split(seed, 2)
    level = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seeds[0]) * std
    return x + level * tf.random.stateless_normal(tf.shape(x), seeds[1])


def _jpeg_batch(x: tf.Tensor, p: float, seed: tf.Tensor) -> tf.Tensor:
    """With probability p an image goes through a JPEG encode and decode (quality 30-80).
    The codec works on one image at a time: map_fn, only over the chosen ones' results."""
    b = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    quality = tf.random.stateless_uniform([b], seeds[0], 30, 81, dtype=tf.int32)
    chosen = tf.random.stateless_uniform([b], seeds[1]) < p

    def one(args):
        image, q = args
        coded = tf.image.adjust_jpeg_quality(image / 255.0, q)  # float in [0, 1]
        return tf.reshape(coded, tf.shape(image)) * 255.0

    coded = tf.map_fn(one, (tf.clip_by_value(x, 0.0, 255.0), quality),
                      fn_output_signature=tf.float32)
    return tf.where(chosen[:, None, None, None], coded, x)


def augment_batch(x: tf.Tensor, cfg: OnlineAugment, seed: tf.Tensor) -> tf.Tensor:
    """(B, S, S, 1) float pixels in [0, 255] -> augmented batch, same shape and range.

    Geometry first, then what a camera adds in its own order (optics, sensor, codec), then
    erasing (an occlusion in front of the face)."""
    seeds = tf.random.experimental.stateless_split(seed, 7)
    if cfg.flip:
        flip = tf.random.stateless_uniform([tf.shape(x)[0], 1, 1, 1], seeds[0]) < 0.5
        x = tf.where(flip, tf.reverse(x, axis=[2]), x)
    if cfg.rotate_deg or cfg.shift or cfg.zoom:
        x = _affine_batch(x, cfg, seeds[1])
    if cfg.blur:
        x = _blur_batch(x, cfg.blur, seeds[3])
    if cfg.light:
        x = _light_batch(x, cfg.light, seeds[4])
    if cfg.noise:
        x = _noise_batch(x, cfg.noise, seeds[5])
    if cfg.jpeg:
        x = _jpeg_batch(x, cfg.jpeg, seeds[6])
    if cfg.erase:
        x = _erase_batch(x, cfg, seeds[2])
    return tf.clip_by_value(x, 0.0, 255.0)


def mixup_batch(x: tf.Tensor, onehot: tf.Tensor, alpha: float, seed: tf.Tensor,
                weight: tf.Tensor | None = None):
    """Mix each image with its mirror partner in the (shuffled) batch, labels alike.

    lam ~ Beta(alpha, alpha) per image, folded to lam >= 0.5 so every example stays mostly
    itself; pairing with the reversed batch needs no extra shuffle (the batch is already a
    random draw). Sample weights, when given, mix with the same lam.
    """
    seeds = tf.random.experimental.stateless_split(seed, 2)
    b = tf.shape(x)[0]
    g1 = tf.random.stateless_gamma([b], seeds[0], alpha)
    g2 = tf.random.stateless_gamma([b], seeds[1], alpha)
    lam = g1 / tf.maximum(g1 + g2, 1e-12)
    lam = tf.maximum(lam, 1.0 - lam)

    def mix(t: tf.Tensor, other: tf.Tensor) -> tf.Tensor:  # (B, ...) -> (B, rest) flattened
        return (lam[:, None] * tf.reshape(t, [b, -1])
                + (1.0 - lam[:, None]) * tf.reshape(other, [b, -1]))

    x_mixed = tf.reshape(mix(x, tf.reverse(x, [0])), tf.shape(x))
    y_mixed = mix(onehot, tf.reverse(onehot, [0]))
    if weight is None:
        return x_mixed, y_mixed, None
    w = tf.reshape(mix(weight, tf.reverse(weight, [0])), [b])
    return x_mixed, y_mixed, w


def make_dataset(x: np.ndarray, y: np.ndarray, n_classes: int, batch_size: int, *,
                 training: bool, seed: int, augment: OnlineAugment | None = None,
                 class_weights: np.ndarray | None = None, targets: np.ndarray | None = None
                 ) -> tf.data.Dataset:
    """(N, S, S, 1) uint8, (N,) int -> batches of (float pixels, one-hot[, sample weight]).

    Training batches are shuffled (reshuffled each epoch, seeded) and augmented; evaluation
    batches keep the array order. Pixels stay in [0, 255]: the model scales them.
    targets (N, K), when given, replace the one-hot labels (soft labels: vote shares);
    class weights still follow the hard label y.
    """
    if targets is None:
        targets = np.eye(n_classes, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((x, y, targets.astype(np.float32))).cache()
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def to_model(xb, yb, onehot):
        xf = tf.cast(xb, tf.float32)
        w = tf.gather(weights, yb) if weights is not None and training else None
        if training and augment is not None:
            # A per-batch seed from a counter keeps the run reproducible.
            step_seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32, seed=seed)
            xf = augment_batch(xf, augment, step_seed)
            if augment.mixup:
                xf, onehot, w = mixup_batch(xf, onehot, augment.mixup, step_seed[::-1], w)
        return (xf, onehot) if w is None else (xf, onehot, w)

    return ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
