"""Reduction of a layer output to what its grid needs, in torch ops on the tensor's device.

The same arrays, to float32 rounding, as tb_activations.tensorflow.reduction computes, so
the render stage takes either; only the reductions are copied to the host (a GPU model's
layer outputs never leave the GPU). Knows nothing of modules: it takes a tensor and its
layout.LayerLayout, so any capture that holds torch tensors (plain PyTorch, Keras 3 on its
torch backend) can use it.
"""

import torch

from tb_activations.format.metadata import STAT_FIELDS

PACKBITS_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def channels_first_form(x, plan):
    """`x` as float32 (batch, channels) + positions, where plan.canonical_shape is positions +
    (channels,): torch reduces the last axes fastest and pools NCHW natively, so a channels-
    first output (the usual one in torch) is reduced where it lies, without a transpose."""
    x = x.to(torch.float32)
    batch = x.shape[0]
    if plan.channels_first:
        return x.reshape((batch, plan.channels_total) + plan.canonical_shape[:-1])
    return x.reshape((batch,) + plan.canonical_shape).movedim(-1, 1).contiguous()


def _masked_moments(x):
    """(min, max, mean, std) of (batch, channels, positions) over finite values only, NaN
    where a channel has none."""
    finite = torch.isfinite(x)
    count = finite.sum(dim=-1, dtype=torch.float32)
    inf = torch.tensor(float("inf"), device=x.device)
    low = torch.where(finite, x, inf).amin(dim=-1)
    high = torch.where(finite, x, -inf).amax(dim=-1)
    mean = torch.where(finite, x, 0.0).sum(dim=-1) / count.clamp(min=1.0)
    centred = torch.where(finite, x - mean[..., None], 0.0)
    std = torch.sqrt(centred.square().sum(dim=-1) / count.clamp(min=1.0))
    empty = count == 0
    return [v.masked_fill(empty, float("nan")) for v in (low, high, mean, std)]


def channel_statistics(x, finite_only=False):
    """(batch, channels, 7) statistics of x (batch, channels, *positions) over its positions,
    fields as metadata.STAT_FIELDS; `finite_only` as in
    tb_activations.tensorflow.reduction.channel_statistics (plain reductions are exact while
    every value is finite). Mean then squared deviations, as tf.nn.moments: torch.var_mean's
    one-pass kernel took 2-5x longer on CPU (and torch.aminmax longer than amin + amax)."""
    x = x.reshape(x.shape[0], x.shape[1], -1)
    positions = x.shape[-1]
    zeros = (x == 0).sum(dim=-1, dtype=torch.int32)  # 5x faster than count_nonzero
    zero_fraction = zeros.to(torch.float32) / positions
    if finite_only:
        moments = _masked_moments(x)
        counts = [torch.isnan(x).sum(dim=-1, dtype=torch.float32),
                  torch.isinf(x).sum(dim=-1, dtype=torch.float32)]
    else:
        mean = x.mean(dim=-1)
        std = (x - mean[..., None]).square().mean(dim=-1).sqrt()
        moments = [x.amin(dim=-1), x.amax(dim=-1), mean, std]
        counts = [torch.zeros_like(mean)] * 2
    return torch.stack(moments + [zero_fraction] + counts, dim=-1)


def layer_statistics(stats, positions):
    """(batch, 7) statistics over every unit of each sample, from channel_statistics' of
    every channel (each over `positions` values): a channel's finite values weigh by their
    count, the variance is the channels' mean variance plus the variance of their means."""
    low, high, mean, std, zero_fraction, nan_count, inf_count = stats.unbind(dim=-1)
    finite = positions - nan_count - inf_count
    total = finite.sum(dim=-1)
    weights = finite / total.clamp(min=1.0)[:, None]
    has = finite > 0
    layer_mean = (torch.where(has, mean, 0.0) * weights).sum(dim=-1)
    spread = std.square() + (mean - layer_mean[:, None]).square()
    layer_std = (torch.where(has, spread, 0.0) * weights).sum(dim=-1).sqrt()
    inf = torch.tensor(float("inf"), device=stats.device)
    layer_low = torch.where(has, low, inf).amin(dim=-1)
    layer_high = torch.where(has, high, -inf).amax(dim=-1)
    empty = total == 0
    moments = [v.masked_fill(empty, float("nan"))
               for v in (layer_low, layer_high, layer_mean, layer_std)]
    return torch.stack(moments + [zero_fraction.mean(dim=-1), nan_count.sum(dim=-1),
                                  inf_count.sum(dim=-1)], dim=-1)


