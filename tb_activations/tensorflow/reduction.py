"""In-graph reduction of a layer output to what its grid needs, before anything leaves TF.

Per-unit statistics cover the kept units (at most max_channels, at full resolution); the
layer-level statistics and the silent-unit bits cover every unit. Only those and the selected
channels, downscaled, cross into numpy. That keeps the copy out of TensorFlow small (the
training thread's cost) and the event files bounded by the caps. The numpy side
(rendering.py) only quantizes and places tiles.
"""

import math

import tensorflow as tf


def canonical(x, plan):
    """`x` as float32 of shape (batch,) + plan.canonical_shape (channels last)."""
    x = tf.cast(x, tf.float32)
    if plan.channels_first:
        rank = len(x.shape)
        x = tf.transpose(x, [0] + list(range(2, rank)) + [1])
    return tf.reshape(x, (-1,) + plan.canonical_shape)


def _masked_statistics(x, zero_fraction):
    """Statistics of (batch, positions, channels) over finite values only."""
    finite = tf.math.is_finite(x)
    count = tf.reduce_sum(tf.cast(finite, tf.float32), axis=1)
    safe_count = tf.maximum(count, 1.0)
    infinity = tf.constant(float("inf"))
    low = tf.reduce_min(tf.where(finite, x, infinity), axis=1)
    high = tf.reduce_max(tf.where(finite, x, -infinity), axis=1)
    mean = tf.reduce_sum(tf.where(finite, x, 0.0), axis=1) / safe_count
    centred = tf.where(finite, x - mean[:, None, :], 0.0)
    std = tf.sqrt(tf.reduce_sum(tf.square(centred), axis=1) / safe_count)
    nan = tf.constant(float("nan"))
    empty = count == 0
    low, high, mean, std = (tf.where(empty, nan, v) for v in (low, high, mean, std))
    nan_count = tf.reduce_sum(tf.cast(tf.math.is_nan(x), tf.float32), axis=1)
    inf_count = tf.reduce_sum(tf.cast(tf.math.is_inf(x), tf.float32), axis=1)
    return tf.stack([low, high, mean, std, zero_fraction, nan_count, inf_count], axis=-1)


# Up to this many positions a unit's zero count is read off the Euclidean norm of sign(x):
# the float32 sum of its squares is an exact integer below 2**24, and the square of its
# rounded root is within n * 3 * 2**-24 < 0.2 of it. Past it, values are compared with 0.
SIGN_COUNT_LIMIT = 1 << 20


def zero_counts(x, finite_only=False):
    """(batch, channels) int32 exact zero counts of x (batch, positions, channels).

    Counting by comparison makes a bool and an int copy of x; the norm of sign(x) makes
    one float copy (-0.0 counts as zero either way). The sign of NaN is NaN, so
    `finite_only` (where NaN may be present) compares.
    """
    positions = x.shape[1]
    if finite_only or positions is None or positions > SIGN_COUNT_LIMIT:
        return tf.reduce_sum(tf.cast(tf.equal(x, 0.0), tf.int32), axis=1)
    nonzero = tf.math.reduce_euclidean_norm(tf.sign(x), axis=1)
    return positions - tf.cast(tf.round(tf.square(nonzero)), tf.int32)


def unit_statistics(x, finite_only=False):
    """((batch, channels, 7) statistics, (batch, channels) int32 zero counts) of x (batch,
    positions, channels), over the positions. The exact zero counts give the silent units.

    Order as metadata.STAT_FIELDS. By default plain reductions, exact while every value is
    finite (any NaN or Inf makes its channel's mean non-finite, which the caller checks).
    `finite_only=True` masks: min, max, mean and std over finite values only, NaN where a
    channel has none, NaN and Inf counted apart. It is several times slower and is kept out
    of the usual graph: a conditional in the graph would double its size and its trace time.
    """
    zeros = zero_counts(x, finite_only)
    positions = x.shape[1] or tf.shape(x)[1]
    # A graph divides by a constant as a product with its reciprocal: 121 / 121 gave
    # 0.99999994, and a unit with no value but zeros was not read as silent.
    zero_fraction = tf.where(zeros == positions, 1.0,
                             tf.cast(zeros, tf.float32) / tf.cast(positions, tf.float32))
    if finite_only:
        return _masked_statistics(x, zero_fraction), zeros
    mean, variance = tf.nn.moments(x, axes=[1])
    empty = tf.zeros_like(mean)
    return tf.stack([tf.reduce_min(x, axis=1), tf.reduce_max(x, axis=1), mean,
                     tf.sqrt(variance), zero_fraction, empty, empty], axis=-1), zeros


def channel_statistics(x, finite_only=False):
    """(batch, channels, 7) statistics over every axis but the first and last (as
    unit_statistics)."""
    batch, channels = tf.shape(x)[0], x.shape[-1]
    return unit_statistics(tf.reshape(x, [batch, -1, channels]), finite_only)[0]


