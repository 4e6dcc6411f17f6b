"""`read_reference`: what each unit responded to over the reference set, per run, layer and
reference step, with the numbers derived from it (format/reference.py's one definition each)
and the reference inputs' thumbnails and labels."""

import dataclasses

import numpy as np

from tb_activations.format import reference as reference_format
from tb_activations.reading import reader


@dataclasses.dataclass
class UnitResponses:
    """One layer at one reference step. Per kept unit (row r is unit `units[r]`): its `k` top
    inputs `top_index` (reference input indices, by value descending, ties to the lower
    index), `top_value` (the unit's maximum on each) and `top_position` (where in its map,
    `content["map_shape"]`), `zero_fraction`; with labels `class_mean` (units, classes) of
    the map's mean of max(a, 0) per class and `class_count`; derived: `selectivity` (NaN
    without labels), `preferred` (class id, -1 without labels), `dead` (zero on every
    reference input). `content`: the tag's plugin content (layer, receptive_field, ...)."""

    run: str
    layer: str
    step: int
    wall_time: float
    content: dict
    units: np.ndarray
    top_index: np.ndarray
    top_value: np.ndarray
    top_position: np.ndarray
    zero_fraction: np.ndarray
    class_mean: np.ndarray
    class_count: np.ndarray
    selectivity: np.ndarray
    preferred: np.ndarray
    dead: np.ndarray


@dataclasses.dataclass
class ReferenceRun:
    """A run's reference steps: `layers` {layer path: [UnitResponses by step]} in model
    order; `thumbnails` uint8 (N, h, w[, 3]) or None, `labels` int32 (N,) or None,
    `class_names` (list or None) and `inputs` (the reference_inputs content, or None if the
    run has none)."""

    name: str
    layers: dict
    thumbnails: np.ndarray = None
    labels: np.ndarray = None
    class_names: list = None
    inputs: dict = None


def unit_responses(run, step):
    """The UnitResponses of a reader.ReferenceStep, with its derived numbers."""
    arrays, content = step.arrays, step.content
    count = arrays.get("class_count", np.zeros(0, np.int32))
    mean = arrays.get("class_mean", np.zeros((len(arrays["units"]), 0), np.float32))
    return UnitResponses(
        run=run, layer=content["layer"], step=step.step, wall_time=step.wall_time,
        content=content, units=arrays["units"], top_index=arrays["top_index"],
        top_value=arrays["top_value"], top_position=arrays["top_position"],
        zero_fraction=arrays["zero_fraction"], class_mean=mean, class_count=count,
        selectivity=reference_format.selectivity_index(mean, count),
        preferred=reference_format.preferred_class(mean, count),
        dead=reference_format.dead_on_reference(arrays["zero_fraction"]))


def read_reference(logdir, run=None, layer=None):
    """{run name: ReferenceRun} of every run under `logdir` with reference steps (`run` and
    `layer`, a layer path, narrow it), read with TensorBoard's event file loader and checked
    as untrusted (reader.read_run: what does not fit is skipped with a warning)."""
    runs = {}
    for name, directory in reader.run_directories(logdir):
        if run is not None and name != run:
            continue
        found = ReferenceRun(name, {})
        orders = {}
        for item in reader.read_run(directory, name):
            if isinstance(item, reader.ReferenceInputsStep) and found.inputs is None:
                found.inputs, found.thumbnails = item.content, item.thumbnails
                found.labels, found.class_names = item.labels, item.content["class_names"]
            elif isinstance(item, reader.ReferenceStep) and layer in (None,
                                                                       item.content["layer"]):
                orders[item.content["layer"]] = item.content["order"]
                found.layers.setdefault(item.content["layer"], []).append(
                    unit_responses(name, item))
        if found.layers or found.inputs is not None:
            found.layers = {path: sorted(steps, key=lambda s: s.step) for path, steps in
                            sorted(found.layers.items(), key=lambda item: orders[item[0]])}
            runs[name] = found
    return runs
