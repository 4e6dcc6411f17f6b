"""Property tests of the pure numpy side: layout planning, quantization, tiling, PNG and
statistics blobs, probe pictures. No TensorFlow here."""

import io
import json
import math
import pickle
import platform
import threading
import types
import zipfile
from unittest import mock

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.rendering import deflate
from tb_activations.rendering import grid_images
from tb_activations.rendering import steps as steps_lib
from tests import format_v1
from tests.numpy_capture import numpy_capture

DTYPES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint16", "bool"]


def options_strategy(small=False):
    top = 6 if small else 300
    return st.builds(
        layout.RenderOptions,
        max_channels=st.integers(1, top), channel_selection=st.sampled_from(["first", "top"]),
        max_tile=st.integers(1, top), max_depth_slices=st.integers(1, 12 if not small else 4),
        max_image=st.integers(1, top), columns=st.one_of(st.none(), st.integers(1, 12)))


@st.composite
def sample_shapes(draw, largest=None):
    rank = draw(st.integers(0, 6))
    if largest is None:
        largest = {1: 200_000, 2: 3000, 3: 700}.get(rank, 40)
    return tuple(draw(st.lists(st.integers(1, largest), min_size=rank, max_size=rank)))


def element_strategy(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        # Spans up to float32's range and beyond, not past float64's: the writer hands the
        # numpy side float32 data (prepare_probe and the reduction cast to it).
        return st.one_of(st.floats(-1e300, 1e300), st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype.kind == "f":
        return st.floats(width=dtype.itemsize * 8, allow_nan=True, allow_infinity=True)
    return None  # hypothesis' default for integer and bool dtypes covers their whole range


@st.composite
def arrays_of_any_dtype(draw, shape):
    dtype = draw(st.sampled_from(DTYPES))
    return draw(hnp.arrays(dtype, shape, elements=element_strategy(dtype)))


# ---------------------------------------------------------------- layout


def expected_layout(shape, channels_first):
    rank = len(shape)
    if rank in (0, 1) or rank > 4:
        return "vector" if rank <= 1 else "sequence"
    return {2: "sequence", 3: "channels", 4: "volume"}[rank]


@hypothesis.given(sample_shapes(), options_strategy(), st.booleans())
@hypothesis.settings(max_examples=200, deadline=None)
def test_plan_layout_caps_and_grid(shape, options, channels_first):
    plan = layout.plan_layout(shape, options, channels_first=channels_first)
    rank = len(shape)
    assert plan.layout == expected_layout(shape, channels_first)
    assert plan.source_shape == shape
    assert plan.channels_first == (channels_first and 2 <= rank <= 4)
    assert math.prod(plan.canonical_shape) == max(1, math.prod(shape))
    assert plan.channels_total == plan.canonical_shape[-1]
    assert plan.channels_total == (shape[0] if plan.channels_first else (shape or (1,))[-1])

    if plan.layout in ("channels", "volume"):
        height, width = plan.canonical_shape[-3:-1]
        (factor, same), longest = plan.downscale, max(height, width)
        assert factor == same and factor >= 1
        assert plan.tile_height == math.ceil(height / factor)
        assert plan.tile_width == math.ceil(width / factor)
        assert max(plan.tile_height, plan.tile_width) <= options.max_tile
        assert factor == 1 or (factor - 1) * options.max_tile < longest  # no coarser than needed
        assert plan.channels_shown == min(plan.channels_total, options.max_channels)
    if plan.layout == "channels":
        assert plan.tiles == plan.channels_shown
        assert plan.rows * plan.columns >= plan.tiles > (plan.rows - 1) * plan.columns
        if options.columns is None:  # near-square
            assert plan.rows <= plan.columns <= plan.rows + 1
        else:
            assert plan.columns == min(options.columns, plan.tiles)
    if plan.layout == "volume":
        depth = plan.canonical_shape[0]
        slices = plan.depth_slices
        assert plan.rows == plan.channels_shown and plan.columns == len(slices)
        assert len(slices) == min(depth, options.max_depth_slices)
        assert list(slices) == sorted(set(slices)) and 0 <= slices[0] and slices[-1] < depth
        if len(slices) >= 2:
            assert (slices[0], slices[-1]) == (0, depth - 1)
        assert plan.tiles == plan.rows * plan.columns
    if plan.layout == "sequence":
        steps, features = plan.canonical_shape
        assert (plan.rows, plan.columns, plan.tiles) == (1, 1, 1)
        assert plan.channels_shown == features
        assert plan.tile_height <= options.max_image and plan.tile_width <= options.max_image
        assert plan.tile_height == math.ceil(steps / plan.downscale[0])
        assert plan.tile_width == math.ceil(features / plan.downscale[1])
    if plan.layout == "vector":
        (units,) = plan.canonical_shape
        (group,) = plan.downscale
        cells = math.ceil(units / group)
        assert (plan.rows, plan.columns, plan.tiles) == (1, 1, 1)
        assert plan.tile_height <= options.max_image and plan.tile_width <= options.max_image
        height, width = plan.tile_height, plan.tile_width
        assert height * width >= cells > (height - 1) * width
        assert plan.tile_height <= plan.tile_width <= plan.tile_height + 1
        assert group == 1 or (group - 1) * options.max_image ** 2 < units

    assert plan.grid_height == plan.rows * plan.tile_height + (plan.rows - 1) * plan.gutter
    assert plan.grid_width == plan.columns * plan.tile_width + (plan.columns - 1) * plan.gutter
    content = json.loads(json.dumps(plan.to_content()))
    assert content["output_shape"] == [None] + list(shape)
    assert content["layout"] == plan.layout and content["downscale"] == list(plan.downscale)
    assert content["depth_slices"] == list(plan.depth_slices)


def test_plan_layout_examples():
    plan = layout.plan_layout((112, 112, 32), layout.RenderOptions(max_tile=28))
    assert (plan.rows, plan.columns, plan.tile_height, plan.downscale) == (6, 6, 28, (4, 4))
    first = layout.plan_layout((32, 5, 7), channels_first=True)  # (C, H, W)
    assert first.canonical_shape == (5, 7, 32) and first.channels_first
    folded = layout.plan_layout((2, 3, 4, 5, 6))
    assert folded.layout == "sequence" and folded.canonical_shape == (2 * 3 * 4 * 5, 6)
    assert layout.plan_layout(()).canonical_shape == (1,)
    assert layout.evenly_spaced(100, 1) == (50,)


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (None, 4)])
def test_plan_layout_rejects_empty_or_unknown_axes(shape):
    with pytest.raises(ValueError, match="empty or unknown axis"):
        layout.plan_layout(shape)


