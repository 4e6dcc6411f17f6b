"""A layer's step in a few numbers, defined once: sparsity, dead and silent channels, NaN/Inf,
value range. Pure numpy, no TensorFlow.

- sparsity (`zero_fraction`): the fraction of exact zeros, over every channel and sample;
- dead: a channel whose map is all zeros in every probe sample;
- silent: a channel whose map is all zeros in one probe sample (counted per sample);
- `low`/`high`: the finite range of the drawn tiles over every sample (what "all steps"
  scaling spans).

The writer stores these for every layer of a step in one overview blob (tag
`activations_overview`), so the tab's overview of a whole run reads one blob per step instead of
one per layer and step; the series route computes the same numbers from a layer's statistics
(its layer-level statistics and silent bits, which cover every unit however many are kept).
"""

import json
import math

import numpy as np

from tb_activations.format import metadata

SUMMARY_FIELDS = ("zero_fraction", "dead_channels", "silent_channels", "nan_count",
                  "inf_count", "low", "high")
# An overview blob larger than this was not written by us (150 layers x 64 samples fit).
MAX_OVERVIEW_BYTES = 8 << 20


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


def encode_overview(summaries):
    """The overview blob of one step: {layer path: layer_summary} as JSON bytes."""
    return json.dumps({"layers": summaries}, allow_nan=False).encode("utf-8")


def _valid_summary(summary):
    if not isinstance(summary, dict) or set(summary) != set(SUMMARY_FIELDS):
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
        raise ValueError("overview blob is not {\"layers\": {path: summary}} with the fields %s"
                         % ", ".join(SUMMARY_FIELDS))
    return layers
