"""Keras model builders. Imports keras only: no data loading, no MLflow, no training loop.

Every model takes (N, S, S, 1) pixels in [0, 255] (uint8 or float) and scales them itself, so
training, evaluation and serving feed exactly the same arrays. Outputs are logits (N, K).
"""

from __future__ import annotations

import keras
from keras import layers


def _conv_bn(x, filters: int, stride: int = 1, name: str = ""):
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}conv")(x)
    x = layers.BatchNormalization(name=f"{name}bn")(x)
    return layers.Activation("relu", name=f"{name}relu")(x)


def per_block(convs: int | tuple[int, ...], n_blocks: int) -> tuple[int, ...]:
    """One conv count per block: a single count applies to every block."""
    return tuple(convs) if isinstance(convs, (tuple, list)) else (convs,) * n_blocks


def build_vgg(n_classes: int, size: int, widths: tuple[int, ...], convs, dense: int,
              dropout: float, spatial_dropout_from: int = 0) -> keras.Model:
    """VGG-style: per block `convs` x (conv3x3-BN-ReLU), 2x2 max-pool; flatten; dense head.

    Flatten, not global pooling: where a feature is (brows above eyes, mouth below) is the
    signal in expression recognition, and pooling it away made training far slower here.
    `convs` may differ per block: on a CPU the 48x48 block costs the most time per parameter.
    """
    inputs = keras.Input((size, size, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)  # the one place scaling happens
    for b, (width, n) in enumerate(zip(widths, per_block(convs, len(widths)), strict=True)):
        for c in range(n):
            x = _conv_bn(x, width, name=f"b{b}c{c}_")
        x = layers.MaxPooling2D(name=f"b{b}_pool")(x)
        if dropout and b >= spatial_dropout_from:
            x = layers.SpatialDropout2D(dropout / 4, name=f"b{b}_drop")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(name="fc_bn")(x)
    x = layers.Activation("relu", name="fc_relu")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    outputs = layers.Dense(n_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="ferops_vgg")


def _res_block(x, filters: int, stride: int, name: str):
    shortcut = x
    y = _conv_bn(x, filters, stride, name=f"{name}a_")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}b_conv")(y)
    y = layers.BatchNormalization(name=f"{name}b_bn")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{name}proj")(shortcut)
        shortcut = layers.BatchNormalization(name=f"{name}proj_bn")(shortcut)
    y = layers.Add(name=f"{name}add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}out")(y)


def build_resnet(n_classes: int, size: int, widths: tuple[int, ...], convs, dense: int,
                 dropout: float, spatial_dropout_from: int = 0) -> keras.Model:
    """A small ResNet: a stem, then per width `convs` residual blocks, stride 2 between widths.

    (No spatial dropout: spatial_dropout_from is accepted for a uniform builder signature.)"""
    inputs = keras.Input((size, size, 1), name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = _conv_bn(x, widths[0], name="stem_")
    for s, (width, n) in enumerate(zip(widths, per_block(convs, len(widths)), strict=True)):
        for b in range(n):
            x = _res_block(x, width, 2 if (b == 0 and s > 0) else 1, name=f"s{s}b{b}_")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="fc_drop")(x)
    if dense:
        x = layers.Dense(dense, activation="relu", name="fc")(x)
        x = layers.Dropout(dropout, name="fc_drop2")(x)
    outputs = layers.Dense(n_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="ferops_resnet")


BUILDERS = {"vgg": build_vgg, "resnet": build_resnet}

FLIP_AVERAGE = "flip_average"


def with_flip_average(model: keras.Model) -> keras.Model:
    """The network averaged with itself on the mirror image: logits (f(x) + f(flip x)) / 2.

    Faces are near-symmetric and training flips them, so two looks at one face disagree on
    their errors; averaging them is what the saved model does, so evaluate, the service, the
    camera and `ferops analyze` all get it without a flag of their own. Built from Keras ops
    only (no custom layer): the file loads anywhere Keras does. It costs a second forward pass.
    """
    inputs = keras.Input(model.input_shape[1:], name="pixels")
    mirrored = keras.ops.flip(inputs, axis=2)  # (N, H, W, C): axis 2 is the width
    logits = layers.Average(name=FLIP_AVERAGE)([model(inputs), model(mirrored)])
    return keras.Model(inputs, logits, name=f"{model.name}_{FLIP_AVERAGE}")


def single_pass(model: keras.Model) -> keras.Model:
    """The network inside a with_flip_average model; any other model is returned as it is."""
    if not any(layer.name == FLIP_AVERAGE for layer in model.layers):
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def build_model(arch: str, n_classes: int, size: int, widths: tuple[int, ...], convs,
                dense: int, dropout: float, spatial_dropout_from: int = 0) -> keras.Model:
    """Build one of BUILDERS by name."""
    if arch not in BUILDERS:
        raise ValueError(f"unknown architecture '{arch}' (choose from {', '.join(BUILDERS)})")
    return BUILDERS[arch](n_classes, size, tuple(widths), convs, dense, dropout,
                          spatial_dropout_from)


def model_flops(model) -> int:
    """Floating-point operations for one image's forward pass (a multiply-add counts 2).

    Convolutions and dense layers only: batch norm, activations and pooling are a few
    percent of a CNN's cost and depend on how the runtime fuses them. A flip-averaged model
    runs its network twice.
    """
    if single_pass(model) is not model:
        return 2 * model_flops(single_pass(model))
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            flops += 2 * kh * kw * cin * cout * h * w
        elif kind == "Dense":
            cin, cout = layer.kernel.shape
            flops += 2 * cin * cout
    return int(flops)
