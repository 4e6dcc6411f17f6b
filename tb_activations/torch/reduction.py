"""Reduction of a layer output to what its grid needs, in torch ops on the tensor's device.

The same arrays, to float32 rounding, as tb_activations.reduction (TensorFlow) computes, so
the render stage takes either; only the reductions are copied to the host (a GPU model's
layer outputs never leave the GPU). Knows nothing of modules: it takes a tensor and its
layout.LayerLayout, so any capture that holds torch tensors (plain PyTorch, Keras 3 on its
torch backend) can use it.
"""

import torch

PACKBITS_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def canonical(x, plan):
    """`x` as float32 of shape (batch,) + plan.canonical_shape (channels last)."""
    x = x.to(torch.float32)
    if plan.channels_first:
        x = x.movedim(1, -1)
    return x.reshape((-1,) + plan.canonical_shape)


def _masked_statistics(x, zero_fraction):
    """Statistics of (batch, positions, channels) over finite values only."""
    finite = torch.isfinite(x)
    count = finite.sum(dim=1, dtype=torch.float32)
    safe_count = count.clamp(min=1.0)
    inf = torch.tensor(float("inf"), device=x.device)
    low = torch.where(finite, x, inf).amin(dim=1)
    high = torch.where(finite, x, -inf).amax(dim=1)
    mean = torch.where(finite, x, 0.0).sum(dim=1) / safe_count
    centred = torch.where(finite, x - mean[:, None, :], 0.0)
    std = torch.sqrt(centred.square().sum(dim=1) / safe_count)
    empty = count == 0
    low, high, mean, std = (v.masked_fill(empty, float("nan")) for v in (low, high, mean, std))
    nan_count = torch.isnan(x).sum(dim=1, dtype=torch.float32)
    inf_count = torch.isinf(x).sum(dim=1, dtype=torch.float32)
    return torch.stack([low, high, mean, std, zero_fraction, nan_count, inf_count], dim=-1)


def channel_statistics(x, finite_only=False):
    """(batch, channels, 7) statistics over every axis but the first and last, fields as
    metadata.STAT_FIELDS; `finite_only` as in tb_activations.reduction.channel_statistics
    (plain reductions are exact while every value is finite)."""
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    zero_fraction = (x == 0).to(torch.float32).mean(dim=1)
    if finite_only:
        return _masked_statistics(x, zero_fraction)
    variance, mean = torch.var_mean(x, dim=1, correction=0)
    zeros = torch.zeros_like(mean)
    return torch.stack([x.amin(dim=1), x.amax(dim=1), mean, variance.sqrt(), zero_fraction,
                        zeros, zeros], dim=-1)


def silent_bits(x):
    """(batch, ceil(channels / 8)) uint8 of x (batch, positions, channels): bit c, in
    np.packbits order, set where channel c is all zeros in that sample."""
    batch, channels = x.shape[0], x.shape[-1]
    silent = (x == 0).all(dim=1).to(torch.int32)
    padded = torch.nn.functional.pad(silent, (0, -channels % 8))
    weights = torch.tensor(PACKBITS_WEIGHTS, dtype=torch.int32, device=x.device)
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
    """(N, H, W, C) averaged over factor-sized blocks; the last partial blocks are completed
    by mirroring the edge, so every output pixel is the mean of a full block."""
    if factor_rows == 1 and factor_columns == 1:
        return x
    count, height, width, channels = x.shape
    rows = -(-height // factor_rows)
    columns = -(-width // factor_columns)
    x = mirror_pad_end(x, 1, rows * factor_rows - height)
    x = mirror_pad_end(x, 2, columns * factor_columns - width)
    blocks = x.reshape(count, rows, factor_rows, columns, factor_columns, channels)
    return blocks.mean(dim=(2, 4))


def select_channels(x, plan, options):
    """(int32 indices of the kept channels, x restricted to them): "first" slices; "top"
    ranks channels by mean |activation| over the probe, non-finite values counted as 0."""
    if options.channel_selection == "first":
        indices = torch.arange(plan.channels_kept, dtype=torch.int32, device=x.device)
        return indices, x[..., :plan.channels_kept]
    magnitude = x.reshape(-1, plan.channels_total).abs()
    score = torch.where(torch.isfinite(magnitude), magnitude, 0.0).mean(dim=0)
    indices = torch.topk(score, k=plan.channels_kept, sorted=True).indices
    return indices.to(torch.int32), x.index_select(-1, indices)


def reduce_layer_output(x, plan, options, finite_only=False):
    """{stats, tiles, ranges, channels, units, layer, silent} of one layer output (a torch
    tensor, batch first) laid out as `plan` says, as torch tensors on x's device: shapes and
    dtypes as tb_activations.reduction.reduce_layer_output documents."""
    x = canonical(x, plan)
    batch = x.shape[0]
    layer = channel_statistics(x.reshape(batch, -1, 1), finite_only)[:, 0]
    silent = silent_bits(x.reshape(batch, -1, plan.channels_total))
    channels, picked = select_channels(x, plan, options)
    stats = channel_statistics(picked, finite_only)
    if plan.layout == "channels":
        tiles = area_downscale(picked, *plan.downscale).permute(0, 3, 1, 2)
        ranges = stats[..., :2]
    elif plan.layout == "volume":
        depth = len(plan.depth_slices)
        slices = torch.tensor(plan.depth_slices, device=x.device)
        sliced = picked.index_select(1, slices)
        _, _, height, width, shown = sliced.shape
        small = area_downscale(sliced.reshape(-1, height, width, shown), *plan.downscale)
        small = small.reshape(-1, depth, plan.tile_height, plan.tile_width, shown)
        tiles = small.permute(0, 4, 1, 2, 3).reshape(
            -1, shown * depth, plan.tile_height, plan.tile_width)
        ranges = stats[..., :2].repeat_interleave(depth, dim=1)
    elif plan.layout == "sequence":
        tiles = area_downscale(x[..., None], *plan.downscale)[:, None, :, :, 0]
        ranges = finite_range(x)[:, None, :]
    else:
        (group,) = plan.downscale
        cells = plan.tile_height * plan.tile_width
        grouped = area_downscale(x[:, None, :, None], 1, group)[:, 0, :, 0]
        padded = torch.nn.functional.pad(grouped, (0, cells - grouped.shape[1]))
        tiles = padded.reshape(-1, 1, plan.tile_height, plan.tile_width)
        ranges = finite_range(x)[:, None, :]
    return {"stats": stats, "tiles": tiles.contiguous(), "ranges": ranges,
            "channels": channels, "units": channels, "layer": layer, "silent": silent}


def to_host(reduced):
    """The reduced arrays of reduce_layer_output as numpy: the one copy off the device."""
    return {key: value.cpu().numpy() for key, value in reduced.items()}
