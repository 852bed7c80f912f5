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