@pytest.mark.parametrize("field, value", [
    ("max_channels", 0), ("max_tile", -1), ("max_image", 2.5), ("max_depth_slices", True),
    ("columns", 0), ("channel_selection", "random")])
def test_render_options_validated(field, value):
    with pytest.raises(ValueError, match=field):
        layout.RenderOptions(**{field: value})


# ---------------------------------------------------------------- quantize


@st.composite
def tiles_and_ranges(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=3, max_size=5)))
    tiles = draw(arrays_of_any_dtype(shape))
    range_values = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf]))
    ranges = draw(hnp.arrays("float32", shape[:-2] + (2,), elements=range_values))
    return tiles, ranges


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf - inf ranges
@hypothesis.given(tiles_and_ranges())
@hypothesis.settings(max_examples=150, deadline=None)
def test_quantize_codes(case):
    tiles, ranges = case
    codes = grid_images.quantize(tiles, ranges)
    assert codes.dtype == np.uint8 and codes.shape == tiles.shape
    values = tiles.astype(np.float64)
    finite = np.isfinite(values)
    assert np.all(codes[~finite] == metadata.NONFINITE_CODE)
    assert np.all(codes[finite] <= metadata.FINITE_MAX_CODE)
    low = ranges[..., 0, None, None].astype(np.float64)
    high = ranges[..., 1, None, None].astype(np.float64)
    low, high = np.broadcast_to(low, values.shape), np.broadcast_to(high, values.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        span = high - low
    unusable = ~(np.isfinite(span) & (span > 0))
    assert np.all(codes[finite & unusable] == 0)  # constant maps and unknown ranges
    inside = finite & ~unusable & (values >= low) & (values <= high)
    recovered = low[inside] + codes[inside] / metadata.FINITE_MAX_CODE * span[inside]
    assert np.all(np.abs(recovered - values[inside])
                  <= span[inside] / (2 * metadata.FINITE_MAX_CODE) * (1 + 1e-9))
    assert np.all(codes[finite & ~unusable & (values < low)] == 0)
    assert np.all(codes[finite & ~unusable & (values > high)] == metadata.FINITE_MAX_CODE)


def quantize_reference(tiles, ranges):
    """The quantization rules in their plainest numpy form (one temporary per operation):
    quantize computes the same IEEE operations in place, so its codes must be identical."""
    tiles = np.asarray(tiles, dtype=np.float64)
    low = np.asarray(ranges, dtype=np.float64)[..., 0, None, None]
    high = np.asarray(ranges, dtype=np.float64)[..., 1, None, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        span = high - low
        usable = np.isfinite(span) & (span > 0)
        scaled = np.where(usable, (tiles - low) / np.where(usable, span, 1.0), 0.0)
    codes = np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * metadata.FINITE_MAX_CODE)
    codes = codes.astype(np.uint8)
    codes[~np.isfinite(tiles)] = metadata.NONFINITE_CODE
    return codes


SPECIAL_FLOATS = [0.0, -0.0, np.nan, np.inf, -np.inf, 3.4028235e38, -3.4028235e38, 1e-45,
                  -1e-45, 1.0, 0.5]


@st.composite
def float32_tiles_and_their_ranges(draw):
    """What the writer hands quantize: float32 tiles, and ranges that are often the tiles' own
    finite min/max (constant tiles give low == high), else anything, huge and special included."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=3, max_size=5)))
    values = st.one_of(st.floats(width=32), st.sampled_from(SPECIAL_FLOATS))
    if draw(st.booleans()):
        tiles = np.full(shape, draw(values), np.float32)
    else:
        tiles = draw(hnp.arrays("float32", shape, elements=values))
    if draw(st.booleans()):
        finite = np.where(np.isfinite(tiles), tiles, np.nan)
        with np.errstate(all="ignore"):
            ranges = np.stack([np.nanmin(finite, axis=(-2, -1)) if np.isfinite(tiles).any()
                               else np.full(shape[:-2], np.nan, np.float32),
                               np.nanmax(finite, axis=(-2, -1)) if np.isfinite(tiles).any()
                               else np.full(shape[:-2], np.nan, np.float32)], axis=-1)
    else:
        ranges = draw(hnp.arrays("float32", shape[:-2] + (2,), elements=values))
    return tiles, ranges.astype(np.float32)


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
@hypothesis.given(st.one_of(float32_tiles_and_their_ranges(), tiles_and_ranges()))
@hypothesis.example((np.array([[[[-3.4028235e38, -0.0, 0.0, 3.4028235e38]]]], np.float32),
                     np.array([[[-3.4028235e38, 3.4028235e38]]], np.float32)))  # span > float32
@hypothesis.example((np.array([[[[0.0, -0.0, 1e-45, np.nan]]]], np.float32),
                     np.array([[[-0.0, 1e-45]]], np.float32)))  # subnormal span
@hypothesis.settings(max_examples=300, deadline=None)
def test_quantize_matches_the_reference_rules_bit_for_bit(case):
    tiles, ranges = case
    np.testing.assert_array_equal(grid_images.quantize(tiles, ranges),
                                  quantize_reference(tiles, ranges))


def test_quantize_endpoints_and_specials():
    tiles = np.array([[[[0.0, 1.0, 2.0, np.nan, np.inf, -np.inf]]]], np.float32)
    codes = grid_images.quantize(tiles, np.array([[[0.0, 2.0]]]))
    np.testing.assert_array_equal(codes[0, 0, 0], [0, 126, 253, 254, 254, 254])
    constant = grid_images.quantize(np.full((1, 1, 2, 2), 7.0), np.array([[[7.0, 7.0]]]))
    np.testing.assert_array_equal(constant, 0)


# ---------------------------------------------------------------- tiling


@st.composite
def plans_and_codes(draw):
    options = draw(options_strategy(small=True))
    shape = draw(sample_shapes(largest=7))
    plan = layout.plan_layout(shape, options, channels_first=draw(st.booleans()))
    batch = draw(st.integers(1, 3))
    codes = draw(hnp.arrays(np.uint8, (batch, plan.tiles, plan.tile_height, plan.tile_width),
                            elements=st.integers(0, metadata.NONFINITE_CODE)))
    return plan, codes


@hypothesis.given(plans_and_codes())
@hypothesis.settings(max_examples=150, deadline=None)
def test_tile_feature_maps_places_tiles_and_gutters(case):
    plan, codes = case
    grids = grid_images.tile_feature_maps(codes, plan)
    batch = codes.shape[0]
    assert grids.dtype == np.uint8
    assert grids.shape == (batch, plan.grid_height, plan.grid_width)
    height, width, gutter = plan.tile_height, plan.tile_width, plan.gutter
    covered = np.zeros(grids.shape[1:], bool)
    for tile in range(plan.rows * plan.columns):
        row, column = divmod(tile, plan.columns)
        top, left = row * (height + gutter), column * (width + gutter)
        region = grids[:, top:top + height, left:left + width]
        covered[top:top + height, left:left + width] = True
        if tile >= plan.tiles:
            assert np.all(region == metadata.GUTTER_CODE)  # padding past the last tile
        elif plan.layout == "vector":
            cells = math.ceil(plan.channels_total / plan.downscale[0])
            flat_codes = codes[:, tile].reshape(batch, -1)
            flat_region = region.reshape(batch, -1)
            np.testing.assert_array_equal(flat_region[:, :cells], flat_codes[:, :cells])
            assert np.all(flat_region[:, cells:] == metadata.GUTTER_CODE)
        else:
            np.testing.assert_array_equal(region, codes[:, tile])
    assert np.all(grids[:, ~covered] == metadata.GUTTER_CODE)  # gutters


def test_tile_feature_maps_rejects_tiles_that_do_not_fit_the_plan():
    plan = layout.plan_layout((4, 4, 3))
    with pytest.raises(ValueError, match="do not fit"):
        grid_images.tile_feature_maps(np.zeros((1, 2, 4, 4), np.uint8), plan)
    with pytest.raises(ValueError, match="do not fit"):
        grid_images.tile_feature_maps(np.zeros((1, 3, 4, 5), np.uint8), plan)


def finite_ranges(tiles):
    """(batch, tiles, 2) finite min and max of each tile, NaN where it has none."""
    values = tiles.astype(np.float64)
    masked = np.where(np.isfinite(values), values, np.nan)
    empty = np.isnan(masked).all(axis=(2, 3))
    filled = np.where(empty[..., None, None], 0.0, masked)
    low, high = np.nanmin(filled, axis=(2, 3)), np.nanmax(filled, axis=(2, 3))
    return np.where(empty[..., None], np.nan, np.stack([low, high], axis=-1))


@st.composite
def reduced_layers(draw):
    """(plan, reduced) of any layout, values of any dtype with NaN/Inf, constant maps too."""
    options = draw(options_strategy(small=True))
    plan = layout.plan_layout(draw(sample_shapes(largest=6)), options)
    batch = draw(st.integers(1, 3))
    shape = (batch, plan.tiles, plan.tile_height, plan.tile_width)
    if draw(st.booleans()):
        tiles = draw(arrays_of_any_dtype(shape))
    else:
        tiles = np.full(shape, draw(st.floats(allow_nan=True, allow_infinity=True)))
    ranges = finite_ranges(tiles)
    reduced = dict(statistics_arrays(plan, batch), tiles=tiles, ranges=ranges)
    return plan, reduced


def statistics_arrays(plan, batch, stats=None, silent=None):
    """The statistics a reduced layer output of `plan` carries besides its tiles (zeros unless
    given)."""
    rows = np.zeros((batch, plan.channels_kept, 7), np.float32) if stats is None else stats
    if silent is None:
        silent = np.zeros((batch, plan.channels_total), bool)
    return {"stats": rows, "ranges": np.zeros((batch, plan.tiles, 2), np.float32),
            "channels": np.arange(plan.channels_kept), "layer": np.zeros((batch, 7), np.float32),
            "silent": np.packbits(silent, axis=-1)}


def content_of(batch, version=2):
    """The parts of a layer tag's plugin content decode_statistics reads beside its layout."""
    return {"version": version, "samples": batch}


@hypothesis.given(reduced_layers())
@hypothesis.settings(max_examples=80, deadline=None)
def test_render_layer_pngs_decode_to_the_tiled_codes(case):
    plan, reduced = case
    with np.errstate(all="ignore"):
        blobs = grid_images.render_layer(reduced, plan)
    batch = reduced["tiles"].shape[0]
    assert len(blobs) == batch + 1
    expected = grid_images.tile_feature_maps(
        grid_images.quantize(reduced["tiles"], reduced["ranges"]), plan)
    for sample, png in enumerate(blobs[:-1]):
        grid = grid_images.decode_png(png)
        assert grid.shape == (plan.grid_height, plan.grid_width)
        np.testing.assert_array_equal(grid, expected[sample])
        finite = np.isfinite(reduced["tiles"][sample].astype(np.float64))
        if plan.layout != "vector" and not finite.all():
            assert (grid == metadata.NONFINITE_CODE).any()
    arrays = grid_images.decode_statistics(blobs[-1], content_of(batch), plan)
    np.testing.assert_array_equal(arrays["channels"], reduced["channels"])
    np.testing.assert_array_equal(arrays["units"], reduced["channels"])


# ---------------------------------------------------------------- PNG


@st.composite
def images(draw):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    shape = (height, width) if channels is None else (height, width, channels)
    return draw(hnp.arrays(np.uint8, shape))


@hypothesis.given(images(), st.integers(0, 9), st.booleans())
@hypothesis.settings(max_examples=100, deadline=None)
def test_png_round_trip(image, compression, with_isal):
    """Both deflaters (ISA-L's, and zlib's where python-isal has no wheel) write PNGs that
    decode to the image."""
    with mock.patch.object(deflate, "isal_zlib", deflate.isal_zlib if with_isal else None):
        data = grid_images.encode_png(image, compression)
    decoded = grid_images.decode_png(data)
    expected = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, expected)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64", "aarch64", "arm64"),
                    reason="python-isal is a dependency where it has wheels only")
