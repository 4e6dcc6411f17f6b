"""What was written, read back through TensorBoard's own event loading.

`read_activations` gathers a logdir through the EventMultiplexer (layer by layer, in memory;
a URL TensorBoard's loaders cannot read, through the stub: reading/stub_reading.py);
`read_run` streams one run's event files once, in the order they were written, checking every
value against its tag's plugin content (the data is untrusted), for readers that must not hold
a whole run (export). A run directory that cannot be read is skipped with a warning naming it.
"""

import dataclasses
import functools
import os
import warnings

import numpy as np
from tensorboard.backend.event_processing import directory_watcher
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import io_wrapper
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util

from tb_activations.format import layout as layout_lib
from tb_activations.format import metadata
from tb_activations.format import reference as reference_format
from tb_activations.format import tokens as tokens_lib
from tb_activations.reading import epochs
from tb_activations.reading import logdirs
from tb_activations.reading import stub_reading
from tb_activations.rendering import grid_images
from tb_activations.rendering import overview
from tb_activations.writing import events

# The longest side of a grid read (the writer's are at most a few thousand pixels).
_MAX_GRID_SIDE = 1 << 14


@dataclasses.dataclass
class ActivationRecord:
    """One probe sample of one layer at one step.

    image: the uint8 grid (codes as in metadata: 0..253 values, 254 NaN/Inf, 255 gutter);
    statistics: field name -> array for this sample, entry r of unit units[r] (every channel
    in format version 1, the kept ones from version 2); ranges: (tiles, 2) the value range
    each tile was scaled by; channels: channel index of each drawn channel;
    layer_statistics: field name -> the value over every unit of this sample; silent: bool
    (channels_total,), the units all zero in this sample; tiling: the tag's plugin content
    (layer path, class, shape, rows, columns, ...).
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
    units: np.ndarray
    layer_statistics: dict
    silent: np.ndarray
    tiling: dict

    def values(self):
        """The grid as float32 real values (NaN at gutters and at NaN/Inf pixels)."""
        return grid_values(self.image, self.ranges, self.tiling)


def load_multiplexer(logdir):
    """An EventMultiplexer over `logdir` that keeps every activations step."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    for name, directory in run_directories(logdir):
        multiplexer.AddRun(directory, name)
    multiplexer.Reload()
    return multiplexer


def _runs_with_layers(logdir, run):
    """Yields (run name, {tag: plugin content}, tag -> [TensorEvent]) of each run under
    `logdir` with activations (`run`: only that one): through the EventMultiplexer, or where
    TensorBoard's own loaders cannot read the URL, gathered from the stub's events as the
    multiplexer gathers them (each tag's first metadata, every value in load order)."""
    if not logdirs.read_by_stub(logdir):
        multiplexer = load_multiplexer(logdir)
        contents = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
        for name in sorted(contents):
            if run in (None, name):
                yield name, contents[name], functools.partial(multiplexer.Tensors, name)
        return
    for name, directory in run_directories(logdir):
        if run in (None, name):
            contents, tensors = _gathered_by_stub(directory)
            if contents:
                yield name, contents, tensors.__getitem__


def _gathered_by_stub(directory):
    """({tag: plugin content}, {tag: [TensorEvent]}) of the activations tags of one run read
    through the stub (stub_reading.load_run), as the multiplexer gathers them: a tag is ours
    if its first metadata says so; its values in load order."""
    contents, tensors, seen = {}, {}, set()
    for event in stub_reading.load_run(directory):
        for value in event.summary.value:
            if value.HasField("metadata") and value.tag not in seen:
                seen.add(value.tag)
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    contents[value.tag] = value.metadata.plugin_data.content
                    tensors[value.tag] = []
            if value.tag in contents and value.HasField("tensor"):
                tensors[value.tag].append(plugin_event_accumulator.TensorEvent(
                    wall_time=event.wall_time, step=event.step, tensor_proto=value.tensor))
    return contents, tensors


