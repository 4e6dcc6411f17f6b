"""Reduction of a layer output to what its grid needs, in jax.numpy, before anything leaves
the device.

The same arrays, with the same dtypes, as tb_activations.tensorflow.reduction computes, so
the render stage takes either. Knows nothing of layers: it takes an array and its
layout.LayerLayout. Meant to run under jax.jit (shapes come from the plan, so they are
static). Without jax's x64 mode the pooled layer statistics are float32 throughout (TensorFlow
pools in float64); the tests hold both to the same numpy oracle.
"""

import math

import jax
import jax.numpy as jnp


def canonical(x, plan):
    """`x` as float32 of shape (batch,) + plan.canonical_shape (channels last)."""
    x = x.astype(jnp.float32)
    if plan.channels_first:
        x = jnp.moveaxis(x, 1, -1)
    return x.reshape((-1,) + plan.canonical_shape)


def _masked_moments(x):
    """(min, max, mean, std) of (batch, positions, channels) over finite values only, NaN
    where a channel has none."""
    finite = jnp.isfinite(x)
    count = finite.sum(axis=1, dtype=jnp.float32)
    safe_count = jnp.maximum(count, 1.0)
    low = jnp.where(finite, x, jnp.inf).min(axis=1)
    high = jnp.where(finite, x, -jnp.inf).max(axis=1)
    mean = jnp.where(finite, x, 0.0).sum(axis=1) / safe_count
    centred = jnp.where(finite, x - mean[:, None, :], 0.0)
    std = jnp.sqrt(jnp.square(centred).sum(axis=1) / safe_count)
    empty = count == 0
    return [jnp.where(empty, jnp.nan, value) for value in (low, high, mean, std)]


def unit_statistics(x, finite_only=False):
    """((batch, channels, 7) statistics, (batch, channels) int32 zero counts) of x (batch,
    positions, channels) over the positions; `finite_only` as in
    tb_activations.tensorflow.reduction.unit_statistics."""
    zeros = (x == 0).sum(axis=1, dtype=jnp.int32)
    # XLA divides by a constant as a product with its reciprocal (121 / 121 gave 0.99999994):
    # a map of zeros alone must read 1, silent.
    zero_fraction = jnp.where(zeros == x.shape[1], 1.0, zeros.astype(jnp.float32) / x.shape[1])
    if finite_only:
        moments = _masked_moments(x)
        counts = [jnp.isnan(x).sum(axis=1, dtype=jnp.float32),
                  jnp.isinf(x).sum(axis=1, dtype=jnp.float32)]
    else:
        mean = x.mean(axis=1)
        std = jnp.sqrt(jnp.square(x - mean[:, None, :]).mean(axis=1))
        moments = [x.min(axis=1), x.max(axis=1), mean, std]
        counts = [jnp.zeros_like(mean)] * 2
    return jnp.stack(moments + [zero_fraction] + counts, axis=-1), zeros


def channel_statistics(x, finite_only=False):
    """(batch, channels, 7) statistics over every axis but the first and last."""
    return unit_statistics(x.reshape(x.shape[0], -1, x.shape[-1]), finite_only)[0]


def pooled_statistics(stats, positions):
    """(batch, 7) statistics over every unit from each unit's row of `stats` (batch, units,
    7), as tb_activations.tensorflow.reduction.pooled_statistics (here in float32)."""
    low, high, mean, std, zero_fraction, nan_count, inf_count = jnp.moveaxis(stats, -1, 0)
    count = positions - nan_count - inf_count
    total = count.sum(axis=1)
    used = count > 0
    weight = count / jnp.maximum(total, 1.0)[:, None]
    mean_used = jnp.where(used, mean, 0.0)
    pooled_mean = (weight * mean_used).sum(axis=1)
    spread = jnp.where(used, jnp.square(std) + jnp.square(mean_used - pooled_mean[:, None]),
                       0.0)
    pooled_std = jnp.sqrt((weight * spread).sum(axis=1))
    pooled_low = jnp.where(used, low, jnp.inf).min(axis=1)
    pooled_high = jnp.where(used, high, -jnp.inf).max(axis=1)
    empty = total == 0
    pooled = [jnp.where(empty, jnp.nan, value)
              for value in (pooled_low, pooled_high, pooled_mean, pooled_std)]
    counts = [zero_fraction.mean(axis=1), nan_count.sum(axis=1), inf_count.sum(axis=1)]
    return jnp.stack(pooled + counts, axis=-1).astype(jnp.float32)