def test_grids_deflate_with_isal_where_it_has_wheels():
    assert deflate.isal_zlib is not None


def test_png_is_readable_by_an_independent_decoder():
    image_module = pytest.importorskip("PIL.Image")
    generator = np.random.default_rng(0)
    for shape, mode in [((7, 5), "L"), ((3, 9, 3), "RGB"), ((4, 4, 4), "RGBA")]:
        image = generator.integers(0, 256, size=shape, dtype=np.uint8)
        decoded = image_module.open(io.BytesIO(grid_images.encode_png(image)))
        assert decoded.mode == mode
        np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize("image, error", [
    (np.zeros((3, 3), np.float32), TypeError),
    (np.zeros((3,), np.uint8), ValueError),
    (np.zeros((3, 3, 2), np.uint8), ValueError),
    (np.zeros((0, 3), np.uint8), ValueError),
])
def test_encode_png_rejects(image, error):
    with pytest.raises(error):
        grid_images.encode_png(image)


def test_decode_png_rejects_foreign_data():
    with pytest.raises(ValueError, match="not a PNG"):
        grid_images.decode_png(b"GIF89a")
    truncated = grid_images.encode_png(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        grid_images.decode_png(truncated[:8] + truncated[33:])  # no IHDR


# ---------------------------------------------------------------- statistics blob


@st.composite
def statistics(draw):
    """(plan, batch, reduced statistics) of any layout, NaN/Inf and any silent bits."""
    plan = layout.plan_layout(draw(sample_shapes(largest=40)), draw(options_strategy(True)))
    batch = draw(st.integers(1, 4))
    floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
    stats = draw(hnp.arrays(np.float32, (batch, plan.channels_kept, 7), elements=floats))
    silent = draw(hnp.arrays(bool, (batch, plan.channels_total)))
    reduced = statistics_arrays(plan, batch, stats, silent)
    reduced["ranges"] = draw(hnp.arrays(draw(st.sampled_from(["float32", "float64"])),
                                        (batch, plan.tiles, 2), elements=floats))
    reduced["channels"] = draw(st.permutations(range(plan.channels_total)))[:plan.channels_kept]
    return plan, batch, reduced


@hypothesis.given(statistics())
@hypothesis.settings(max_examples=60, deadline=None)
def test_statistics_round_trip(case):
    plan, batch, reduced = case
    blob = grid_images.encode_statistics(reduced)
    arrays = grid_images.decode_statistics(blob, content_of(batch), plan)
    assert arrays["stats"].dtype == np.float32 and arrays["ranges"].dtype == np.float32
    assert arrays["channels"].dtype == np.int32
    np.testing.assert_array_equal(arrays["stats"], reduced["stats"])
    np.testing.assert_array_equal(arrays["ranges"], reduced["ranges"].astype(np.float32))
    np.testing.assert_array_equal(arrays["channels"], reduced["channels"])
    np.testing.assert_array_equal(arrays["units"], reduced["channels"])
    np.testing.assert_array_equal(arrays["silent"], reduced["silent"])
    assert sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(blob)).infolist()) <= (
        grid_images.statistics_bytes(content_of(batch), plan))