def pooled_statistics(stats, positions):
    """(batch, 7) statistics over every unit, from each unit's row of `stats` (batch, units,
    7), every unit having `positions` values: the extremes of the rows', counts summed,
    mean and variance pooled in float64 over the finite values of each unit (the variance is
    the mean variance within units plus the variance of their means, so no pass over the
    layer output is needed beyond the units' own).

    A non-finite unit mean without NaN/Inf counts (plain statistics of a non-finite output)
    stays non-finite in the pooled mean, so the caller still sees it.
    """
    low, high, mean, std, zero_fraction, nan_count, inf_count = tf.unstack(
        tf.cast(stats, tf.float64), axis=-1)
    count = positions - nan_count - inf_count
    total = tf.reduce_sum(count, axis=1)
    used = count > 0
    weight = count / tf.maximum(total, 1.0)[:, None]
    mean_used = tf.where(used, mean, 0.0)
    pooled_mean = tf.reduce_sum(weight * mean_used, axis=1)
    spread = tf.where(used, tf.square(std) + tf.square(mean_used - pooled_mean[:, None]), 0.0)
    pooled_std = tf.sqrt(tf.reduce_sum(weight * spread, axis=1))
    infinity = tf.constant(float("inf"), tf.float64)
    pooled_low = tf.reduce_min(tf.where(used, low, infinity), axis=1)
    pooled_high = tf.reduce_max(tf.where(used, high, -infinity), axis=1)
    empty = total == 0
    nan = tf.constant(float("nan"), tf.float64)
    pooled = [tf.where(empty, nan, value)
              for value in (pooled_low, pooled_high, pooled_mean, pooled_std)]
    counts = [tf.reduce_mean(zero_fraction, axis=1), tf.reduce_sum(nan_count, axis=1),
              tf.reduce_sum(inf_count, axis=1)]
    return tf.cast(tf.stack(pooled + counts, axis=-1), tf.float32)


def plain_pooled_statistics(stats):
    """pooled_statistics of the plain (not finite_only) statistics, in a quarter of the ops (a
    MobileNetV2 step's 151 layers spent ~20 ms on pooled_statistics' small ops): there every
    unit counts all its positions and no NaN or Inf, so the units weigh alike; a non-finite
    unit mean still makes the pooled mean non-finite."""
    low, high, mean, std, zero_fraction, _, empty = tf.unstack(
        tf.cast(stats, tf.float64), axis=-1)
    pooled_mean = tf.reduce_mean(mean, axis=1)
    spread = tf.square(std) + tf.math.squared_difference(mean, pooled_mean[:, None])
    return tf.cast(tf.stack(
        [tf.reduce_min(low, axis=1), tf.reduce_max(high, axis=1), pooled_mean,
         tf.sqrt(tf.reduce_mean(spread, axis=1)), tf.reduce_mean(zero_fraction, axis=1),
         empty[:, 0], empty[:, 0]], axis=-1), tf.float32)


def silent_bits(silent):
    """(batch, ceil(channels / 8)) uint8 of a (batch, channels) bool: bit c, in np.packbits
    order, set where channel c is silent (all zeros) in that sample (exact for every
    channel, however many; 100,000 units are 12.5 KB a sample)."""
    batch, channels = tf.shape(silent)[0], silent.shape[-1]
    padded = tf.pad(tf.cast(silent, tf.int32), [[0, 0], [0, -channels % 8]])
    weights = tf.constant([128, 64, 32, 16, 8, 4, 2, 1], tf.int32)
    return tf.cast(tf.reduce_sum(tf.reshape(padded, [batch, -1, 8]) * weights, axis=-1),
                   tf.uint8)


def finite_range(x):
    """(batch, 2) min and max of each sample's finite values (NaN if it has none)."""
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    finite = tf.math.is_finite(flat)
    infinity = tf.constant(float("inf"))
    low = tf.reduce_min(tf.where(finite, flat, infinity), axis=1)
    high = tf.reduce_max(tf.where(finite, flat, -infinity), axis=1)
    empty = tf.logical_not(tf.reduce_any(finite, axis=1))
    nan = tf.constant(float("nan"))
    return tf.stack([tf.where(empty, nan, low), tf.where(empty, nan, high)], axis=-1)


def mirror_pad_end(x, axis, amount):
    """`x` padded by mirroring at the end of `axis`, again and again if `amount` exceeds the
    axis (a 1 x 100 map downscaled by 4 needs 3 more rows: tf.pad mirrors at most the size)."""
    while amount > 0:
        step = min(amount, x.shape[axis])
        paddings = [[0, 0]] * len(x.shape)
        paddings[axis] = [0, step]
        x = tf.pad(x, paddings, mode="SYMMETRIC")
        amount -= step
    return x


