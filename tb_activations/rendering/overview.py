"""A layer's step in a few numbers, defined once: sparsity, dead and silent channels, NaN/Inf,
value range. Pure numpy, no TensorFlow.

- sparsity (`zero_fraction`): the fraction of exact zeros, over every channel and sample;
- dead: a channel whose map is all zeros in every probe sample;
- silent: a channel whose map is all zeros in one probe sample (counted per sample);
- `low`/`high`: the finite range of the drawn tiles over every sample (what "all steps"
  scaling spans);
- an attention layer's (`path:attention`) `heads`, per probe sample and head, from the
  full-resolution probabilities: `entropy` (nats, the mean over queries of -sum p log p;
  divide by log(`keys`) for the normalised one), `peak` (the mean over queries of the largest
  probability), `distance` (mean attention distance in patches, null off a patch grid), and
  `dead`: a **dead head** is one whose attention, in every probe sample, is uniform
  (normalised entropy >= DEAD_HEAD_LEVEL) or on one token (peak >= DEAD_HEAD_LEVEL). These
  flags, written once, are what every reader counts (`dead_head_count`): an attention layer's
  and its attention map's "dead" in the tab's overview are its dead heads.

The writer stores these for every layer of a step in one overview blob (tag
`activations_overview`), so the tab's overview of a whole run reads one blob per step instead of
one per layer and step; the series route computes the same numbers from a layer's statistics
(its layer-level statistics and silent bits, which cover every unit however many are kept).
"""

import json
import math

import numpy as np

from tb_activations.format import layout
from tb_activations.format import metadata

SUMMARY_FIELDS = ("zero_fraction", "dead_channels", "silent_channels", "nan_count",
                  "inf_count", "low", "high")
HEAD_FIELDS = ("keys", "entropy", "peak", "distance", "dead")
# An overview blob larger than this was not written by us (150 layers x 64 samples fit).
MAX_OVERVIEW_BYTES = 8 << 20
# A dead head's normalised entropy, or its peak, reaches this in every probe sample.
DEAD_HEAD_LEVEL = 0.99
MAX_HEADS = 4096
MAX_HEAD_SAMPLES = 4096
MAX_KEYS = 1 << 24


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def layer_summary(arrays):
    """The summary of a layer's step from its statistics arrays (a reduced layer output, or
    grid_images.decode_statistics of its blob): the layer-level statistics (samples, fields),
    the silent bits over every unit (samples, bytes) and the tile ranges (samples, tiles, 2)."""
    layer = np.asarray(arrays["layer"], dtype=np.float64)
    silent = np.asarray(arrays["silent"], dtype=np.uint8)
    ranges = np.asarray(arrays["ranges"], dtype=np.float64)
    zero, nan, inf = (metadata.STAT_FIELDS.index(name)
                      for name in ("zero_fraction", "nan_count", "inf_count"))
    dead = np.bitwise_and.reduce(silent, axis=0) if silent.size else silent
    finite = np.isfinite(ranges)
    lows, highs = ranges[..., 0][finite[..., 0]], ranges[..., 1][finite[..., 1]]
    return {
        "zero_fraction": _finite_or_none(np.mean(layer[:, zero])) if layer.size else None,
        "dead_channels": int(np.unpackbits(dead).sum()),
        "silent_channels": [int(count) for count in np.unpackbits(silent, axis=-1).sum(axis=-1)],
        "nan_count": int(np.nansum(layer[:, nan])),
        "inf_count": int(np.nansum(layer[:, inf])),
        "low": _finite_or_none(lows.min()) if lows.size else None,
        "high": _finite_or_none(highs.max()) if highs.size else None,
    }


def _rounded_or_none(value):
    value = float(value)
    return round(value, 7) if math.isfinite(value) else None


