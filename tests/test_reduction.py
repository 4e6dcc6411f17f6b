"""reduce_layer_output (TensorFlow's and JAX's) against a plain numpy oracle, and the whole
pipeline's values read back from event files against get_activations."""

import warnings

import hypothesis
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tb_activations import get_activations
from tb_activations import log_activations
from tb_activations import read_activations
from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.jax import reduction as jax_reduction
from tb_activations.rendering import overview
from tb_activations.tensorflow import reduction
from tests import models

# ---------------------------------------------------------------- the oracle (plain numpy)


def oracle_canonical(x, channels_first):
    """Batch first, channels last, float32 values held in float64; ranks > 4 folded."""
    x = np.asarray(x).astype(np.float32).astype(np.float64)
    rank = x.ndim - 1
    if channels_first and 2 <= rank <= 4:
        x = np.moveaxis(x, 1, -1)
    if rank == 0:
        return x.reshape(-1, 1)
    if rank > 4:
        return x.reshape(x.shape[0], -1, x.shape[-1])
    return x


def oracle_statistics(x):
    """(batch, channels, 7) like metadata.STAT_FIELDS, over finite values per channel."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    masked = np.where(np.isfinite(flat), flat, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN channels give NaN, as wanted
        moments = [np.nanmin(masked, 1), np.nanmax(masked, 1), np.nanmean(masked, 1),
                   np.nanstd(masked, 1)]
    counts = [(flat == 0).mean(1), np.isnan(flat).sum(1), np.isinf(flat).sum(1)]
    return np.stack(moments + counts, axis=-1)


def oracle_range(sample):
    finite = sample[np.isfinite(sample)]
    return (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)


def block_mean(image, factor_rows, factor_columns):
    """Mean of each factor-sized block, edge blocks completed by symmetric padding."""
    height, width = image.shape
    rows, columns = -(-height // factor_rows), -(-width // factor_columns)
    padded = np.pad(image, ((0, rows * factor_rows - height),
                            (0, columns * factor_columns - width)), mode="symmetric")
    out = np.empty((rows, columns))
    with np.errstate(invalid="ignore"):
        for i in range(rows):
            for j in range(columns):
                out[i, j] = padded[i * factor_rows:(i + 1) * factor_rows,
                                   j * factor_columns:(j + 1) * factor_columns].mean()
    return out


def oracle_top_scores(x):
    """Mean |value| of each channel over batch and positions, non-finite values as 0."""
    magnitude = np.abs(x.reshape(-1, x.shape[-1]))
    return np.where(np.isfinite(magnitude), magnitude, 0.0).mean(0)


def oracle_tiles(x, plan, channels):
    """(batch, tiles, h, w) and (batch, tiles, 2), each tile computed on its own."""
    stats = oracle_statistics(x)
    tiles, ranges = [], []
    for sample in range(x.shape[0]):
        sample_tiles, sample_ranges = [], []
        if plan.layout == "channels":
            for channel in channels:
                sample_tiles.append(block_mean(x[sample, :, :, channel], *plan.downscale))
                sample_ranges.append(stats[sample, channel, :2])
        elif plan.layout == "volume":
            for channel in channels:
                for depth in plan.depth_slices:
                    sample_tiles.append(block_mean(x[sample, depth, :, :, channel],
                                                   *plan.downscale))
                    sample_ranges.append(stats[sample, channel, :2])
        elif plan.layout == "sequence":
            sample_tiles.append(block_mean(x[sample], *plan.downscale))
            sample_ranges.append(oracle_range(x[sample]))
        else:
            (group,) = plan.downscale
            units = block_mean(x[sample][None, :], 1, group)[0]
            cells = np.zeros(plan.tile_height * plan.tile_width)
            cells[:units.size] = units
            sample_tiles.append(cells.reshape(plan.tile_height, plan.tile_width))
            sample_ranges.append(oracle_range(x[sample]))
        tiles.append(sample_tiles)
        ranges.append(sample_ranges)
    return np.array(tiles), np.array(ranges, dtype=np.float64)


# ---------------------------------------------------------------- the reductions under test


def reduce_in_tensorflow(x, plan, options, finite_only=False):
    """In a graph, as the capture runs it (a graph's optimizer rewrites some arithmetic)."""
    reduced = tf.function(lambda value: reduction.reduce_layer_output(
        value, plan, options, finite_only))(tf.constant(x))
    return {key: value.numpy() for key, value in reduced.items()}


def reduce_in_jax(x, plan, options, finite_only=False):
    """Jitted, as the JAX capture runs it."""
    import jax

    reduced = jax.jit(lambda value: jax_reduction.reduce_layer_output(
        value, plan, options, finite_only))(x)
    return {key: np.asarray(value) for key, value in reduced.items()}


REDUCERS = pytest.mark.parametrize("reduce", [reduce_in_tensorflow, reduce_in_jax],
                                   ids=["tensorflow", "jax"])


# ---------------------------------------------------------------- strategies

SPECIALS = [np.nan, np.inf, -np.inf, 0.0]


@st.composite
def layer_outputs(draw):
    """(output batch, channels_first, options) over ranks 0..6, with NaN/Inf and zeros."""
    rank = draw(st.integers(0, 6))
    largest = {0: 1, 1: 40, 2: 12, 3: 9, 4: 5}.get(rank, 3)
    sample_shape = tuple(draw(st.lists(st.integers(1, largest), min_size=rank, max_size=rank)))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
    if dtype == "int32":
        elements = st.integers(-50, 50)
    else:
        # No subnormals: TensorFlow's CPU kernels flush them to zero.
        elements = st.one_of(st.floats(-10, 10, width=16 if dtype == "float16" else 32,
                                       allow_subnormal=False),
                             st.sampled_from(SPECIALS))
    x = draw(hnp.arrays(dtype, (batch,) + sample_shape, elements=elements))
    options = layout.RenderOptions(
        max_channels=draw(st.integers(1, 6)),
        channel_selection=draw(st.sampled_from(layout.CHANNEL_SELECTIONS)),
        max_tile=draw(st.integers(1, 6)),
        max_depth_slices=draw(st.integers(1, 4)),
        max_image=draw(st.integers(1, 8)))
    return x, draw(st.booleans()), options


def assert_valid_top_channels(chosen, scores, shown):
    """`chosen` are `shown` distinct channels with the highest scores, highest first."""
    assert len(chosen) == shown and len(set(chosen)) == shown
    tolerance = 1e-5 * (1 + scores.max())
    picked = scores[chosen]
    assert np.all(np.diff(picked) <= tolerance)
    others = np.delete(scores, chosen)
    if others.size:
        assert picked.min() >= others.max() - tolerance


# ---------------------------------------------------------------- tests


@REDUCERS
@hypothesis.given(layer_outputs())
@hypothesis.settings(max_examples=60, deadline=None)
def test_reduce_layer_output_matches_numpy_oracle(reduce, case):
    x, channels_first, options = case
    plan = layout.plan_layout(x.shape[1:], options, channels_first=channels_first)
    canonical = oracle_canonical(x, channels_first)
    assert canonical.shape[1:] == plan.canonical_shape
    index = {field: i for i, field in enumerate(metadata.STAT_FIELDS)}
    batch = x.shape[0]
    # What keras.log.capture does: plain statistics, whose non-finite layer-level mean
    # triggers the masked ones whenever some value is NaN or Inf.
    plain = reduce(x, plan, options)
    finite_only = not np.isfinite(plain["layer"][..., index["mean"]]).all()
    if not np.isfinite(x).all():
        assert finite_only
    reduced = reduce(x, plan, options, finite_only=True) if finite_only else plain

    channels = reduced["channels"]
    assert channels.dtype == np.int32 and channels.shape == (plan.channels_kept,)
    np.testing.assert_array_equal(reduced["units"], channels)
    assert plan.channels_kept == min(plan.channels_total, options.max_channels)
    if plan.layout in ("channels", "volume"):
        assert plan.channels_shown == plan.channels_kept
    if options.channel_selection == "first":
        np.testing.assert_array_equal(channels, np.arange(plan.channels_kept))
    else:
        assert_valid_top_channels(channels, oracle_top_scores(canonical), plan.channels_kept)

    stats, layer = reduced["stats"], reduced["layer"]
    assert stats.dtype == np.float32 and stats.shape == (batch, plan.channels_kept, 7)
    assert layer.dtype == np.float32 and layer.shape == (batch, 7)
    expected = oracle_statistics(canonical)[:, channels]
    expected_layer = oracle_statistics(canonical.reshape(batch, -1, 1))[:, 0]
    for field in ("min", "max", "zero_fraction", "nan_count", "inf_count"):
        np.testing.assert_allclose(stats[..., index[field]], expected[..., index[field]],
                                   rtol=1e-6, err_msg=field)
        np.testing.assert_allclose(layer[..., index[field]], expected_layer[..., index[field]],
                                   rtol=1e-6, err_msg=field)
    for field in ("mean", "std"):
        np.testing.assert_allclose(stats[..., index[field]], expected[..., index[field]],
                                   rtol=1e-4, atol=1e-4, err_msg=field)
        np.testing.assert_allclose(layer[..., index[field]], expected_layer[..., index[field]],
                                   rtol=1e-4, atol=1e-4, err_msg=field)
    silent = np.all(canonical.reshape(batch, -1, plan.channels_total) == 0, axis=1)
    np.testing.assert_array_equal(reduced["silent"], np.packbits(silent, axis=-1))

    tiles, ranges = oracle_tiles(canonical, plan, channels)
    assert reduced["tiles"].shape == (batch, plan.tiles, plan.tile_height, plan.tile_width)
    assert reduced["ranges"].shape == (batch, plan.tiles, 2)
    np.testing.assert_allclose(reduced["tiles"], tiles, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reduced["ranges"], ranges, rtol=1e-6)


@pytest.mark.parametrize("shape, options", [
    ((1, 100, 3), layout.RenderOptions()),  # 1 row, downscaled by 4: needs 3 mirrored rows
    ((2, 9, 2), layout.RenderOptions(max_tile=1)),  # 9 x 9 blocks over a 2-row map
    ((3, 1, 30, 2), layout.RenderOptions(max_tile=4)),  # the same inside a volume
], ids=["1x100", "2x9-to-1x1", "volume-1x30"])
@REDUCERS
def test_thin_maps_downscale_by_repeated_mirroring(reduce, shape, options):
    x = models.rng(7).normal(size=(2,) + shape).astype("float32")
    plan = layout.plan_layout(shape, options)
    reduced = reduce(x, plan, options)
    canonical = oracle_canonical(x, False)
    tiles, _ = oracle_tiles(canonical, plan, reduced["channels"])
    np.testing.assert_allclose(reduced["tiles"], tiles, rtol=1e-5, atol=1e-6)
    if shape[0] == 1:  # every row block is the single row repeated: a plain column mean
        expected = x[:, 0].reshape(2, 25, 4, 3).mean(2).transpose(0, 2, 1)
        np.testing.assert_allclose(reduced["tiles"][:, :, 0], expected, rtol=1e-5)


@REDUCERS
def test_statistics_of_a_channel_without_finite_values(reduce):
    x = np.array([[[np.nan, 1.0], [np.inf, 0.0], [-np.inf, 3.0]]], np.float32)  # (1, T=3, F=2)
    plan = layout.plan_layout(x.shape[1:])
    stats = reduce(x, plan, layout.RenderOptions(), finite_only=True)["stats"][0]
    assert np.isnan(stats[0, :4]).all()  # feature 0 has no finite value
    np.testing.assert_allclose(stats[0, 4:], [0.0, 1.0, 2.0])
    np.testing.assert_allclose(stats[1], [0.0, 3.0, 4 / 3, np.std([1, 0, 3]), 1 / 3, 0, 0],
                               rtol=1e-6)


@REDUCERS
def test_top_selection_picks_the_most_active_channels(reduce):
    x = np.zeros((2, 4, 4, 5), np.float32)
    for channel, scale in enumerate([1.0, -9.0, 3.0, 0.5, 5.0]):
        x[..., channel] = scale
    x[0, 0, 0, 3] = np.inf  # ignored by the score
    options = layout.RenderOptions(max_channels=3, channel_selection="top")
    plan = layout.plan_layout(x.shape[1:], options)
    reduced = reduce(x, plan, options)
    np.testing.assert_array_equal(reduced["channels"], [1, 4, 2])
    np.testing.assert_allclose(reduced["tiles"][:, :, 0, 0], [[-9, 5, 3]] * 2)


@st.composite
def wide_layers(draw):
    """(output, options): a vector, sequence or channels output of up to 3,000 units, some
    units all zero in some samples (dead in all), NaN/Inf sprinkled, fewer kept than there
    are."""
    batch = draw(st.integers(1, 4))
    shape = draw(st.sampled_from([(3000,), (777,), (9,), (5, 1001), (3, 3, 130), (2, 2, 17)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(batch,) + shape).astype(np.float32)
    units = shape[-1]
    silent = rng.random((batch, units)) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    silent[:, rng.random(units) < draw(st.sampled_from([0.0, 0.3]))] = True  # dead
    x = np.where(silent.reshape((batch,) + (1,) * (len(shape) - 1) + (units,)), 0.0, x)
    flat = x.reshape(-1)
    specials = rng.integers(0, flat.size, draw(st.integers(0, 20)))
    flat[specials] = rng.choice([np.nan, np.inf, -np.inf, 0.0], specials.size)
    options = layout.RenderOptions(max_channels=draw(st.integers(1, 64)),
                                   channel_selection=draw(st.sampled_from(["first", "top"])))
    return x, options


@REDUCERS
@hypothesis.given(wide_layers())
@hypothesis.settings(max_examples=30, deadline=None)
def test_dead_and_silent_units_are_exact_for_every_unit(reduce, case):
    x, options = case
    plan = layout.plan_layout(x.shape[1:], options)
    reduced = reduce(x, plan, options, finite_only=True)
    summary = overview.layer_summary(reduced)
    by_unit = x.reshape(x.shape[0], -1, x.shape[-1])
    all_zero = np.all(by_unit == 0, axis=1)
    assert summary["silent_channels"] == all_zero.sum(axis=1).tolist()
    assert summary["dead_channels"] == int(np.all(all_zero, axis=0).sum())
    assert summary["nan_count"] == int(np.isnan(x).sum())
    assert summary["inf_count"] == int(np.isinf(x).sum())
    assert summary["zero_fraction"] == pytest.approx(float(np.mean(x == 0)), abs=1e-6)
    assert reduced["stats"].shape[1] == min(x.shape[-1], options.max_channels)


@REDUCERS
@pytest.mark.parametrize("finite_only", [False, True])
@hypothesis.given(positions=st.integers(1, 400))
@hypothesis.settings(max_examples=15, deadline=None)
def test_a_map_of_zeros_alone_has_a_zero_fraction_of_exactly_one(reduce, finite_only, positions):
    """The tab reads a unit as silent where its zero fraction is 1: a graph dividing by the
    reciprocal of 121 positions gave 0.99999994."""
    x = np.zeros((2, positions, 3), np.float32)
    x[:, -1, 1] = 1.0  # unit 1: one value that is not zero
    x[1, :, 2] = 0.5  # unit 2: silent in sample 0 only
    options = layout.RenderOptions()
    plan = layout.plan_layout(x.shape[1:], options)
    zero = reduce(x, plan, options, finite_only)["stats"][..., metadata.STAT_FIELDS.index(
        "zero_fraction")]
    assert zero[:, 0].tolist() == [1.0, 1.0]
    assert zero[0, 2] == 1.0 and zero[1, 2] == 0.0
    np.testing.assert_allclose(zero[:, 1], (positions - 1) / positions, rtol=0, atol=2 ** -23)


@pytest.mark.parametrize("limit", [reduction.SIGN_COUNT_LIMIT, 0], ids=["sign-norm", "compare"])
def test_zero_counts_are_exact_up_to_the_largest_map_counted_by_sign(monkeypatch, limit):
    """The norm of sign(x) counts exactly up to SIGN_COUNT_LIMIT positions a unit (the float32
    rounding of its square root is the risk); past the limit, comparison counts."""
    monkeypatch.setattr(reduction, "SIGN_COUNT_LIMIT", limit)
    positions = reduction.SIGN_COUNT_LIMIT if limit else 1000
    rng = models.rng(11)
    x = rng.normal(size=(1, positions, 4)).astype(np.float32)
    zeros = rng.random((1, positions, 4)) < np.array([0.0, 1e-3, 0.5, 1.0])
    x[zeros] = 0.0
    x[0, :7, 0] = -0.0  # a negative zero is a zero
    counts = reduction.zero_counts(tf.constant(x)).numpy()
    np.testing.assert_array_equal(counts, np.sum(x == 0, axis=1))


# ---------------------------------------------------------------- whole pipeline


def tile_regions(tiling):
    """(tile index, rows slice, columns slice) of every tile of a grid, row-major."""
    height, width, gutter = tiling["tile_height"], tiling["tile_width"], tiling["gutter"]
    count = {"channels": tiling["channels_shown"],
             "volume": tiling["channels_shown"] * len(tiling["depth_slices"])}.get(
                 tiling["layout"], 1)
    for tile in range(count):
        row, column = divmod(tile, tiling["columns"])
        top, left = row * (height + gutter), column * (width + gutter)
        yield tile, slice(top, top + height), slice(left, left + width)


def channels_last(activation, record):
    """The record's sample of a full-resolution activation, channels last."""
    sample = np.asarray(activation[record.sample], np.float64)
    return np.moveaxis(sample, 0, -1) if record.tiling["channels_first"] else sample


def expected_tile(activation, record, tile):
    """The real values tile `tile` of `record` draws, from a full-resolution activation."""
    tiling = record.tiling
    sample = channels_last(activation, record)
    if tiling["layout"] == "channels":
        return sample[..., record.channels[tile]]
    if tiling["layout"] == "volume":
        channel, depth = divmod(tile, len(tiling["depth_slices"]))
        return sample[tiling["depth_slices"][depth], :, :, record.channels[channel]]
    if tiling["layout"] == "sequence":
        return sample.reshape(-1, sample.shape[-1])
    cells = np.full(tiling["tile_height"] * tiling["tile_width"], np.nan)
    cells[:sample.size] = sample.ravel()
    return cells.reshape(tiling["tile_height"], tiling["tile_width"])


class ChannelsFirst(keras.layers.Layer):
    """Moves channels first and says so, as Keras layers built with data_format do (TF's CPU
    convolutions themselves only run channels last)."""

    data_format = "channels_first"

    def call(self, x):
        return keras.ops.transpose(x, (0, 3, 1, 2))


def channels_first_model():
    inputs = keras.Input((6, 5, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    return keras.Model(inputs, ChannelsFirst(name="to_chw")(x), name="chw")


@pytest.mark.parametrize("build, probe, options, layouts", [
    (models.small_cnn, lambda: models.digits(3)[0], {}, {"channels", "vector"}),
    (models.small_cnn, lambda: models.digits(3)[0],
     {"max_channels": 5, "channel_selection": "top", "columns": 2}, {"channels", "vector"}),
    (models.sequence_attention, lambda: models.sequence_probe(3), {},
     {"sequence", "channels", "vector"}),
    (models.conv3d, lambda: models.rng(8).normal(size=(2, 6, 10, 10, 2)).astype("float32"),
     {"max_depth_slices": 4}, {"volume", "vector"}),
    (lambda: channels_first_model(), lambda: models.rng(9).normal(size=(2, 6, 5, 3)).astype(
        "float32"), {}, {"channels"}),
], ids=["cnn", "cnn-top-5", "sequence", "volume", "channels-first"])
def test_values_read_back_within_quantization_error(tmp_path, build, probe, options, layouts):
    keras.utils.set_random_seed(11)
    model, x = build(), probe()
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert log_activations(model, x, step=3, **options)
    activations = get_activations(model, x)
    records = list(read_activations(tmp_path))
    assert {record.layer for record in records} == set(activations)
    assert len(records) == len(activations) * len(x)
    checked = set()
    for record in records:
        assert record.step == 3
        # Attention probabilities are (B, heads, Tq, Tk): heads first, as the tiles show them.
        assert record.tiling["channels_first"] == (record.layer == "to_chw"
                                                   or record.layer.endswith(":attention"))
        tiling = record.tiling
        if any(factor != 1 for factor in tiling["downscale"]):
            continue
        values = record.values()
        drawn = np.zeros(values.shape, bool)
        for tile, rows, columns in tile_regions(tiling):
            real = expected_tile(activations[record.layer], record, tile)
            low, high = record.ranges[tile]
            if tiling["layout"] in ("channels", "volume"):  # the whole channel's range
                channel = record.channels[tile // len(tiling["depth_slices"] or [0])]
                whole = channels_last(activations[record.layer], record)[..., channel]
                np.testing.assert_allclose([low, high], [whole.min(), whole.max()], rtol=1e-5,
                                           atol=1e-6)
            error = np.abs(values[rows, columns] - real)
            assert np.array_equal(np.isnan(real), np.isnan(values[rows, columns]))
            assert np.nanmax(error, initial=0) <= (high - low) / metadata.FINITE_MAX_CODE + 1e-6
            drawn[rows, columns] = True
        assert np.isnan(values[~drawn]).all()  # gutters and padding carry no value
        checked.add(tiling["layout"])
    assert checked == layouts


class Poisoned(keras.layers.Layer):
    """Channel 0 becomes NaN and channel 1 +Inf wherever the input exceeds 0.9."""

    def call(self, x):
        hot = x > 0.9
        nan, inf = tf.fill(tf.shape(x[..., :1]), np.nan), tf.fill(tf.shape(x[..., :1]), np.inf)
        return tf.concat([tf.where(hot[..., :1], nan, x[..., :1]),
                          tf.where(hot[..., 1:2], inf, x[..., 1:2]), x[..., 2:]], axis=-1)


def test_non_finite_values_switch_to_the_masked_statistics_for_that_step(tmp_path):
    inputs = keras.Input((4, 4, 3), name="pixels")
    model = keras.Model(inputs, Poisoned(name="poisoned")(inputs))
    clean = np.linspace(0, 0.8, 2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    hot = clean.copy()
    hot[0, 0, :2, :2] = 1.0  # two NaN in channel 0 and two Inf in channel 1, sample 0 only
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert log_activations(model, clean, step=0)
        assert log_activations(model, hot, step=1)
        assert log_activations(model, clean, step=2)
    stats = {(r.step, r.sample): r.statistics for r in read_activations(tmp_path)}
    assert stats[(1, 0)]["nan_count"].tolist() == [2, 0, 0]
    assert stats[(1, 0)]["inf_count"].tolist() == [0, 2, 0]
    for channel in (0, 1):  # min, max and mean cover the finite values only
        finite = np.delete(hot[0, ..., channel].ravel(), [0, 1])
        np.testing.assert_allclose(
            [stats[(1, 0)][field][channel] for field in ("min", "max", "mean")],
            [finite.min(), finite.max(), finite.mean()], rtol=1e-5)
    for key in ((0, 0), (1, 1), (2, 0)):
        assert stats[key]["nan_count"].sum() == stats[key]["inf_count"].sum() == 0
        assert np.isfinite(stats[key]["mean"]).all()
