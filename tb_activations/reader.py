"""`read_activations`: what was written, read back through TensorBoard's own event loading."""

import dataclasses

import numpy as np
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from tb_activations import metadata
from tb_activations import rendering


@dataclasses.dataclass
class ActivationRecord:
    """One probe sample of one layer at one step.

    image: the uint8 grid (codes as in metadata: 0..253 values, 254 NaN/Inf, 255 gutter);
    statistics: field name -> (channels,) array for this sample; ranges: (tiles, 2) the
    value range each tile was scaled by; channels: channel index of each drawn channel;
    tiling: the tag's plugin content (layer path, class, shape, rows, columns, ...).
    """

    run: str
    layer: str
    step: int
    wall_time: float
    sample: int
    image: np.ndarray
    statistics: dict
    ranges: np.ndarray
    channels: np.ndarray
    tiling: dict

    def values(self):
        """The grid as float32 real values (NaN at gutters and at NaN/Inf pixels)."""
        tiling = self.tiling
        height, width = tiling["tile_height"], tiling["tile_width"]
        gutter = tiling["gutter"]
        values = np.full(self.image.shape, np.nan, np.float32)
        for tile, (low, high) in enumerate(self.ranges):
            row, column = divmod(tile, tiling["columns"])
            top, left = row * (height + gutter), column * (width + gutter)
            codes = self.image[top:top + height, left:left + width].astype(np.float32)
            span = high - low if high > low else 0.0
            real = low + codes / metadata.FINITE_MAX_CODE * span
            real[codes > metadata.FINITE_MAX_CODE] = np.nan
            values[top:top + height, left:left + width] = real
        return values


def load_multiplexer(logdir):
    """An EventMultiplexer over `logdir` that keeps every activations step."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    return multiplexer


def read_activations(logdir, run=None, layer=None):
    """Yields an ActivationRecord per run, layer, step and probe sample found under `logdir`.

    `run` and `layer` (a layer path) narrow what is read. Runs, then layers in model order,
    then steps, then samples.
    """
    multiplexer = load_multiplexer(logdir)
    contents = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    for run_name in sorted(contents):
        if run is not None and run_name != run:
            continue
        layers = []
        for tag, raw in contents[run_name].items():
            content = metadata.parse_plugin_content(raw)
            if content["kind"] == metadata.KIND_LAYER and layer in (None, content["layer"]):
                layers.append((content["order"], tag, content))
        for _, tag, content in sorted(layers, key=lambda item: item[0]):
            for event in multiplexer.Tensors(run_name, tag):
                blobs = tensor_util.make_ndarray(event.tensor_proto).tolist()
                arrays = rendering.decode_statistics(blobs[-1])
                for sample, png in enumerate(blobs[:-1]):
                    stats = arrays["stats"][sample]
                    yield ActivationRecord(
                        run=run_name, layer=content["layer"], step=event.step,
                        wall_time=event.wall_time, sample=sample,
                        image=rendering.decode_png(png),
                        statistics={field: stats[:, i]
                                    for i, field in enumerate(metadata.STAT_FIELDS)},
                        ranges=arrays["ranges"][sample], channels=arrays["channels"],
                        tiling=content)
