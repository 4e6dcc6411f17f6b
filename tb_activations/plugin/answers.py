"""The JSON shapes of the tab's answers (docs/http_api.md): runs and layers as listed, a step's
statistics, a live answer's layers; listings paged under ANSWER_MAX_BYTES."""

import base64
import json

import numpy as np

from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.rendering import overview

# Listing answers (runs, a run's layers) and frame windows stay under this many bytes of JSON;
# a listing says how many entries it left for the next page.
ANSWER_MAX_BYTES = 1 << 20


def json_array(values):
    """Nested lists of `values` with NaN and ±Inf as None (JSON has no such numbers)."""
    values = np.asarray(values, dtype=np.float64)
    result = values.astype(object)
    result[~np.isfinite(values)] = None
    return result.tolist()


def shortest(values):
    """float32 `values` as the shortest floats that round to them: JSON then carries ~9
    digits a number instead of float64's 17 (a stats answer 40% smaller)."""
    return np.asarray(values, np.float32).astype(str).astype(np.float64)


def statistics_answer(arrays):
    """The JSON shape of a step's statistics (the stats route, and each layer of a live
    answer): per sample, the statistics of each unit in `units`, the tile ranges, the
    layer-level statistics and the silent unit count; the dead unit count; NaN as null.
    Bounded by the caps for a version 2 blob (docs/http_api.md)."""
    summary = overview.layer_summary(arrays)
    return {"fields": list(metadata.STAT_FIELDS),
            "channels": np.asarray(arrays["channels"]).tolist(),
            "units": np.asarray(arrays["units"]).tolist(),
            "dead_channels": summary["dead_channels"],
            "samples": [{"stats": stats, "ranges": ranges, "layer": layer,
                         "silent_channels": silent}
                        for stats, ranges, layer, silent in zip(
                            *(json_array(shortest(arrays[key]))
                              for key in ("stats", "ranges", "layer")),
                            summary["silent_channels"])]}


def page(entries, offset):
    """(entries[offset:] that fit in ANSWER_MAX_BYTES of JSON, at least one; how many are
    left after them)."""
    page, size = [], 0
    for entry in entries[offset:]:
        size += len(json.dumps(entry)) + 2
        if page and size > ANSWER_MAX_BYTES - 4096:
            break
        page.append(entry)
    return page, max(0, len(entries) - offset - len(page))


def model_order(content):
    return content["order"], content["layer"]


def run_entry(run, tags, problems):
    """A run as /layers lists it: its layers in model order, probe inputs and problems."""
    layers, probes = [], []
    for content, series in tags.values():
        if content["kind"] == metadata.KIND_PROBE:
            probes.append({key: content.get(key) for key in ("input", "shape", "samples")})
        elif content["kind"] == metadata.KIND_LAYER:
            entry = {key: value for key, value in content.items() if key != "version"}
            entry.update(max_step=series.max_step, last_wall_time=series.max_wall_time)
            layers.append(entry)
    layers.sort(key=model_order)
    probes.sort(key=lambda entry: str(entry["input"]))
    return {"run": run, "layers": layers, "probes": probes, "problems": problems}


def run_summary(run, tags, problems):
    """A run as /runs lists it: how many layers, its latest step, how many unreadable tags."""
    layers = [series for content, series in tags.values()
              if content["kind"] == metadata.KIND_LAYER]
    return {"run": run, "layers": len(layers),
            "max_step": max((series.max_step for series in layers), default=None),
            "last_wall_time": max((series.max_wall_time for series in layers), default=None),
            "problems": len(problems)}


def live_layer(content, png, reduced):
    """A layer of a live answer: its `layers` entry and summary, plus its grid and statistics
    when it was drawn (`png` is None for the others)."""
    entry = {key: value for key, value in content.items() if key != "version"}
    entry["summary"] = overview.layer_summary(reduced)
    if png is not None:
        entry.update(grid=base64.b64encode(png).decode("ascii"),
                     stats=statistics_answer(reduced))
    return entry


def unavailable(reason):
    return {"available": False, "reason": reason, "model": None, "inputs": [], "outputs": [],
            "class_names": None}


def logged_layers(tags):
    """The layer paths a run logged (the live probe answers with these)."""
    return {content["layer"] for content, _ in tags.values()
            if content["kind"] == metadata.KIND_LAYER}


def run_options(tags):
    """The caps a run was logged with (so a live grid is drawn as a logged one); the
    defaults when its contents do not hold valid ones."""
    for content, _ in tags.values():
        caps = content.get("caps")
        if content["kind"] == metadata.KIND_LAYER and isinstance(caps, dict):
            known = {key: caps[key] for key in layout.RenderOptions.__dataclass_fields__
                     if key in caps}
            try:
                return layout.RenderOptions(**known)
            except (TypeError, ValueError):
                break
    return layout.RenderOptions()