def read_activations(logdir, run=None, layer=None):
    """Yields an ActivationRecord per run, layer, step and probe sample found under `logdir`.

    `run` and `layer` (a layer path) narrow what is read. Runs, then layers in model order,
    then steps, then samples. `logdir` may be a URL (s3://, gs://...: run_directories).
    """
    for run_name, contents, tensors in _runs_with_layers(logdir, run):
        layers = []
        for tag, raw in contents.items():
            content = metadata.parse_plugin_content(raw)
            if content["kind"] == metadata.KIND_LAYER and layer in (None, content["layer"]):
                layers.append((content["order"], tag, content))
        for _, tag, content in sorted(layers, key=lambda item: item[0]):
            layout = layer_layout(content)
            for event in tensors(tag):
                blobs = tensor_util.make_ndarray(event.tensor_proto).tolist()
                arrays = grid_images.decode_statistics(blobs[-1], content, layout)
                silent = np.unpackbits(arrays["silent"], axis=-1, count=layout.channels_total)
                for sample, png in enumerate(blobs[:-1]):
                    stats = arrays["stats"][sample]
                    yield ActivationRecord(
                        run=run_name, layer=content["layer"], step=event.step,
                        wall_time=event.wall_time, sample=sample,
                        image=grid_images.decode_png(png),
                        statistics={field: stats[:, i]
                                    for i, field in enumerate(metadata.STAT_FIELDS)},
                        ranges=arrays["ranges"][sample], channels=arrays["channels"],
                        units=arrays["units"],
                        layer_statistics=dict(zip(metadata.STAT_FIELDS,
                                                  arrays["layer"][sample].tolist())),
                        silent=silent[sample].astype(bool), tiling=content)


def grid_values(image, ranges, tiling):
    """Real values of a grid (float32; NaN at gutters and NaN/Inf pixels).

    Decoded as the tab decodes them (frontend/geometry.js): low + code / 253 * (high - low)
    in float64, rounded to float32 once, so a colour drawn here and there is the same.
    """
    height, width = tiling["tile_height"], tiling["tile_width"]
    pitch_y, pitch_x = height + tiling["gutter"], width + tiling["gutter"]
    values = np.full(image.shape, np.nan, np.float32)
    for tile, (low, high) in enumerate(np.asarray(ranges, np.float64)):
        row, column = divmod(tile, tiling["columns"])
        window = (slice(row * pitch_y, row * pitch_y + height),
                  slice(column * pitch_x, column * pitch_x + width))
        codes = image[window]
        span = high - low if high > low else 0.0
        real = low + codes / metadata.FINITE_MAX_CODE * span
        values[window] = np.where(codes <= metadata.FINITE_MAX_CODE, real, np.nan)
    return values


def layer_layout(content):
    """The LayerLayout of a layer tag's content, whose fields metadata.parse_plugin_content
    has checked one by one; ValueError if they do not fit together or describe a grid larger
    than any the writer makes."""
    layout = layout_lib.LayerLayout(
        layout=content["layout"], source_shape=tuple(content["output_shape"][1:]),
        canonical_shape=(), channels_first=bool(content.get("channels_first")),
        channels_total=content["channels_total"], channels_shown=content["channels_shown"],
        channels_kept=content.get("channels_kept", content["channels_total"]),
        channel_selection=str(content.get("channel_selection")), rows=content["rows"],
        columns=content["columns"], tile_height=content["tile_height"],
        tile_width=content["tile_width"], downscale=tuple(content["downscale"]),
        depth_slices=tuple(content["depth_slices"]), gutter=content["gutter"],
        source=content.get("source", "output"),
        token_grid=tuple(content["token_grid"][key] for key in ("rows", "columns", "prefix_tokens"))
        if "token_grid" in content else (),
        attention_query=content.get("attention_query", ""),
        windows=(content["windows"]["count"], content["windows"]["partition"])
        if "windows" in content else ())
    if max(layout.channels_shown, layout.channels_kept) > layout.channels_total:
        raise ValueError("%d channels shown and %d kept of %d" % (
            layout.channels_shown, layout.channels_kept, layout.channels_total))
    if (content["version"] >= 2 and layout.layout in ("channels", "volume")
            and layout.channels_kept != layout.channels_shown):
        raise ValueError("%d channels kept where %d are drawn" % (layout.channels_kept,
                                                                 layout.channels_shown))
    if layout.tiles > layout.rows * layout.columns:
        raise ValueError("%d tiles do not fit a grid of %d x %d"
                         % (layout.tiles, layout.rows, layout.columns))
    if max(layout.grid_height, layout.grid_width) > _MAX_GRID_SIDE:
        raise ValueError("a grid of %d x %d pixels is larger than any the writer makes"
                         % (layout.grid_height, layout.grid_width))
    return layout


@dataclasses.dataclass
class LayerStep:
    """One layer tag's value at one step, decoded and checked against its plugin content.

    grids: uint8 (grid_height, grid_width) per probe sample; stats: float32 (samples, rows,
    len(STAT_FIELDS)), row r of unit units[r]; ranges: float32 (samples, tiles, 2); channels:
    the channel drawn in each tile (volumes: each grid row); layer: float32 (samples,
    len(STAT_FIELDS)) over every unit; silent: packed bits (samples, ceil(channels_total / 8))
    of the units all zero in each sample (grid_images.decode_statistics).
    """

    tag: str
    content: dict
    layout: layout_lib.LayerLayout
    step: int
    wall_time: float
    grids: list
    stats: np.ndarray
    ranges: np.ndarray
    channels: np.ndarray
    units: np.ndarray
    layer: np.ndarray
    silent: np.ndarray