def dead_heads(entropy, peak, keys):
    """bool (heads,): uniform or single-token attention in every probe sample (module doc)."""
    entropy = np.asarray(entropy, dtype=np.float64)
    peak = np.asarray(peak, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = entropy / math.log(keys) if keys > 1 else np.ones_like(entropy)
    uniform = normalised >= DEAD_HEAD_LEVEL
    single = peak >= DEAD_HEAD_LEVEL
    return np.all(uniform | single, axis=0) if entropy.size else np.zeros(entropy.shape[-1:], bool)


def heads_path(path):
    """The layer whose summary holds the heads of layer `path`: an attention layer's own
    (`x:attention`), an attention map's (`x:attention_map` -> `x:attention`), else None."""
    if path.endswith(layout.ATTENTION_SUFFIX):
        return path
    if path.endswith(layout.ATTENTION_MAP_SUFFIX):
        return path[:-len(layout.ATTENTION_MAP_SUFFIX)] + layout.ATTENTION_SUFFIX
    return None


def dead_head_count(heads):
    """How many heads a valid `heads` field flags dead (dead_heads, as written)."""
    return sum(1 for flag in heads["dead"] if flag is True)


def head_summary(entropy, peak, distance, keys):
    """The `heads` field of an attention layer's summary from (samples, heads) arrays."""
    def rows(array):
        return [[_rounded_or_none(value) for value in row] for row in np.asarray(array)]
    return {"keys": int(keys), "entropy": rows(entropy), "peak": rows(peak),
            "distance": None if distance is None else rows(distance),
            "dead": [bool(flag) for flag in dead_heads(entropy, peak, keys)]}


def _number_rows(value, shape, low=0.0, high=None):
    """Whether `value` is a list of `shape[0]` lists of `shape[1]` numbers (or null) within
    [low, high]; shape None: any consistent one within bounds. Returns the shape or None."""
    if not isinstance(value, list) or not value or len(value) > MAX_HEAD_SAMPLES:
        return None
    width = len(value[0]) if isinstance(value[0], list) else -1
    if not 0 < width <= MAX_HEADS or (shape is not None and (len(value), width) != shape):
        return None
    for row in value:
        if not isinstance(row, list) or len(row) != width:
            return None
        for number in row:
            if number is None:
                continue
            if (isinstance(number, bool) or not isinstance(number, (int, float))
                    or not math.isfinite(number) or number < low
                    or (high is not None and number > high)):
                return None
    return (len(value), width)


def valid_heads(heads):
    """Whether `heads` is a `heads` field as head_summary writes it (bounded: at most
    MAX_HEAD_SAMPLES samples of MAX_HEADS heads, keys up to MAX_KEYS)."""
    if not isinstance(heads, dict) or set(heads) != set(HEAD_FIELDS):
        return False
    keys = heads["keys"]
    if isinstance(keys, bool) or not isinstance(keys, int) or not 1 <= keys <= MAX_KEYS:
        return False
    shape = _number_rows(heads["entropy"], None, 0.0, math.log(keys) + 1e-3)
    if shape is None or _number_rows(heads["peak"], shape, 0.0, 1.0 + 1e-6) is None:
        return False
    if heads["distance"] is not None and _number_rows(heads["distance"], shape) is None:
        return False
    dead = heads["dead"]
    return (isinstance(dead, list) and len(dead) == shape[1]
            and all(isinstance(flag, bool) for flag in dead))


def encode_overview(summaries):
    """The overview blob of one step: {layer path: layer_summary} as JSON bytes."""
    return json.dumps({"layers": summaries}, allow_nan=False).encode("utf-8")


def _valid_summary(summary):
    if not isinstance(summary, dict) or not set(SUMMARY_FIELDS) <= set(summary) or not set(
            summary) <= set(SUMMARY_FIELDS) | {"heads"}:
        return False
    if "heads" in summary and not valid_heads(summary["heads"]):
        return False
    numbers = [summary[field] for field in ("zero_fraction", "low", "high")]
    counts = [summary[field] for field in ("dead_channels", "nan_count", "inf_count")]
    silent = summary["silent_channels"]
    return (all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in numbers)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts)
            and isinstance(silent, list)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in silent))


def decode_overview(blob):
    """{layer path: summary} of an overview blob; ValueError on anything else (the blob is
    read from an event file, so it is untrusted)."""
    payload = metadata.json_blob(blob, MAX_OVERVIEW_BYTES, "overview blob")
    layers = payload.get("layers") if isinstance(payload, dict) else None
    if not isinstance(layers, dict) or not all(
            isinstance(path, str) and _valid_summary(summary) for path, summary in layers.items()):
        raise ValueError("overview blob is not {\"layers\": {path: summary}} with the fields %s "
                         "(and, for attention layers, a valid \"heads\")"
                         % ", ".join(SUMMARY_FIELDS))
    return layers
