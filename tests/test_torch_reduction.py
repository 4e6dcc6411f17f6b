"""tb_activations.torch.reduction against test_reduction's numpy oracle and against the
TensorFlow reduction it stands in for."""

import hypothesis
import numpy as np
import pytest
import tensorflow as tf
import torch

from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.rendering import overview
from tb_activations.tensorflow import reduction as tf_reduction
from tb_activations.torch import reduction
from tests import models
from tests.test_reduction import assert_valid_top_channels
from tests.test_reduction import layer_outputs
from tests.test_reduction import oracle_canonical
from tests.test_reduction import oracle_statistics
from tests.test_reduction import oracle_tiles
from tests.test_reduction import oracle_top_scores
from tests.test_reduction import wide_layers

STAT = {field: i for i, field in enumerate(metadata.STAT_FIELDS)}


def reduce_both(x, plan, options, finite_only):
    """(torch's arrays, TensorFlow's arrays) for one output."""
    ours = reduction.to_host(reduction.reduce_layer_output(torch.from_numpy(x), plan, options,
                                                           finite_only))
    theirs = {key: value.numpy() for key, value in tf_reduction.reduce_layer_output(
        tf.constant(x), plan, options, finite_only).items()}
    return ours, theirs


@hypothesis.given(layer_outputs())
@hypothesis.settings(max_examples=80, deadline=None)
def test_torch_reduction_matches_the_oracle_and_tensorflow(case):
    x, channels_first, options = case
    plan = layout.plan_layout(x.shape[1:], options, channels_first=channels_first)
    canonical = oracle_canonical(x, channels_first)
    batch = x.shape[0]
    finite_only = not np.isfinite(x).all()
    ours, theirs = reduce_both(x, plan, options, finite_only)
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        assert value.dtype == theirs[key].dtype and value.shape == theirs[key].shape, key

    channels = ours["channels"]
    np.testing.assert_array_equal(ours["units"], channels)
    if options.channel_selection == "first":
        np.testing.assert_array_equal(channels, theirs["channels"])
    else:
        assert_valid_top_channels(channels, oracle_top_scores(canonical), plan.channels_kept)
    expected = oracle_statistics(canonical)[:, channels]
    expected_layer = oracle_statistics(canonical.reshape(batch, -1, 1))[:, 0]
    for field, index in STAT.items():
        tolerance = dict(rtol=1e-4, atol=1e-4) if field in ("mean", "std") else dict(rtol=1e-6)
        np.testing.assert_allclose(ours["stats"][..., index], expected[..., index],
                                   err_msg=field, **tolerance)
        np.testing.assert_allclose(ours["layer"][..., index], expected_layer[..., index],
                                   err_msg=field, **tolerance)
        np.testing.assert_allclose(ours["layer"][..., index], theirs["layer"][..., index],
                                   err_msg=field, **tolerance)
    silent = np.all(canonical.reshape(batch, -1, plan.channels_total) == 0, axis=1)
    np.testing.assert_array_equal(ours["silent"], np.packbits(silent, axis=-1))
    np.testing.assert_array_equal(ours["silent"], theirs["silent"])
    tiles, ranges = oracle_tiles(canonical, plan, channels)
    np.testing.assert_allclose(ours["tiles"], tiles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours["ranges"], ranges, rtol=1e-6)
    if options.channel_selection == "first":
        for key in ("tiles", "ranges", "stats"):
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-4,
                                       err_msg=key)


@pytest.mark.parametrize("shape, options", [
    ((1, 100, 3), layout.RenderOptions()),
    ((2, 9, 2), layout.RenderOptions(max_tile=1)),
    ((3, 1, 30, 2), layout.RenderOptions(max_tile=4)),
], ids=["1x100", "2x9-to-1x1", "volume-1x30"])
def test_thin_maps_downscale_as_tensorflow_does(shape, options):
    x = models.rng(7).normal(size=(2,) + shape).astype("float32")
    plan = layout.plan_layout(shape, options)
    ours, theirs = reduce_both(x, plan, options, finite_only=False)
    np.testing.assert_allclose(ours["tiles"], theirs["tiles"], rtol=1e-5, atol=1e-6)


@hypothesis.given(wide_layers())
@hypothesis.settings(max_examples=20, deadline=None)
def test_overview_counts_of_the_torch_reduction_match_tensorflow(case):
    x, options = case
    plan = layout.plan_layout(x.shape[1:], options)
    ours, theirs = reduce_both(x, plan, options, finite_only=True)
    ours, theirs = overview.layer_summary(ours), overview.layer_summary(theirs)
    for key in ("silent_channels", "dead_channels", "nan_count", "inf_count"):
        assert ours[key] == theirs[key], key
    for key in ("zero_fraction", "low", "high"):
        assert ours[key] == pytest.approx(theirs[key], nan_ok=True, rel=1e-6), key