def zipfile_archive(members):
    """The .zip zipfile writes of [(name, data, deflated)]."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, deflated in members:
            member = zipfile.ZipInfo(name)
            member.compress_type = zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED
            archive.writestr(member, data)
    return buffer.getvalue()


@hypothesis.given(st.lists(st.tuples(st.text("abcxyz._", min_size=1, max_size=12),
                                     st.binary(max_size=3000), st.booleans()), max_size=6,
                         unique_by=lambda member: member[0]))
@hypothesis.settings(max_examples=60, deadline=None)
def test_zip_archive_is_byte_for_byte_what_zipfile_writes(members):
    blob = grid_images.zip_archive(members)
    assert blob == zipfile_archive(members)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        assert archive.testzip() is None
        assert [archive.read(info) for info in archive.infolist()] == [
            data for _, data, _ in members]


@hypothesis.given(statistics())
@hypothesis.settings(max_examples=40, deadline=None)
def test_version_1_blobs_decode_with_derived_layer_statistics(case):
    plan, batch, reduced = case
    zero = metadata.STAT_FIELDS.index("zero_fraction")
    every = np.random.default_rng(0).random((batch, plan.channels_total, 7)).astype(np.float32)
    every[..., zero] = np.where(np.unpackbits(reduced["silent"], axis=-1,
                                              count=plan.channels_total), 1.0, 0.5)
    blob = format_v1.statistics_blob(every, reduced["ranges"], np.arange(plan.channels_shown))
    arrays = grid_images.decode_statistics(blob, content_of(batch, version=1), plan)
    np.testing.assert_array_equal(arrays["stats"], every)
    np.testing.assert_array_equal(arrays["units"], np.arange(plan.channels_total))
    np.testing.assert_array_equal(arrays["silent"], reduced["silent"])
    np.testing.assert_allclose(arrays["layer"][:, zero], every[..., zero].mean(axis=1), 1e-6)
    np.testing.assert_allclose(arrays["layer"][:, 0], every[..., 0].min(axis=1))


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# A vector of 10 units (kept: 4) for 2 samples, and blobs of it that are wrong in one way.
_PLAN = layout.plan_layout((10,), layout.RenderOptions(max_channels=4))
_GOOD = dict(stats=np.zeros((2, 4, 7), np.float32), ranges=np.zeros((2, 1, 2), np.float32),
             channels=np.arange(4, dtype=np.int32), layer=np.zeros((2, 7), np.float32),
             silent=np.zeros((2, 2), np.uint8))


def _changed(**arrays):
    return npz(**{key: value for key, value in dict(_GOOD, **arrays).items()
                  if value is not None})


@pytest.mark.parametrize("blob, reason", [
    (b"", "unreadable"), (b"not an npz", "unreadable"),
    (grid_images.encode_png(np.zeros((2, 2), np.uint8)), "unreadable"),
    (_changed(silent=None), "unreadable"),
    (_changed(stats=np.zeros((2, 4, 6), np.float32)), r"\(stats\) of shape"),
    (_changed(stats=np.zeros((2, 10, 7), np.float32)), r"\(stats\) of shape"),
    (_changed(stats=np.zeros((2, 4, 7), np.float64)), "dtype float64"),
    (_changed(stats=np.zeros((2, 4, 7), np.float16)), "dtype float16"),
    (_changed(stats=np.array([{"a": 1}], dtype=object)), "unreadable"),
    (_changed(channels=np.array([0, 1, 2, 2], np.int32)), "repeat"),
    (_changed(channels=np.array([0, 1, 2, 10], np.int32)), "outside"),
    (_changed(silent=np.array([[0, 0], [0, 0b00100000]], np.uint8)), "set past unit 9"),
    (_changed(silent=np.zeros((2, 3), np.uint8)), r"\(silent\) of shape"),
    (_changed(layer=np.zeros((1, 7), np.float32)), r"\(layer\) of shape"),
], ids=["empty", "text", "png", "missing-key", "six-fields", "every-unit", "float64",
        "float16", "pickled-object", "repeated-unit", "unit-past-end", "padding-bit",
        "silent-too-long", "layer-one-sample"])
def test_decode_statistics_rejects_untrusted_blobs(blob, reason):
    with pytest.raises(ValueError, match=reason):
        grid_images.decode_statistics(blob, content_of(2), _PLAN)


def test_decode_statistics_refuses_a_bomb_before_decompressing():
    bomb = _changed(stats=np.zeros((2, 4000, 7), np.float32))
    assert len(bomb) < 300_000
    with pytest.raises(ValueError, match="would decompress to 224"):
        grid_images.decode_statistics(bomb, content_of(2), _PLAN)


def test_decode_statistics_accepts_the_good_blob():
    arrays = grid_images.decode_statistics(npz(**_GOOD), content_of(2), _PLAN)
    assert arrays["silent"].shape == (2, 2)


def test_decode_statistics_never_unpickles():
    payload = pickle.dumps(np.zeros(3))
    with pytest.raises(ValueError):
        grid_images.decode_statistics(payload, content_of(1), _PLAN)


# ---------------------------------------------------------------- probe pictures


@st.composite
def probe_samples(draw):
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    shape = draw(st.sampled_from([(height, width), (height, width, 1), (height, width, 3),
                                  (height, width, 4)]))
    return draw(arrays_of_any_dtype(shape))


@hypothesis.given(probe_samples())
@hypothesis.settings(max_examples=150, deadline=None)
def test_probe_picture(sample):
    assert grid_images.is_image_like(sample.shape)
    picture = grid_images.probe_picture(sample)
    expected_shape = sample.shape[:2] if sample.ndim == 2 or sample.shape[2] == 1 else sample.shape
    assert picture.dtype == np.uint8 and picture.shape == expected_shape
    data = sample[:, :, 0] if sample.ndim == 3 and sample.shape[2] == 1 else sample
    if sample.dtype == np.uint8:
        np.testing.assert_array_equal(picture, data)
        return
    values = data.astype(np.float64)
    finite = np.isfinite(values)
    assert np.all(picture[~finite] == 0)  # non-finite pixels are black
    if finite.any():
        low, high = values[finite].min(), values[finite].max()
        if high > low:
            assert picture[finite][values[finite] == low].max() == 0
            assert picture[finite][values[finite] == high].min() == 255
            order = np.argsort(values[finite], kind="stable")
            assert np.all(np.diff(picture[finite][order].astype(int)) >= 0)  # monotone
        else:
            assert np.all(picture == 0)
    assert grid_images.decode_png(grid_images.encode_png(picture)).shape == expected_shape


@pytest.mark.parametrize("shape, image_like", [
    ((28, 28), True), ((28, 28, 1), True), ((28, 28, 3), True), ((28, 28, 4), True),
    ((28, 28, 2), False), ((28,), False), ((4, 28, 28, 1), False), ((), False)])
def test_is_image_like(shape, image_like):
    assert grid_images.is_image_like(shape) == image_like


@hypothesis.given(height=st.integers(1, 70), width=st.integers(1, 70), colour=st.booleans(),
                  max_side=st.integers(1, 40))
def test_probe_pictures_are_bounded_by_max_image(height, width, colour, max_side):
    sample = np.random.default_rng(height * 71 + width).uniform(
        -1, 1, (height, width, 3) if colour else (height, width))
    picture = grid_images.probe_picture(sample, max_side)
    factor = -(-max(height, width) // max_side)
    assert picture.shape[:2] == (-(-height // factor), -(-width // factor))
    assert max(picture.shape[:2]) <= max_side
    assert picture.shape[2:] == sample.shape[2:]
    full = grid_images.probe_picture(sample, max(height, width)).astype(np.float64)
    if height >= factor and width >= factor:  # a whole block: its plain mean
        assert abs(float(picture[0, 0].mean()) - full[:factor, :factor].mean()) <= 0.5 + 1e-9


def test_a_large_probe_is_stored_at_max_image(tmp_path):
    import tensorflow as tf
    import keras
    from tb_activations.keras import log

    model = keras.Sequential([keras.Input((512, 512, 3)), keras.layers.Conv2D(2, 3, name="c")])
    photos = np.random.default_rng(0).uniform(0, 1, (4, 512, 512, 3)).astype(np.float32)
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        log.log_activations(model, photos, step=0, max_image=128)
    from tests.test_writer import written
    (probe,) = [value for value in written(tmp_path) if value.tag.startswith("activations_probe")]
    assert [grid_images.decode_png(png).shape for png in probe.blobs] == [(128, 128, 3)] * 4
    assert sum(map(len, probe.blobs)) < 4 * 128 * 128 * 3 * 1.1


# ---------------------------------------------------------------- two render threads


@hypothesis.given(st.lists(st.integers(), max_size=20))
@hypothesis.settings(max_examples=40, deadline=None)
def test_map_on_two_threads_keeps_the_order_and_uses_a_second_thread(items):
    threads = {}

    def square(item):
        threads.setdefault(threading.get_ident(), []).append(item)
        return item * item

    assert steps_lib.map_on_two_threads(square, items) == [item * item for item in items]
    assert len(threads) == min(len(items), 2)
    assert sorted(sum(threads.values(), [])) == sorted(items)


@pytest.mark.parametrize("samples", [1, steps_lib.TWO_THREAD_SAMPLES])
def test_a_step_renders_on_two_threads_from_enough_probe_samples(samples):
    """Fewer samples: every layer on the calling thread (two threads would wait for each
    other's GIL); enough: on two, the step's tags in order either way."""
    single = numpy_capture(samples)
    (record,) = single.records
    reduced = single.reduce()[record.path]
    records = [record._replace(path="layer%d" % index, order=index) for index in range(4)]
    captured = types.SimpleNamespace(records=records, options=single.options,
                                     reduce=lambda: {each.path: reduced for each in records})
    threads = set()
    render_layer = grid_images.render_layer

    def recording(*args, **kwargs):
        threads.add(threading.get_ident())
        return render_layer(*args, **kwargs)

    with mock.patch.object(grid_images, "render_layer", recording):
        rendered = steps_lib.render_capture(captured)
    assert len(threads) == (1 if samples < steps_lib.TWO_THREAD_SAMPLES else 2)
    assert [tag for tag, _, _ in rendered] == [metadata.layer_tag(each.path) for each in records
                                               ] + [metadata.OVERVIEW_TAG]


@pytest.mark.parametrize("failing", [0, 1])  # on the calling thread, on the helper
def test_map_on_two_threads_raises_what_either_thread_raised(failing):
    def render(item):
        if item == failing:
            raise ValueError("item %d cannot be rendered" % item)
        return item

    with pytest.raises(ValueError, match="item %d cannot" % failing):
        steps_lib.map_on_two_threads(render, range(4))