def silent_bits(stats):
    """(batch, ceil(channels / 8)) uint8 from channel_statistics' of every channel: bit c,
    in np.packbits order, set where channel c is all zeros in that sample."""
    batch, channels = stats.shape[:2]
    zero_fraction = stats[..., STAT_FIELDS.index("zero_fraction")]
    silent = (zero_fraction == 1.0).to(torch.int32)
    padded = torch.nn.functional.pad(silent, (0, -channels % 8))
    weights = torch.tensor(PACKBITS_WEIGHTS, dtype=torch.int32, device=stats.device)
    return (padded.reshape(batch, -1, 8) * weights).sum(dim=-1).to(torch.uint8)


def finite_range(x):
    """(batch, 2) min and max of each sample's finite values (NaN if it has none)."""
    flat = x.reshape(x.shape[0], -1)
    finite = torch.isfinite(flat)
    inf = torch.tensor(float("inf"), device=x.device)
    low = torch.where(finite, flat, inf).amin(dim=1)
    high = torch.where(finite, flat, -inf).amax(dim=1)
    empty = ~finite.any(dim=1)
    return torch.stack([low, high], dim=-1).masked_fill(empty[:, None], float("nan"))


def mirror_pad_end(x, axis, amount):
    """`x` padded at the end of `axis` by its mirror image, edge included (TensorFlow's
    SYMMETRIC), again and again while `amount` exceeds the axis."""
    while amount > 0:
        step = min(amount, x.shape[axis])
        tail = x.narrow(axis, x.shape[axis] - step, step).flip(axis)
        x = torch.cat([x, tail], dim=axis)
        amount -= step
    return x


def area_downscale(x, factor_rows, factor_columns):
    """(N, C, H, W) averaged over factor-sized blocks of H x W; the last partial blocks are
    completed by mirroring the edge, so every output pixel is the mean of a full block."""
    if factor_rows == 1 and factor_columns == 1:
        return x
    x = mirror_pad_end(x, 2, -x.shape[2] % factor_rows)
    x = mirror_pad_end(x, 3, -x.shape[3] % factor_columns)
    factors = (factor_rows, factor_columns)
    return torch.nn.functional.avg_pool2d(x, kernel_size=factors, stride=factors)


def select_channels(x, plan, options):
    """(int32 indices of the kept channels, x (batch, channels, ...) restricted to them):
    "first" slices; "top" ranks channels by mean |activation| over the probe, non-finite
    values counted as 0."""
    if options.channel_selection == "first":
        indices = torch.arange(plan.channels_kept, dtype=torch.int32, device=x.device)
        return indices, x[:, :plan.channels_kept]
    magnitude = x.reshape(x.shape[0], plan.channels_total, -1).abs()
    score = torch.where(torch.isfinite(magnitude), magnitude, 0.0).mean(dim=(0, 2))
    indices = torch.topk(score, k=plan.channels_kept, sorted=True).indices
    return indices.to(torch.int32), x.index_select(1, indices)


def reduce_layer_output(x, plan, options, finite_only=False):
    """{stats, tiles, ranges, channels, units, layer, silent} of one layer output (a torch
    tensor, batch first) laid out as `plan` says, as torch tensors on x's device: shapes and
    dtypes as tb_activations.tensorflow.reduction.reduce_layer_output documents."""
    x = channels_first_form(x, plan)
    batch = x.shape[0]
    every = channel_statistics(x, finite_only)
    layer = layer_statistics(every, x[0, 0].numel())
    silent = silent_bits(every)
    channels, picked = select_channels(x, plan, options)
    stats = every.index_select(1, channels)
    if plan.layout == "channels":
        tiles = area_downscale(picked, *plan.downscale)
        ranges = stats[..., :2]
    elif plan.layout == "volume":
        depth = len(plan.depth_slices)
        slices = torch.tensor(plan.depth_slices, device=x.device)
        sliced = picked.index_select(2, slices)
        shown, height, width = sliced.shape[1], sliced.shape[3], sliced.shape[4]
        tiles = area_downscale(sliced.reshape(batch, shown * depth, height, width),
                               *plan.downscale)
        ranges = stats[..., :2].repeat_interleave(depth, dim=1)
    elif plan.layout == "sequence":
        tiles = area_downscale(x.transpose(1, 2)[:, None], *plan.downscale)
        ranges = finite_range(x)[:, None, :]
    else:
        (group,) = plan.downscale
        cells = plan.tile_height * plan.tile_width
        grouped = area_downscale(x[:, None, None, :], 1, group)[:, 0, 0]
        padded = torch.nn.functional.pad(grouped, (0, cells - grouped.shape[1]))
        tiles = padded.reshape(-1, 1, plan.tile_height, plan.tile_width)
        ranges = finite_range(x)[:, None, :]
    return {"stats": stats, "tiles": tiles.contiguous(), "ranges": ranges,
            "channels": channels, "units": channels, "layer": layer, "silent": silent}


def to_host(reduced):
    """The reduced arrays of reduce_layer_output as numpy: the one copy off the device."""
    return {key: value.cpu().numpy() for key, value in reduced.items()}