def area_downscale(x, factor_rows, factor_columns):
    """(N, H, W, C) averaged over factor-sized blocks; the last partial blocks are completed
    by mirroring the edge, so every output pixel is the mean of a full block."""
    if factor_rows == 1 and factor_columns == 1:
        return x
    _, height, width, _ = x.shape
    rows = -(-height // factor_rows)
    columns = -(-width // factor_columns)
    x = mirror_pad_end(x, 1, rows * factor_rows - height)
    x = mirror_pad_end(x, 2, columns * factor_columns - width)
    factors = [factor_rows, factor_columns]
    return tf.nn.avg_pool2d(x, ksize=factors, strides=factors, padding="VALID")


def select_channels(x, plan, options):
    """(indices of the kept channels, x restricted to them): the drawn ones of a tiled
    layout, the units with their own statistics of any layout.

    "first" slices, which costs far less than a gather over every channel; "top" ranks
    channels by mean |activation| over the probe.
    """
    if options.channel_selection == "first":
        kept = plan.channels_kept
        return (tf.range(kept, dtype=tf.int32),
                x if kept == plan.channels_total else x[..., :kept])
    magnitude = tf.abs(tf.reshape(x, [-1, plan.channels_total]))
    score = tf.reduce_mean(tf.where(tf.math.is_finite(magnitude), magnitude, 0.0), axis=0)
    indices = tf.cast(tf.math.top_k(score, k=plan.channels_kept, sorted=True).indices, tf.int32)
    return indices, tf.gather(x, indices, axis=-1)


def downscaled_channels(x, picked, channels, plan, options):
    """The kept channels (`picked`, indices `channels`, of x (N, H, W, C)) area-downscaled.
    Where they are a third of the channels or more, every channel is downscaled and the
    kept ones taken from the small copy: one pass over x instead of a copy of the kept
    channels at full size and a pass over it (the same values: each channel is averaged
    on its own)."""
    if plan.downscale == (1, 1) or 3 * plan.channels_kept < plan.channels_total:
        return area_downscale(picked, *plan.downscale)
    small = area_downscale(x, *plan.downscale)
    if options.channel_selection == "first":
        return small[..., :plan.channels_kept] if picked is not x else small
    return tf.gather(small, channels, axis=-1)


def reduce_layer_output(x, plan, options, finite_only=False, tiles_last=False):
    """{stats, tiles, ranges, channels, units, layer, silent} of one layer output, laid out as
    `plan` says.

    `finite_only` as in unit_statistics. `tiles_last`: a channels layout's tiles left as
    (batch, tile_height, tile_width, tiles), as avg_pool gives them, for the host to view in
    grid order (keras_probe.reduced_to_numpy) instead of a transpose per layer here.

    stats: (batch, plan.channels_kept, 7) of the kept units, whose indices are `channels`
    (also the drawn channel of each tile, or grid row, of a tiled layout) and `units`;
    tiles: (batch, plan.tiles, tile_height, tile_width) float32, in grid order;
    ranges: (batch, plan.tiles, 2) the finite min/max each tile is scaled by;
    layer: (batch, 7) the statistics over every unit of each sample;
    silent: silent_bits over every unit.
    """
    x = canonical(x, plan)
    positions = math.prod(plan.canonical_shape[:-1])
    every, zeros = unit_statistics(
        tf.reshape(x, [-1, positions, plan.channels_total]), finite_only)
    layer = (pooled_statistics(every, positions) if finite_only
             else plain_pooled_statistics(every))
    silent = silent_bits(tf.equal(zeros, positions))
    channels, picked = select_channels(x, plan, options)
    stats = (every[:, :plan.channels_kept] if options.channel_selection == "first"
             else tf.gather(every, channels, axis=1))
    if plan.layout == "channels":
        tiles = downscaled_channels(x, picked, channels, plan, options)
        tiles = tiles if tiles_last else tf.transpose(tiles, [0, 3, 1, 2])
        ranges = stats[..., :2]
    elif plan.layout == "volume":
        depth = len(plan.depth_slices)
        sliced = tf.gather(picked, list(plan.depth_slices), axis=1)
        _, _, height, width, shown = sliced.shape
        small = area_downscale(tf.reshape(sliced, [-1, height, width, shown]), *plan.downscale)
        small = tf.reshape(small, [-1, depth, plan.tile_height, plan.tile_width, shown])
        tiles = tf.reshape(tf.transpose(small, [0, 4, 1, 2, 3]),
                           [-1, shown * depth, plan.tile_height, plan.tile_width])
        ranges = tf.repeat(stats[..., :2], depth, axis=1)
    elif plan.layout == "sequence":
        small = area_downscale(x[..., None], *plan.downscale)
        tiles = small[:, None, :, :, 0]
        ranges = finite_range(x)[:, None, :]
    else:
        (group,) = plan.downscale
        cells = plan.tile_height * plan.tile_width
        grouped = area_downscale(x[:, None, :, None], 1, group)[:, 0, :, 0]
        padded = tf.pad(grouped, [[0, 0], [0, cells - grouped.shape[1]]])
        tiles = tf.reshape(padded, [-1, 1, plan.tile_height, plan.tile_width])
        ranges = finite_range(x)[:, None, :]
    return {"stats": stats, "tiles": tiles, "ranges": ranges, "channels": channels,
            "units": channels, "layer": layer, "silent": silent}