@dataclasses.dataclass
class ProbeStep:
    """A probe input's pictures (PNG bytes, one per sample), checked to decode."""

    tag: str
    content: dict
    step: int
    pictures: list


@dataclasses.dataclass
class TokensStep:
    """The run's token labels (the tokens tag, checked): a list of strings per probe sample."""

    tag: str
    content: dict
    step: int
    labels: list


@dataclasses.dataclass
class HeadsStep:
    """The attention layers' per-head numbers of one step, from its overview blob (checked,
    rendering.overview.valid_heads): `heads` {layer path ("...:attention"): {"keys",
    "entropy", "peak", "distance", "dead"}}, lists per probe sample and head
    (docs/format.md, Overview blob). Yielded only for steps where some layer has them."""

    tag: str
    step: int
    heads: dict


@dataclasses.dataclass
class EpochStep:
    """Keras epoch `epoch` (0-based) ended at `step` (the epoch tag, checked)."""

    tag: str
    step: int
    epoch: int


@dataclasses.dataclass
class ReferenceStep:
    """One layer's reference step (a reference tag, checked: format.reference.decode_reference):
    `content` its plugin content, `arrays` {units, top_index, top_value, top_position,
    zero_fraction[, class_mean, class_count]}."""

    tag: str
    content: dict
    step: int
    wall_time: float
    arrays: dict


@dataclasses.dataclass
class ReferenceInputsStep:
    """The reference inputs of a run (the reference_inputs tag, checked): `thumbnails` uint8
    (N, h, w[, 3]) or None (inputs that are not pictures), `labels` int32 (N,) or None."""

    tag: str
    content: dict
    step: int
    thumbnails: np.ndarray
    labels: np.ndarray


def _reference_inputs_step(tag, content, event, blobs):
    expected = content["pages"] + (1 if content["classes"] else 0)
    if len(blobs) != expected:
        raise ValueError("%d blobs, expected %d atlas pages%s" % (
            len(blobs), content["pages"], " and the labels" if content["classes"] else ""))
    thumbnails = reference_format.decode_atlas(blobs[:content["pages"]], content)
    labels = (reference_format.decode_labels(blobs[-1], content) if content["classes"]
              else None)
    return ReferenceInputsStep(tag, content, event.step, thumbnails, labels)


def _reference_step(tag, content, event, blobs):
    if len(blobs) != 1:
        raise ValueError("%d blobs, expected one reference blob" % len(blobs))
    return ReferenceStep(tag, content, event.step, event.wall_time,
                         reference_format.decode_reference(blobs[0], content))


def run_directories(logdir):
    """[(run name, directory)] of every run under `logdir`, sorted, named as TensorBoard's
    multiplexer names them: the path relative to `logdir` ("." for `logdir` itself). A local
    directory that cannot be listed is skipped with a warning naming it (TensorBoard's own
    walk fails the whole logdir on it). A URL is listed through TensorBoard's gfile;
    logdirs.UnreadableLogdir (a ValueError naming what to install) if nothing reads it."""
    logdir = os.fspath(logdir)
    if events.is_url(logdir):  # gs://, s3://, ram://...
        directories = logdirs.url_run_directories(logdir)
    else:
        directories = _local_run_directories(logdir)
    return sorted((os.path.relpath(directory, logdir), directory) for directory in directories)


def _local_run_directories(logdir):
    """Directories under `logdir` holding an event file, walked as TensorBoard walks them."""
    def unreadable(error):
        if not isinstance(error, FileNotFoundError):  # gone meanwhile, or no logdir: nothing
            warnings.warn("skipping directory %s of the logdir: it cannot be read (%s)"
                          % (error.filename, error.strerror), stacklevel=6)

    for directory, _, files in os.walk(logdir, onerror=unreadable, followlinks=True):
        if any(io_wrapper.IsTensorFlowEventsFile(name) for name in files):
            yield directory


def _parsed_content(tag, summary_metadata, where):
    """(content, layout or None) of an activations tag; None, with a warning naming it, if
    its content is malformed."""
    try:
        content = metadata.parse_plugin_content(summary_metadata.plugin_data.content)
        if content["kind"] == metadata.KIND_LAYER:
            return content, layer_layout(content)
        if content["kind"] == metadata.KIND_EPOCH:
            epochs.check_tag(tag)
        if content["kind"] == metadata.KIND_TOKENS:
            tokens_lib.check_tag(tag)
        return content, None
    except ValueError as error:
        warnings.warn("skipping activations tag %r of %s: %s" % (tag, where, error),
                      stacklevel=4)
        return None


