"""ferops.training.model: the builders honour per-block conv counts and where spatial dropout
starts."""

import pytest

from ferops.training.model import build_model, per_block


def test_a_single_conv_count_applies_to_every_block():
    assert per_block(2, 3) == (2, 2, 2)
    assert per_block((1, 2, 3), 3) == (1, 2, 3)


def test_vgg_builds_the_requested_convs_and_dropouts_per_block():
    model = build_model("vgg", 7, 48, (8, 16, 24), (1, 2, 3), 16, 0.4, spatial_dropout_from=1)
    convs = [layer.name for layer in model.layers if layer.name.endswith("conv")]
    assert convs == ["b0c0_conv", "b1c0_conv", "b1c1_conv",
                     "b2c0_conv", "b2c1_conv", "b2c2_conv"]
    drops = [layer.name for layer in model.layers if layer.name.endswith("_drop")]
    assert drops == ["b1_drop", "b2_drop", "fc_drop"]  # none after block 0
    assert model.output_shape == (None, 7)


def test_conv_counts_must_match_the_widths():
    with pytest.raises(ValueError):
        build_model("vgg", 7, 48, (8, 16), (1, 2, 3), 16, 0.0)


def test_flops_count_convolutions_and_dense_layers_per_image():
    import keras

    from ferops.training.model import model_flops
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)          # 2*3*3*3*4 * 10*10
    x = keras.layers.BatchNormalization()(x)                        # not counted
    x = keras.layers.Conv2D(2, 1, strides=2)(x)                     # 2*1*1*4*2 * 5*5
    x = keras.layers.Dense(5)(keras.layers.Flatten()(x))            # 2*50*5
    assert model_flops(keras.Model(inputs, x)) == 21_600 + 400 + 500
    vgg = build_model("vgg", 7, 48, (8, 16), 1, 16, 0.0)
    assert model_flops(vgg) > 2 * 9 * 1 * 8 * 48 * 48                # at least its first conv


def test_the_gpu_profile_stays_under_ten_million_parameters():
    """params.yaml promises it (and issue 19's goal is a single model of at most 10 M)."""
    import yaml

    from tests.factories import PROJECT_PARAMS
    raw = yaml.safe_load(PROJECT_PARAMS.read_text())
    gpu = {**raw["train_defaults"], **raw["train_profiles"]["gpu"]}
    for n_classes in (7, 8):                                   # FER2013, FER+
        model = build_model(gpu["arch"], n_classes, 48, tuple(gpu["widths"]), gpu["convs"],
                            gpu["dense"], gpu["dropout"], gpu["spatial_dropout_from"])
        assert model.count_params() <= 10_000_000


def test_the_flip_averaged_model_is_the_mean_of_a_face_and_its_mirror(tmp_path):
    """What is saved and served: exactly (f(x) + f(flip x)) / 2, after a save and a load
    with no custom objects, with the same parameters and twice the FLOPs."""
    import keras
    import numpy as np

    from ferops.training.model import model_flops, single_pass, with_flip_average
    net = build_model("vgg", 7, 48, (8, 16), 1, 16, 0.0)
    x = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1), dtype=np.uint8)
    averaged = with_flip_average(net)
    averaged.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    expected = (net.predict(x, verbose=0) + net.predict(x[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    # An asymmetric face gets a different answer from the single pass: the flip is real.
    assert not np.allclose(net.predict(x, verbose=0), expected, atol=1e-4)
    inner = single_pass(loaded)
    np.testing.assert_allclose(inner.predict(x, verbose=0), net.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert single_pass(net) is net
    assert loaded.count_params() == net.count_params()
    assert model_flops(loaded) == 2 * model_flops(net)
