"""Reduced layer outputs to 8-bit grid PNGs: pure numpy and deflate, no TensorFlow.

Pixel codes follow metadata: finite values scale onto 0..FINITE_MAX_CODE by their tile's
range, NaN/Inf become NONFINITE_CODE, gutters and padding GUTTER_CODE.
"""

import functools
import io
import math
import struct
import threading
import zipfile
import zlib

import numpy as np

from tb_activations.format import metadata
from tb_activations.rendering import deflate

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}
_PNG_CHANNELS = {value: key for key, value in _PNG_COLOUR_TYPES.items()}
_UP_FILTER = 2
# np.load parses .npy headers with ast.literal_eval, and CPython 3.11 (seen on 3.11.7) can raise
# "SystemError: AST constructor recursion depth mismatch" when two threads parse at once
# (python/cpython#106905); TensorBoard answers requests on many threads.
_NPY_HEADER_LOCK = threading.Lock()


def quantize(tiles, ranges):
    """Codes of `tiles` (..., N, h, w) scaled by `ranges` (..., N, 2) = (low, high) each.

    A tile whose range is empty (constant map) or unknown (no finite value) is drawn at 0.
    Finite values go through ((value - low) / span, clipped to [0, 1]) * FINITE_MAX_CODE,
    rounded half to even, in float64; done in place on one float64 copy, which halves the
    writer's time here (MobileNetV2: 13 -> 8 ms a step). A tile without a usable range is
    divided by an infinite span from 0, which gives its finite values 0 without a pass of
    its own, and the subtraction converts to float64 as it goes.
    """
    tiles = np.asarray(tiles)
    ranges = np.asarray(ranges, dtype=np.float64)
    low, high = ranges[..., 0, None, None], ranges[..., 1, None, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        span = high - low
        usable = np.isfinite(span) & (span > 0)
        scaled = np.subtract(tiles, np.where(usable, low, 0.0), dtype=np.float64)
        scaled /= np.where(usable, span, np.inf)
        np.clip(scaled, 0.0, 1.0, out=scaled)
        scaled *= metadata.FINITE_MAX_CODE
        np.rint(scaled, out=scaled)
        codes = scaled.astype(np.uint8)  # NaN where a value is not finite: overwritten next
    np.copyto(codes, metadata.NONFINITE_CODE, where=~np.isfinite(tiles))
    return codes


def tile_feature_maps(codes, plan):
    """(batch, grid_height, grid_width) uint8 grids of quantized tiles (batch, tiles, h, w).

    Tiles fill rows left to right; a 1-pixel gutter separates them and pads the last row.
    A vector layer's cells past its last unit are padding.
    """
    codes = np.asarray(codes, dtype=np.uint8)
    batch, count, height, width = codes.shape
    if (height, width) != (plan.tile_height, plan.tile_width) or count != plan.tiles:
        raise ValueError("tiles of shape %s do not fit the planned %d tiles of %dx%d"
                         % (codes.shape[1:], plan.tiles, plan.tile_height, plan.tile_width))
    if plan.layout == "vector":
        codes = codes.copy()
        cells = -(-plan.channels_total // plan.downscale[0])
        codes.reshape(batch, -1)[:, cells:] = metadata.GUTTER_CODE
    gutter = plan.gutter
    slots = plan.rows * plan.columns
    padded = np.full((batch, slots, height + gutter, width + gutter), metadata.GUTTER_CODE,
                     dtype=np.uint8)
    padded[:, :count, :height, :width] = codes
    grid = padded.reshape(batch, plan.rows, plan.columns, height + gutter, width + gutter)
    grid = grid.transpose(0, 1, 3, 2, 4).reshape(
        batch, plan.rows * (height + gutter), plan.columns * (width + gutter))
    return grid[:, :plan.grid_height, :plan.grid_width]


def _png_chunk(kind, data):
    """A chunk's parts, to be joined (its data not copied: an IDAT is most of a PNG)."""
    return [struct.pack(">I", len(data)), kind, data,
            struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF)]


def encode_png(image, compression=1):
    """PNG bytes of a uint8 (h, w) gray, (h, w, 3) RGB or (h, w, 4) RGBA image.

    Every row uses the Up filter (smooth feature maps compress well with it), which also
    keeps decode_png a vectorised cumulative sum. Level 1: with zlib, on MobileNetV2 it
    encodes ~30% faster than level 6 for 1.3% more bytes. Where zlib deflates, gray images
    (the grids) use its run-length strategy: Up-filtered feature maps are mostly runs of one
    byte, and MobileNetV2's grids encode in 18 ms instead of 32 ms, 3% smaller; colour images
    come out 10% larger with it, so they keep the default strategy (deflate.py).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError("encode_png takes uint8 images, got %s" % image.dtype)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _PNG_COLOUR_TYPES or 0 in image.shape:
        raise ValueError("encode_png takes (h, w), (h, w, 3) or (h, w, 4) images, got shape %s"
                         % (image.shape,))
    height, width, channels = image.shape
    rows = image.reshape(height, width * channels)
    raw = np.empty((height, 1 + width * channels), np.uint8)
    raw[:, 0] = _UP_FILTER
    raw[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=raw[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    data = deflate.deflate(raw, compression, run_length=channels == 1)
    return b"".join([_PNG_SIGNATURE, *_png_chunk(b"IHDR", header), *_png_chunk(b"IDAT", data),
                     *_png_chunk(b"IEND", b"")])


def decode_png(data, max_pixels=None):
    """The uint8 image of a PNG written by encode_png ((h, w) or (h, w, channels)); with
    `max_pixels`, one of more pixels is refused before it is decompressed (and its data is
    inflated no further than its size)."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    position, header, compressed = len(_PNG_SIGNATURE), None, []
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            compressed.append(body)
        position += 12 + length
    if header is None or header[2] != 8 or header[3] not in _PNG_CHANNELS or header[6] != 0:
        raise ValueError("only 8-bit non-interlaced gray/RGB/RGBA PNGs are read here")
    width, height, channels = header[0], header[1], _PNG_CHANNELS[header[3]]
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError("PNG of %dx%d pixels, more than the %d expected"
                         % (width, height, max_pixels))
    inflate = zlib.decompressobj()
    raw = inflate.decompress(b"".join(compressed), height * (1 + width * channels) + 1)
    if len(raw) != height * (1 + width * channels):
        raise ValueError("PNG data does not hold its %dx%d pixels" % (width, height))
    raw = np.frombuffer(raw, dtype=np.uint8)
    raw = raw.reshape(height, 1 + width * channels)
    if np.any(raw[:, 0] != _UP_FILTER):
        raise ValueError("PNG rows use filters other than Up: not written by tb-activations")
    rows = np.cumsum(raw[:, 1:], axis=0, dtype=np.uint64).astype(np.uint8)
    image = rows.reshape(height, width, channels)
    return image[:, :, 0] if channels == 1 else image


def is_image_like(sample_shape):
    """True for (h, w) and (h, w, 1|3|4) inputs, which are stored as pictures."""
    shape = tuple(sample_shape)
    return len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))