def _blobs(tensor_proto):
    array = tensor_util.make_ndarray(tensor_proto)
    if array.ndim != 1 or array.dtype != object or not all(isinstance(b, bytes) for b in array):
        raise ValueError("the value is not a list of blobs")
    return list(array)


def _layer_step(tag, parsed, event, blobs):
    content, layout = parsed
    samples = content["samples"]
    if len(blobs) != samples + 1:
        raise ValueError("%d blobs, expected %d PNGs and the statistics" % (len(blobs), samples))
    arrays = grid_images.decode_statistics(blobs[-1], content, layout)
    grids = [grid_images.decode_png(png) for png in blobs[:-1]]
    if any(grid.shape != (layout.grid_height, layout.grid_width) for grid in grids):
        raise ValueError("a grid is not %dx%d" % (layout.grid_height, layout.grid_width))
    return LayerStep(tag, content, layout, event.step, event.wall_time, grids,
                     arrays["stats"].astype(np.float32), arrays["ranges"].astype(np.float32),
                     arrays["channels"].astype(np.int32), arrays["units"].astype(np.int32),
                     arrays["layer"].astype(np.float32), arrays["silent"])


def _probe_step(tag, parsed, event, blobs):
    for png in blobs:
        grid_images.decode_png(png)
    return ProbeStep(tag, parsed[0], event.step, blobs)


def read_run(directory, name=None):
    """Yields a LayerStep, ProbeStep, TokensStep, HeadsStep, EpochStep, ReferenceStep or
    ReferenceInputsStep for every activations value in one run's event files (a HeadsStep only for an overview holding per-head numbers).

    One pass, in the order the values were written (step by step, every layer of a step
    together), through TensorBoard's event file loader; nothing is kept but each tag's plugin
    content. A tag whose content is malformed, or a value that does not match it, is skipped
    with a warning naming it. `name` (the run's name) is used in warnings.
    """
    where = "run %r" % (name if name is not None else directory)
    if logdirs.read_by_stub(directory):
        loaded = stub_reading.load_run(directory)
    else:
        loaded = directory_watcher.DirectoryWatcher(
            directory, event_file_loader.EventFileLoader, io_wrapper.IsSummaryEventsFile).Load()
    tags = {}  # tag -> (content, layout) or None when it is not ours or is malformed
    for event in loaded:
        for value in event.summary.value:
            if value.tag not in tags and value.HasField("metadata"):
                ours = value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME
                tags[value.tag] = ours and _parsed_content(value.tag, value.metadata, where)
            parsed = tags.get(value.tag)
            if not parsed or not value.HasField("tensor"):
                continue
            kind = parsed[0]["kind"]
            try:
                blobs = _blobs(value.tensor)
                if kind == metadata.KIND_OVERVIEW:
                    heads = _overview_heads(blobs)
                    if heads:
                        yield HeadsStep(value.tag, event.step, heads)
                elif kind == metadata.KIND_LAYER:
                    yield _layer_step(value.tag, parsed, event, blobs)
                elif kind == metadata.KIND_PROBE:
                    yield _probe_step(value.tag, parsed, event, blobs)
                elif kind == metadata.KIND_TOKENS:
                    yield TokensStep(value.tag, parsed[0], event.step,
                                     tokens_lib.decode(blobs, parsed[0]))
                elif kind == metadata.KIND_REFERENCE:
                    yield _reference_step(value.tag, parsed[0], event, blobs)
                elif kind == metadata.KIND_REFERENCE_INPUTS:
                    yield _reference_inputs_step(value.tag, parsed[0], event, blobs)
                else:
                    yield EpochStep(value.tag, event.step, epochs.parse_record(blobs))
            except ValueError as error:
                warnings.warn("skipping step %d of activations tag %r of %s: %s"
                              % (event.step, value.tag, where, error), stacklevel=2)


def _overview_heads(blobs):
    if len(blobs) != 1:
        raise ValueError("%d blobs, expected one overview" % len(blobs))
    layers = overview.decode_overview(blobs[0])
    return {path: summary["heads"] for path, summary in layers.items() if "heads" in summary}


def read_token_labels(directory, name=None):
    """The token labels one run stored (a list of strings per probe sample), or None: the
    first readable value of its tokens tag (read_run's checks and warnings)."""
    for item in read_run(directory, name):
        if isinstance(item, TokensStep):
            return item.labels
    return None