def silent_bits(silent):
    """(batch, ceil(channels / 8)) uint8 of a (batch, channels) bool, in np.packbits order."""
    return jnp.packbits(silent, axis=-1)


def finite_range(x):
    """(batch, 2) min and max of each sample's finite values (NaN if it has none)."""
    flat = x.reshape(x.shape[0], -1)
    finite = jnp.isfinite(flat)
    low = jnp.where(finite, flat, jnp.inf).min(axis=1)
    high = jnp.where(finite, flat, -jnp.inf).max(axis=1)
    empty = ~finite.any(axis=1)
    return jnp.stack([jnp.where(empty, jnp.nan, low), jnp.where(empty, jnp.nan, high)],
                     axis=-1)


def mirror_pad_end(x, axis, amount):
    """`x` padded by mirroring at the end of `axis`, again and again if `amount` exceeds the
    axis (symmetric padding mirrors at most the axis's size at once)."""
    while amount > 0:
        step = min(amount, x.shape[axis])
        widths = [(0, 0)] * x.ndim
        widths[axis] = (0, step)
        x = jnp.pad(x, widths, mode="symmetric")
        amount -= step
    return x


def area_downscale(x, factor_rows, factor_columns):
    """(N, H, W, C) as the means of factor-sized blocks: each axis is first mirror-padded at
    its end to a multiple of its factor, so no block is partial."""
    for axis, factor in ((1, factor_rows), (2, factor_columns)):
        x = mirror_pad_end(x, axis, -x.shape[axis] % factor)
    count, height, width, channels = x.shape
    return x.reshape(count, height // factor_rows, factor_rows, width // factor_columns,
                     factor_columns, channels).mean(axis=(2, 4))


def select_channels(x, plan, options):
    """(indices of the kept channels, x restricted to them), as
    tb_activations.tensorflow.reduction.select_channels."""
    if options.channel_selection == "first":
        return jnp.arange(plan.channels_kept, dtype=jnp.int32), x[..., :plan.channels_kept]
    magnitude = jnp.abs(x.reshape(-1, plan.channels_total))
    score = jnp.where(jnp.isfinite(magnitude), magnitude, 0.0).mean(axis=0)
    indices = jax.lax.top_k(score, plan.channels_kept)[1].astype(jnp.int32)
    return indices, jnp.take(x, indices, axis=-1)


def reduce_layer_output(x, plan, options, finite_only=False):
    """{stats, tiles, ranges, channels, units, layer, silent} of one layer output, laid out as
    `plan` says: the arrays of tb_activations.tensorflow.reduction.reduce_layer_output."""
    x = canonical(x, plan)
    positions = math.prod(plan.canonical_shape[:-1])
    every, zeros = unit_statistics(x.reshape(x.shape[0], positions, plan.channels_total),
                                   finite_only)
    layer = pooled_statistics(every, positions)
    silent = silent_bits(zeros == positions)
    channels, picked = select_channels(x, plan, options)
    stats = jnp.take(every, channels, axis=1)
    if plan.layout == "channels":
        tiles = jnp.transpose(area_downscale(picked, *plan.downscale), (0, 3, 1, 2))
        ranges = stats[..., :2]
    elif plan.layout == "volume":
        depth = len(plan.depth_slices)
        sliced = jnp.take(picked, jnp.asarray(plan.depth_slices), axis=1)
        _, _, height, width, shown = sliced.shape
        small = area_downscale(sliced.reshape(-1, height, width, shown), *plan.downscale)
        small = small.reshape(-1, depth, plan.tile_height, plan.tile_width, shown)
        tiles = jnp.transpose(small, (0, 4, 1, 2, 3)).reshape(
            -1, shown * depth, plan.tile_height, plan.tile_width)
        ranges = jnp.repeat(stats[..., :2], depth, axis=1)
    elif plan.layout == "sequence":
        tiles = area_downscale(x[..., None], *plan.downscale)[:, None, :, :, 0]
        ranges = finite_range(x)[:, None, :]
    else:
        (group,) = plan.downscale
        cells = plan.tile_height * plan.tile_width
        grouped = area_downscale(x[:, None, :, None], 1, group)[:, 0, :, 0]
        padded = jnp.pad(grouped, ((0, 0), (0, cells - grouped.shape[1])))
        tiles = padded.reshape(-1, 1, plan.tile_height, plan.tile_width)
        ranges = finite_range(x)[:, None, :]
    return {"stats": stats, "tiles": tiles, "ranges": ranges, "channels": channels,
            "units": channels, "layer": layer, "silent": silent}