def probe_picture(sample, max_side=256):
    """An image-like probe sample as a uint8 picture, min-max scaled over the whole sample,
    area-averaged by a whole factor until its longest side is at most `max_side` (the
    `max_image` cap: a 512x512 photo is stored at 256x256).

    uint8 input is kept as it is; non-finite pixels are drawn black.
    """
    sample = np.asarray(sample)
    if sample.ndim == 3 and sample.shape[2] == 1:
        sample = sample[:, :, 0]
    if sample.dtype == np.uint8:
        picture = sample
    else:
        values = sample.astype(np.float64)
        finite = np.isfinite(values)
        picture = np.zeros(values.shape, np.uint8)
        if finite.any():
            low, high = values[finite].min(), values[finite].max()
            span = high - low if high > low else 1.0
            scaled = np.where(finite, (values - low) / span, 0.0)
            picture = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return area_average(picture, -(-max(picture.shape[:2]) // max_side))


def area_average(picture, factor):
    """A uint8 (h, w[, c]) picture averaged over factor x factor blocks (edge blocks mirrored
    to full size, as reduction.area_downscale does for feature maps)."""
    if factor <= 1:
        return picture
    return np.rint(block_mean(picture[None], factor)[0]).astype(np.uint8)


def block_mean(pictures, factor):
    """float64 means of (n, h, w[, c]) pictures over factor x factor blocks of h x w, edge
    blocks mirrored to full size."""
    height, width = pictures.shape[1:3]
    rows, columns = -(-height // factor), -(-width // factor)
    pad = [(0, 0), (0, rows * factor - height), (0, columns * factor - width)] + [(0, 0)] * (
        pictures.ndim - 3)
    padded = np.pad(pictures.astype(np.float64), pad, mode="symmetric")
    blocks = padded.reshape((len(pictures), rows, factor, columns, factor) + pictures.shape[3:])
    return blocks.mean(axis=(2, 4))


_DEFLATE_FROM_BYTES = 1024
# zipfile's default for ZIP_DEFLATED.
_DEFLATE_LEVEL = 6
_ZIP_VERSION = 20
# As zipfile on Unix: made by a Unix system, each member readable and writable by its owner.
_ZIP_MADE_BY = (3 << 8) | _ZIP_VERSION
_ZIP_MEMBER_MODE = 0o600 << 16
_STORED, _DEFLATED = 0, 8
# 1980-01-01 00:00:00, as DOS date and time: zipfile's default for a member.
_DOS_DATE, _DOS_TIME = (1 << 5) | 1, 0


def encode_statistics(reduced):
    """The statistics blob stored after a step's PNGs (format version 2): an .npz (no
    pickles) of stats (batch, kept, 7), ranges (batch, tiles, 2), channels (kept,), layer
    (batch, 7) and silent (batch, ceil(channels_total / 8)) packed bits."""
    return encode_arrays({"stats": np.asarray(reduced["stats"], np.float32),
                          "ranges": np.asarray(reduced["ranges"], np.float32),
                          "channels": np.asarray(reduced["channels"], np.int32),
                          "layer": np.asarray(reduced["layer"], np.float32),
                          "silent": np.asarray(reduced["silent"], np.uint8)})


def encode_arrays(arrays):
    """An .npz (no pickles) of {name: array}, as np.load reads it."""
    # Arrays under _DEFLATE_FROM_BYTES gain little from a deflate stream of their own.
    return zip_archive([(name + ".npy", _npy_header(array.dtype.str, array.shape)
                         + np.ascontiguousarray(array).tobytes(),
                         array.nbytes >= _DEFLATE_FROM_BYTES)
                        for name, array in arrays.items()])


def zip_archive(members):
    """The bytes of a .zip of [(name, data, deflated)] (byte for byte what zipfile.writestr
    of each member wrote on Unix, read by zipfile and np.load), each member deflated or
    stored as its flag says.

    Written directly: zipfile's per-member bookkeeping was 3/4 of encode_statistics's time
    over MobileNetV2's 150 layers (5 members each).
    """
    local, central = [], []
    offset = 0
    for name, data, deflated in members:
        name = name.encode("ascii")
        crc = zlib.crc32(data)
        method = _DEFLATED if deflated else _STORED
        stored = zlib.compress(data, _DEFLATE_LEVEL, -15) if deflated else data
        fields = struct.pack("<HHHHHIIIH", _ZIP_VERSION, 0, method, _DOS_TIME, _DOS_DATE, crc,
                             len(stored), len(data), len(name))
        local.append(b"PK\x03\x04" + fields + b"\x00\x00" + name + stored)
        central.append(b"PK\x01\x02" + struct.pack("<H", _ZIP_MADE_BY) + fields
                       + struct.pack("<HHHHII", 0, 0, 0, 0, _ZIP_MEMBER_MODE, offset) + name)
        offset += len(local[-1])
    directory = b"".join(central)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(central), len(central),
                                         len(directory), offset, 0)
    return b"".join(local) + directory + end


def decode_arrays(blob, expected, what):
    """{name: array} of an .npz blob (untrusted) holding exactly `expected` {name: (dtype,
    shape)}: the sizes its directory states are checked before anything is decompressed,
    then each array's dtype and shape; ValueError naming `what` otherwise."""
    limit = sum(math.prod(shape) * np.dtype(dtype).itemsize + _NPY_HEADER_BYTES
                for dtype, shape in expected.values())
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError("unreadable %s: %s" % (what, error)) from None
    names = sorted(name + ".npy" for name in expected)
    if sorted(sizes) != names:
        raise ValueError("%s holds %s, expected %s" % (what, sorted(sizes), names))
    if sum(sizes.values()) > limit:
        raise ValueError("%s would decompress to %d bytes, more than the %d its arrays take"
                         % (what, sum(sizes.values()), limit))
    try:
        with _NPY_HEADER_LOCK, np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in expected}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError("unreadable %s: %s" % (what, error)) from None
    for name, (dtype, shape) in expected.items():
        array = arrays[name]
        if array.dtype != np.dtype(dtype) or array.shape != tuple(shape):
            raise ValueError("%s: %s of shape %s and dtype %s, expected shape %s and dtype %s"
                             % (what, name, array.shape, array.dtype, tuple(shape),
                                np.dtype(dtype)))
    return arrays


@functools.lru_cache(maxsize=4096)
def _npy_header(dtype, shape):
    """The .npy header np.save writes for a C-ordered array of this dtype and shape: the
    same every step, and formatting it was a third of encode_statistics's time."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# A version 1 statistics blob decompresses to at most this: a real one holds 7 floats per
# channel and 2 per tile for each sample, far below it; a crafted one could be a
# decompression bomb. A version 2 blob must be exactly the size its layer's content implies.
MAX_STATISTICS_BYTES = 64 << 20
# Room for the .npy headers of a version 2 blob's arrays.
_NPY_HEADER_BYTES = 256


def statistics_shapes(content, layout):
    """{array: shape} a statistics blob of a layer tag must hold: `content` its parsed
    plugin content (samples, format version), `layout` its reader.layer_layout."""
    samples = content["samples"]
    if content["version"] < 2:
        return {"stats": (samples, layout.channels_total, len(metadata.STAT_FIELDS)),
                "ranges": (samples, layout.tiles, 2), "channels": (layout.channels_shown,)}
    return {"stats": (samples, layout.channels_kept, len(metadata.STAT_FIELDS)),
            "ranges": (samples, layout.tiles, 2), "channels": (layout.channels_kept,),
            "layer": (samples, len(metadata.STAT_FIELDS)),
            "silent": (samples, -(-layout.channels_total // 8))}


def statistics_bytes(content, layout):
    """Most bytes a version 2 statistics blob of this layer decompresses to."""
    schema = metadata.STATISTICS_ARRAYS[2]
    return sum(math.prod(shape) * np.dtype(schema[name][0]).itemsize + _NPY_HEADER_BYTES
               for name, shape in statistics_shapes(content, layout).items())


def decode_statistics(blob, content, layout):
    """The arrays of a layer step's statistics blob, checked against the tag's `content` and
    `layout` (as statistics_shapes takes them); ValueError on anything else (the blob is
    untrusted: sizes are checked before anything is decompressed, shapes, dtypes and bits
    after).

    Either version gives stats (samples, rows, 7) whose row r is unit units[r], ranges,
    channels (the drawn channel of each tile or grid row; version 2: the kept units),
    layer (samples, 7) and silent (samples, ceil(channels_total / 8)) as encode_statistics
    stores them; for version 1 the last two are derived from the per-channel statistics.
    """
    version = min(content["version"], 2)
    schema = metadata.STATISTICS_ARRAYS[version]
    shapes = statistics_shapes(content, layout)
    limit = MAX_STATISTICS_BYTES if version < 2 else statistics_bytes(content, layout)
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError("unreadable activations statistics blob: %s" % error) from None
    if sum(sizes.values()) > limit:
        raise ValueError("statistics blob would decompress to %d bytes, more than the %d one "
                         "of this layer may hold" % (sum(sizes.values()), limit))
    try:
        with _NPY_HEADER_LOCK, np.load(io.BytesIO(blob), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in schema}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError("unreadable activations statistics blob: %s" % error) from None
    for key, (dtype, words) in schema.items():
        array, shape = arrays[key], shapes[key]
        fits = array.dtype.kind in dtype if version < 2 else array.dtype == np.dtype(dtype)
        if not fits or array.shape != shape:
            raise ValueError("%s (%s) of shape %s and dtype %s, expected %s of shape %s"
                             % (words, key, array.shape, array.dtype,
                                "float" if dtype == "f" else "integer" if dtype == "iu"
                                else dtype, shape))
    channels = arrays["channels"]
    total = layout.channels_total
    if channels.size and (channels.min() < 0 or channels.max() >= total):
        raise ValueError("%s hold indices outside 0..%d" % (schema["channels"][1], total - 1))
    if version < 2:
        return _derived_statistics(arrays, total)
    if np.unique(channels).size != channels.size:
        raise ValueError("kept units (channels) repeat a unit")
    if total % 8 and np.any(arrays["silent"][:, -1] & (0xFF >> (total % 8))):
        raise ValueError("silent unit bits (silent) set past unit %d" % (total - 1))
    return dict(arrays, units=channels)


def _derived_statistics(arrays, total):
    """A version 1 blob's arrays with those of version 2 derived from its statistics of every
    channel (layer-level std pooled from the channels')."""
    stats = arrays["stats"].astype(np.float64)
    low, high, mean, std, zero, nan, inf = np.moveaxis(stats, -1, 0)
    usable = np.isfinite(mean)
    count = np.maximum(usable.sum(axis=1), 1)
    layer_mean = np.where(usable, mean, 0.0).sum(axis=1) / count
    square = np.where(usable, std ** 2 + mean ** 2, 0.0).sum(axis=1) / count
    layer_std = np.sqrt(np.maximum(square - layer_mean ** 2, 0.0))
    empty = ~usable.any(axis=1)
    layer = np.stack([np.fmin.reduce(low, axis=1), np.fmax.reduce(high, axis=1),
                      np.where(empty, np.nan, layer_mean), np.where(empty, np.nan, layer_std),
                      zero.mean(axis=1), np.nansum(nan, axis=1), np.nansum(inf, axis=1)],
                     axis=-1)
    return dict(arrays, units=np.arange(total, dtype=np.int32), layer=layer.astype(np.float32),
                silent=np.packbits(zero >= 1.0, axis=-1))


def render_layer(reduced, plan, statistics=True):
    """[PNG per probe sample] + [statistics blob]: one step's value for a layer tag
    (without the blob if `statistics` is false)."""
    grids = tile_feature_maps(quantize(reduced["tiles"], reduced["ranges"]), plan)
    pictures = [encode_png(grid) for grid in grids]
    return pictures + [encode_statistics(reduced)] if statistics else pictures
