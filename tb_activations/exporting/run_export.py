"""`tba.export` and `tb-activations export`: logged activations out of the event files, as
figures (PNG), animations (GIF), arrays (npz) and one self-contained HTML page.

Event files are read through TensorBoard's own loader (reader.read_run), streamed: each run
is read twice, value by value, never held. The first pass lists the run (layers, their
steps, each layer's value range over all steps), so that every bad request is refused
before anything is written and names, steps and scaling are known up front; the second
writes as it reads. What grows with the number of steps goes to disk at once: each figure,
each animation frame (appended to its GIF), each row of arrays (spooled, packed into the
npz at the end), each picture of the page.
"""

import array
import contextlib
import dataclasses
import fnmatch
import io
import os
import shutil
import tempfile
import warnings

import numpy as np

from tb_activations.exporting import figures
from tb_activations.exporting import files as files_lib
from tb_activations.exporting import html_page
from tb_activations.exporting import overlays
from tb_activations.exporting import reference_export
from tb_activations.format import layout as layout_lib
from tb_activations.format import metadata
from tb_activations.format import tokens as tokens_lib
from tb_activations.reading import epochs as epochs_lib
from tb_activations.reading import logdirs
from tb_activations.reading import reader
from tb_activations.reading import reference as reference_reading
from tb_activations.rendering import grid_images
from tb_activations.rendering import overview

FORMATS = ("png", "gif", "npz", "html")
INDEX_NAME = "index.csv"
HTML_NAME = "activations.html"
STATISTICS_NAME = "statistics.npz"
GIF_FRAME_MS = 400
# Step numbers in file names are zero-padded to at least this many digits (more when a
# logged step needs them), so names sort by step.
_STEP_DIGITS = 6
# Per channel scaling of a layer drawn as one image: that image spans its own range.
_SINGLE_IMAGE_NOTE = "per channel: this sample's own min to max"


class ExportError(Exception):
    """An export that cannot be done as asked; the message says why and what exists."""


@dataclasses.dataclass
class LayerListing:
    """One layer tag of a run, as the listing pass found it: its content, every step it
    logged and its value range over all of them (what "global" scaling colours by)."""

    tag: str
    content: dict
    layout: object
    steps: array.array
    span: tuple


@dataclasses.dataclass
class RunListing:
    name: str
    directory: str
    layers: dict  # tag -> LayerListing
    probes: dict  # tag -> plugin content
    epochs: list  # [(step, epoch)]: where each Keras epoch ended
    tokens: list | None = None  # the run's token labels, a list of strings per probe sample
    pictures: list | None = None  # the first probe input's pictures (PNG per sample), if any


@dataclasses.dataclass
class ExportResult:
    """Where an export went: its folder, index.csv, the HTML page (if any), files written."""

    folder: str
    index: str
    html: str | None
    files: int


def parse_steps(steps):
    """"all", "last", or (a set of steps, whether the last is wanted) from "all", "last",
    "0,100,last" or a list of ints and "last"."""
    if isinstance(steps, str):
        if steps in ("all", "last"):
            return steps
        steps = [part.strip() for part in steps.split(",")]
    try:
        items = list(steps)
    except TypeError:
        items = None
    wanted, last = set(), False
    for item in items or [None]:
        if item == "last":
            last = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item >= 0:
            wanted.add(int(item))
        elif isinstance(item, str) and item.isdigit():
            wanted.add(int(item))
        else:
            raise ExportError('steps must be "all", "last" or a list of steps (ints >= 0) '
                              'and "last", e.g. "0,100,last"; got %r' % (steps,))
    return wanted, last


def parse_sample(sample):
    """"all" or a probe sample index from "all", an int or a string of one."""
    if sample == "all":
        return sample
    if isinstance(sample, str) and sample.isdigit():
        return int(sample)
    if isinstance(sample, (int, np.integer)) and not isinstance(sample, bool) and sample >= 0:
        return int(sample)
    raise ExportError('sample must be "all" or a probe sample index (an int >= 0); got %r'
                      % (sample,))


def parse_formats(formats):
    """A tuple of FORMATS from "png,gif" or a list of names."""
    if isinstance(formats, str):
        formats = [part.strip() for part in formats.split(",")]
    formats = tuple(dict.fromkeys(formats))
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ExportError("formats must be some of %s; got %r" % (", ".join(FORMATS),
                                                                   ",".join(map(str, formats))))
    return formats


def _check_choice(what, value, choices):
    if value not in choices:
        raise ExportError("%s must be one of %s; got %r" % (what, ", ".join(choices), value))


def _increasing(items):
    """The items of a run whose step is past the last one of their tag; a repeated or
    earlier step (a restarted run writing a step again) is skipped with a warning."""
    last = {}
    for item in items:
        if item.tag in last and item.step <= last[item.tag]:
            warnings.warn("skipping step %d of activations tag %r: it comes after step %d "
                          "(a restarted run?); the first one is exported"
                          % (item.step, item.tag, last[item.tag]), stacklevel=2)
            continue
        last[item.tag] = item.step
        yield item


def list_run(name, directory):
    """The RunListing of one run: one pass over its event files."""
    layers, probes, epochs, tokens, pictures = {}, {}, [], None, {}
    for item in _increasing(reader.read_run(directory, name)):
        if isinstance(item, reader.TokensStep):
            tokens = item.labels if tokens is None else tokens
            continue
        if isinstance(item, reader.ProbeStep):
            probes.setdefault(item.tag, item.content)
            pictures.setdefault(item.tag, item.pictures)
            continue
        if isinstance(item, reader.EpochStep):
            epochs.append((item.step, item.epoch))
            continue
        if not isinstance(item, reader.LayerStep):
            continue
        listing = layers.get(item.tag)
        if listing is None:
            listing = layers[item.tag] = LayerListing(item.tag, item.content, item.layout,
                                                      array.array("q"), (np.nan, np.nan))
        listing.steps.append(item.step)
        listing.span = figures.span_of([listing.span, *item.ranges.reshape(-1, 2)])
    first = pictures[min(pictures)] if pictures else None
    return RunListing(name, directory, layers, probes, epochs, tokens, first)


def _listed_runs(logdir, run):
    """RunListings of the runs under `logdir` with activation data that `run` (a name or
    glob; None: all) selects."""
    try:
        if not logdirs.is_directory(logdir):
            raise ExportError("logdir %s is not a directory" % logdir)
    except logdirs.UnreadableLogdir as error:
        raise ExportError(str(error)) from None
    directories = reader.run_directories(logdir)
    chosen = [(name, path) for name, path in directories
              if run is None or name == run or fnmatch.fnmatchcase(name, run)]
    listings = [listing for listing in (list_run(name, path) for name, path in chosen)
                if listing.layers]
    if listings:
        return listings
    with_data = [name for name, path in directories
                 if run is not None and list_run(name, path).layers]
    if not with_data:
        raise ExportError("no activation data under %s (runs with event files: %s)"
                          % (logdir, ", ".join(name for name, _ in directories) or "none"))
    raise ExportError("no run with activation data matches %r; the runs with activation "
                      "data are: %s" % (run, ", ".join(with_data)))


def _select_layers(listings, layers):
    """{run name: [LayerListing in model order]} of the layers whose path matches one of
    the globs `layers` (None: every layer)."""
    globs = [layers] if isinstance(layers, str) else list(layers or [])
    chosen = {}
    for listing in listings:
        matching = [layer for layer in listing.layers.values()
                    if not globs or any(fnmatch.fnmatchcase(layer.content["layer"], glob)
                                        for glob in globs)]
        chosen[listing.name] = sorted(matching, key=lambda layer: (layer.content["order"],
                                                                   layer.content["layer"]))
    if not any(chosen.values()):
        paths = sorted({layer.content["layer"] for listing in listings
                        for layer in listing.layers.values()})
        raise ExportError("no layer matches %s; the layers are: %s"
                          % (", ".join(map(repr, globs)), ", ".join(paths)))
    return chosen


def _chosen_steps(steps, logged):
    if steps == "all":
        return set(logged)
    if steps == "last":
        return {logged[-1]}
    wanted, last = steps
    return (wanted & set(logged)) | ({logged[-1]} if last else set())


def _chosen_samples(sample, layers):
    """{tag: [sample indices]}; ExportError if `sample` is past a layer's probe."""
    chosen = {}
    for layer in layers:
        count = layer.content["samples"]
        if sample != "all" and sample >= count:
            raise ExportError("sample %d does not exist: layer %r has %d probe samples (0..%d)"
                              % (sample, layer.content["layer"], count, count - 1))
        chosen[layer.tag] = list(range(count)) if sample == "all" else [sample]
    return chosen


def _prepare_folder(out):
    """Creates `out` and checks a file can be written there."""
    try:
        os.makedirs(out, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix=".tb-activations-check-", dir=out)
        os.close(handle)
        os.remove(path)
    except OSError as error:
        raise ExportError("cannot write to %s: %s" % (out, error.strerror or error)) from None


def _run_label(name, logdir):
    """A run's name for its folder: the logdir's own name for the root run (".")."""
    if name != ".":
        return name
    return logdirs.own_name(logdir) or "run"


def _token_array(tokens, samples):
    """{"token_labels": str array (samples, longest), "" past a shorter sample's end} of the
    exported samples, or {} for a run without token labels."""
    if not tokens:
        return {}
    rows = [tokens[sample] if sample < len(tokens) else [] for sample in samples]
    width = max([len(row) for row in rows] + [0])
    return {"token_labels": np.array([row + [""] * (width - len(row)) for row in rows],
                                     dtype=str).reshape(len(rows), width)}


def _shape_text(shape):
    return "(%s)" % ", ".join("None" if size is None else str(size) for size in shape)


def _tile_label(layout, channels, tile, shown, per_tile):
    """What is written above a tile: its channel (volumes: and depth slice), and the real
    value range it spans when every tile has its own."""
    if layout.layout == "volume":
        row, column = divmod(tile, layout.columns)
        label = "#%d d%d" % (channels[row], layout.depth_slices[column])
    else:
        label = "#%d" % channels[tile]
    if per_tile:
        label += " · %s…%s" % (figures.fmt(shown[tile][0]), figures.fmt(shown[tile][1]))
    return label


@dataclasses.dataclass(frozen=True)
class _Options:
    """The checked options of one export."""

    cmap: figures.Colormap
    scale: str
    formats: tuple
    values: bool
    step_digits: int


class _LayerExport:
    """Everything written for one layer of one run, fed one logged step at a time."""

    def __init__(self, context, listing, run_index, layer_index, folder, samples, epochs,
                 tokens=None, pictures=None):
        self.context = context
        self.tokens = tokens  # the run's token labels per probe sample, or None
        self.listing = listing
        self.epochs = epochs  # step -> Keras epoch index, or None
        self.content = listing.content
        self.layout = listing.layout
        self.run_index = run_index
        self.layer_index = layer_index
        self.folder = folder
        self.samples = samples
        options = context.options
        self.tiled = self.layout.layout in ("channels", "volume")
        self.plan = figures.plan_figure(self.layout, self.tiled)
        self.tiles = figures.tile_index(self.layout)
        self.sample_digits = len(str(self.content["samples"] - 1))
        # An attention map or rollout over the probe picture (sample -> (h, w, 3) uint8).
        self.pictures = {}
        if overlays.is_over_picture(self.content) and pictures and (
                "png" in options.formats or context.page is not None):
            self.pictures = {sample: overlays.picture_rgb(pictures[sample])
                             for sample in samples if sample < len(pictures)}
        os.makedirs(folder, exist_ok=True)
        self.gifs = {}
        if "gif" in options.formats:
            for sample in samples:
                name = "steps_sample-%0*d.gif" % (self.sample_digits, sample)
                self.gifs[sample] = files_lib.GifWriter(
                    context.temporaries, os.path.join(folder, name), GIF_FRAME_MS,
                    "%s · %s · sample %d" % (context.run, layout_lib.shown_name(self.content),
                                             sample))
                context.index_file(self.row(format="gif", sample=sample), name, folder)
        self.heads = []  # (step, heads field of the overview) of an attention layer
        self.npz = None
        if "npz" in options.formats:
            self.npz = files_lib.NpzWriter(
                context.temporaries, os.path.join(folder, STATISTICS_NAME), context.scratch,
                dict({"fields": np.array(metadata.STAT_FIELDS), "samples": np.array(samples)},
                     **_token_array(tokens, samples)))

    def row(self, **fields):
        return dict(run=self.context.run, layer=self.content["layer"],
                    layer_class=self.content["layer_class"], **fields)

    def add(self, item):
        """Writes one logged step of this layer."""
        options = self.context.options
        cmap = options.cmap
        for sample in self.samples:
            ranges = item.ranges[sample]
            shared = self.listing.span if options.scale == "global" else figures.span_of(ranges)
            shown = figures.display_ranges(options.scale, ranges, shared, cmap.diverging)
            rgba = figures.colour_grid(item.grids[sample], ranges, self.content, self.tiles,
                                       shown, cmap)
            labels = figures.bar_labels(shown, options.scale, self.tiled, cmap.diverging)
            if "png" in options.formats or "gif" in options.formats:
                figure = self.figure(item, sample, rgba, shown, labels)
                if "png" in options.formats:
                    self.write_png(figure, item.step, sample)
                if "gif" in options.formats:
                    self.gifs[sample].add(figures.to_palette(figure, cmap.name))
            if self.context.page is not None:
                self.context.page.add_grid(grid_images.encode_png(rgba), self.run_index,
                                           self.layer_index, item.step, sample, labels)
            if sample in self.pictures:
                self.write_overlay(item, sample, rgba, labels)
        if self.npz is not None:
            epoch = self.epochs[item.step]
            row = dict(steps=np.int64(item.step), wall_times=np.float64(item.wall_time),
                       epochs=np.int64(-1 if epoch is None else epoch),
                       statistics=item.stats[self.samples], ranges=item.ranges[self.samples],
                       channels=item.channels, units=item.units,
                       layer_statistics=item.layer[self.samples],
                       silent=item.silent[self.samples])
            if options.values:
                row["values"] = np.stack([reader.grid_values(item.grids[sample],
                                                             item.ranges[sample], self.content)
                                          for sample in self.samples])
            self.npz.add(**row)

    def titles(self, step, sample, what=""):
        """The title and subtitle of a figure of `step` and `sample` (`what`: after the
        layer's name, what the figure shows of it)."""
        content = self.content
        title = "%s%s · %s · sample %d" % (layout_lib.shown_name(content), what,
                                         epochs_lib.step_text(step, self.epochs[step]), sample)
        subtitle = "run %s · %s · output %s · %d of %d %s drawn" % (
            self.context.run, content["layer_class"], _shape_text(content["output_shape"]),
            content["channels_shown"], content["channels_total"],
            layout_lib.unit_name(content["layout"], content.get("source", "output")) + "s")
        named = tokens_lib.layer_text(self.tokens[sample] if self.tokens
                                      and sample < len(self.tokens) else None, content)
        if named:
            subtitle += " · " + named
        return title, subtitle

    def figure(self, item, sample, rgba, shown, labels):
        title, subtitle = self.titles(item.step, sample)
        per_tile = self.context.options.scale == "channel"
        tile_labels = [_tile_label(self.layout, item.channels, tile, shown, per_tile)
                       for tile in range(self.layout.tiles)] if self.tiled else []
        note = figures.SCALE_NOTES[self.context.options.scale]
        if per_tile:
            note = note + " (written above each tile)" if self.tiled else _SINGLE_IMAGE_NOTE
        return figures.draw_figure(self.plan, rgba, self.layout, title, subtitle, tile_labels,
                                   labels, note, self.context.options.cmap)

    def write_overlay(self, item, sample, rgba, labels):
        """The step's tiles over the sample's probe picture: a PNG figure beside the grid's
        (`over-probe_step-…_sample-….png`, format `overlay` in index.csv) and on the page."""
        title, subtitle = self.titles(item.step, sample, " over the probe picture")
        note = figures.SCALE_NOTES[self.context.options.scale]
        figure = overlays.draw_overlays(self.pictures[sample], rgba, self.layout, item.channels,
                                        title, subtitle, labels, note, self.context.options.cmap)
        png = self.encode_png(figure, title, subtitle)
        if "png" in self.context.options.formats:
            name = "over-probe_step-%0*d_sample-%0*d.png" % (
                self.context.options.step_digits, item.step, self.sample_digits, sample)
            self.context.temporaries.write(os.path.join(self.folder, name), png)
            self.context.index_file(self.row(format="overlay", step=item.step, sample=sample),
                                    name, self.folder)
        if self.context.page is not None:
            self.context.page.add_overlay(png, self.run_index, self.layer_index, item.step,
                                          sample)

    @staticmethod
    def encode_png(figure, title, subtitle):
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        text.add_itxt("Title", title)
        text.add_itxt("Description", subtitle)
        text.add_itxt("Software", "tb-activations")
        buffer = io.BytesIO()
        figure.save(buffer, "PNG", pnginfo=text, compress_level=3)
        return buffer.getvalue()

    def write_png(self, figure, step, sample):
        title, subtitle = self.titles(step, sample)
        name = "step-%0*d_sample-%0*d.png" % (self.context.options.step_digits, step,
                                              self.sample_digits, sample)
        self.context.temporaries.write(os.path.join(self.folder, name),
                                       self.encode_png(figure, title, subtitle))
        self.context.index_file(self.row(format="png", step=step, sample=sample), name,
                                self.folder)

    def add_heads(self, step, heads):
        """Keeps one step's per-head numbers (the overview's `heads` of this attention layer,
        or of the one whose map this is) for the npz, and puts them on the page."""
        if self.heads and step <= self.heads[-1][0]:
            return
        if self.npz is not None:
            self.heads.append((step, heads))
        if self.context.page is not None:
            self.context.page.add_heads(self.run_index, self.layer_index, step, heads)

    def head_arrays(self):
        """statistics.npz's head_* arrays: steps (n,), keys (n,), entropy, peak and distance
        (n, samples, heads) float32 (NaN where null), dead (n, heads); {} without heads or
        when the head count changes between steps."""
        if not self.heads or len({len(heads["dead"]) for _, heads in self.heads}) != 1:
            return {}
        samples = list(self.samples)

        def rows(value):
            if value is None:
                return np.full((len(samples), len(self.heads[0][1]["dead"])), np.nan, np.float32)
            array = np.array([[np.nan if v is None else v for v in row] for row in value],
                             dtype=np.float32)
            return array[[sample for sample in samples if sample < len(array)]]
        arrays = {"head_steps": np.array([step for step, _ in self.heads], np.int64),
                  "head_keys": np.array([heads["keys"] for _, heads in self.heads], np.int64),
                  "head_dead": np.array([heads["dead"] for _, heads in self.heads], bool)}
        for name in ("entropy", "peak", "distance"):
            stacked = [rows(heads[name]) for _, heads in self.heads]
            if len({array.shape for array in stacked}) != 1:
                return {}
            arrays["head_" + name] = np.stack(stacked)
        return arrays

    def close(self):
        for gif in self.gifs.values():
            gif.close()
        if self.npz is not None:
            self.npz._constants.update(self.head_arrays())
            self.npz.close()
            self.context.index_file(self.row(format="npz"), STATISTICS_NAME, self.folder)


@dataclasses.dataclass
class _Context:
    """What every layer's export shares: the options, the open index and page, the
    temporaries, the run being written, the count of files written."""

    out: str
    options: _Options
    temporaries: files_lib.Temporaries
    scratch: str
    index: files_lib.CsvIndex
    page: html_page.HtmlPage | None
    run: str | None = None
    files: int = 0

    def index_file(self, row, name, folder):
        relative = os.path.relpath(os.path.join(folder, name), self.out)
        self.index.add(file=relative.replace(os.sep, "/"), **row)
        self.files += 1


def _export_run(context, listing, run_index, layers, chosen_steps, samples, folder, advance):
    """Writes one run (its chosen `layers`) in one pass over its event files.
    chosen_steps and samples are keyed by (run name, tag)."""
    context.run = listing.name
    taken = set()
    exports = {}
    for number, layer in enumerate(layers):
        layer_folder = os.path.join(folder, files_lib.safe_name(layer.content["layer"], taken))
        exports[layer.tag] = _LayerExport(
            context, layer, run_index, number, layer_folder, samples[(listing.name, layer.tag)],
            dict(zip(layer.steps, epochs_lib.epochs_of(layer.steps, listing.epochs))),
            listing.tokens, listing.pictures)
    probe_numbers = {tag: number for number, tag in enumerate(sorted(listing.probes))}
    probes_shown = set()
    references = {layer_export.content["layer"]: reference_export.LayerReference(context,
                                                                                layer_export)
                  for layer_export in exports.values()}
    reference_inputs = None
    for item in _increasing(reader.read_run(listing.directory, listing.name)):
        if isinstance(item, reader.ReferenceInputsStep):
            reference_inputs = reference_inputs or item
        elif isinstance(item, reader.ReferenceStep):
            if item.content["layer"] in references:
                references[item.content["layer"]].add(
                    reference_reading.unit_responses(listing.name, item))
        elif isinstance(item, reader.ProbeStep):
            if context.page is not None and item.tag not in probes_shown:
                probes_shown.add(item.tag)
                for sample, png in enumerate(item.pictures):
                    context.page.add_probe(png, run_index, probe_numbers[item.tag], sample)
        elif isinstance(item, reader.HeadsStep):
            for layer_export in exports.values():
                heads = item.heads.get(overview.heads_path(layer_export.content["layer"]))
                if heads is not None and item.step in chosen_steps[
                        (listing.name, layer_export.listing.tag)]:
                    layer_export.add_heads(item.step, heads)
        elif item.tag in exports and item.step in chosen_steps[(listing.name, item.tag)]:
            exports[item.tag].add(item)
            advance()
    for layer_export in exports.values():
        layer_export.close()
        reference = references[layer_export.content["layer"]]
        shown = reference.close(reference_inputs)
        if shown and context.page is not None:
            context.page.add_reference(run_index, layer_export.layer_index,
                                       reference.last.step, shown)


def _manifest(listings, layers, chosen_steps, samples, options, logdir):
    runs = []
    for listing in listings:
        chosen = layers[listing.name]
        if not chosen:
            continue
        steps = sorted(set().union(*(chosen_steps[(listing.name, layer.tag)]
                                     for layer in chosen)))
        entries = []
        for index, layer in enumerate(chosen):
            zoom = figures.plan_figure(layer.layout, False).zoom
            entries.append({"index": index, "layer": layout_lib.shown_name(layer.content),
                            "path": layer.content["layer"],
                            "layer_class": layer.content["layer_class"],
                            "output_shape": _shape_text(layer.content["output_shape"]),
                            "width": layer.layout.grid_width * zoom,
                            "height": layer.layout.grid_height * zoom})
        runs.append({"run": listing.name, "steps": steps,
                     "step_labels": [epochs_lib.step_text(step, epoch) for step, epoch in
                                     zip(steps, epochs_lib.epochs_of(steps, listing.epochs))],
                     "layers": entries,
                     "samples": samples[(listing.name, chosen[0].tag)],
                     "probes": [{"input": str(listing.probes[tag].get("input"))}
                                for tag in sorted(listing.probes)]})
    return {"runs": runs, "cmap": options.cmap.name, "note": figures.SCALE_NOTES[options.scale],
            "nonfinite": "#%02x%02x%02x" % options.cmap.nonfinite,
            "about": "exported from %s, colour map %s, scaling %s"
                     % (logdirs.own_name(logdir), options.cmap.name,
                        options.scale)}


def export(logdir: str | os.PathLike, out: str | os.PathLike, run: str | None = None,
           layers: str | list | None = None, steps="all", sample="all", cmap: str = "viridis",
           scale: str = "channel", formats=FORMATS, values: bool = False,
           progress: bool = True) -> ExportResult:
    """Writes the activations logged under `logdir` into the folder `out`.

    For every run and selected layer, in `out/<run>/<layer>/` (names made safe for any file
    system; index.csv maps the real names to the files):
    `png`: one figure per step and probe sample (step-000123_sample-0.png), titled with the
    layer path, epoch (when the run recorded epochs; counted from 1 as Keras's console does),
    step and sample, run, class and output shape, its tiles numbered, and a colour bar in real
    values; `gif`: the layer across the chosen steps, one frame per step, per sample
    (steps_sample-0.gif); `npz`: statistics.npz with `statistics` (step x sample x row x
    field, row r of unit `units[step, r]`), `layer_statistics` (step x sample x field, over
    every unit), `silent` (step x sample x packed bits of the units all zero), `fields`,
    `steps`, `epochs` (Keras's 0-based epoch index per step, -1 where the run recorded none),
    `wall_times`, `samples`, `ranges`, `channels`, and
    with `values` also the decoded grids (step x sample x height x width; NaN at gutters and
    NaN/Inf); `html`: out/activations.html, one file with every picture inlined.
    Colours and scaling are the tab's.

    Args:
      logdir: the directory given to `tensorboard --logdir`, or its URL (s3://bucket/runs,
        gs://...: read as TensorBoard reads it, see reading/logdirs.py).
      out: the folder to write (created if missing; files of the same name are replaced).
      run: a run name or glob (None: every run with activation data).
      layers: a glob over layer paths, or a list of them (None: every layer).
      steps: "all", "last", or a list of steps that may hold "last" (or "0,100,last").
      sample: a probe sample index, or "all".
      cmap: "viridis", "magma", "gray" or "diverging" (centred on zero).
      scale: "channel" (each tile its own range), "layer" (one range per step and sample)
        or "global" (one range over every logged step and sample of the layer).
      formats: some of "png", "gif", "npz", "html" (a list, or "png,npz").
      values: also store the decoded grid values in the npz.
      progress: show a progress bar.

    Returns:
      An ExportResult: the folder, index.csv's path, the HTML page's path, files written.

    Raises:
      ExportError: a bad option, a logdir without activation data or that nothing installed
        reads (the message names what to install), a run, layer glob or sample that matches
        nothing, or an `out` that cannot be written.
      ImportError: Pillow is missing (pip install "tb-activations[export]").
    """
    logdir, out = os.fspath(logdir), os.fspath(out)
    steps, sample, formats = parse_steps(steps), parse_sample(sample), parse_formats(formats)
    _check_choice("cmap", cmap, figures.COLORMAPS)
    _check_choice("scale", scale, figures.SCALES)
    figures.pillow()
    listings = _listed_runs(logdir, run)
    layers_by_run = _select_layers(listings, layers)
    chosen_steps, samples = {}, {}
    for listing in listings:
        for layer in layers_by_run[listing.name]:
            chosen_steps[(listing.name, layer.tag)] = _chosen_steps(steps, layer.steps)
        # A layer that logged none of the steps asked for has nothing to write.
        layers_by_run[listing.name] = [layer for layer in layers_by_run[listing.name]
                                       if chosen_steps[(listing.name, layer.tag)]]
        samples.update({(listing.name, tag): value for tag, value in
                        _chosen_samples(sample, layers_by_run[listing.name]).items()})
    total = sum(len(chosen) for chosen in chosen_steps.values())
    if not total:
        raise ExportError("none of the steps asked for was logged by the chosen layers")
    largest = max(max(layer.steps) for chosen in layers_by_run.values() for layer in chosen)
    options = _Options(figures.colormap(cmap), scale, formats, values,
                       max(_STEP_DIGITS, len(str(largest))))
    _prepare_folder(out)
    return _write(logdir, out, listings, layers_by_run, chosen_steps, samples, options,
                  total, progress)


def _write(logdir, out, listings, layers_by_run, chosen_steps, samples, options, total,
           progress):
    temporaries = files_lib.Temporaries()
    scratch = tempfile.mkdtemp(prefix=".tb-activations-", dir=out)
    index = files_lib.CsvIndex(temporaries, os.path.join(out, INDEX_NAME))
    html_path = os.path.join(out, HTML_NAME) if "html" in options.formats else None
    page_path = temporaries.create(html_path) if html_path else None
    page_file = open(page_path, "w", encoding="utf-8") if page_path else None
    context = _Context(out, options, temporaries, scratch, index,
                       html_page.HtmlPage(page_file) if page_file else None)
    taken = {files_lib.name_key(name) for name in (INDEX_NAME, HTML_NAME)}
    finished = False
    try:
        with _progress_bar(progress, total) as advance:
            exported = [listing for listing in listings if layers_by_run[listing.name]]
            for run_index, listing in enumerate(exported):
                folder = os.path.join(out, files_lib.safe_name(
                    _run_label(listing.name, logdir), taken))
                _export_run(context, listing, run_index, layers_by_run[listing.name],
                            chosen_steps, samples, folder, advance)
        if page_file:
            context.page.close(_manifest(exported, layers_by_run, chosen_steps, samples,
                                         options, logdir),
                               grid_images.encode_png(options.cmap.table[None]))
            page_file.close()
            temporaries.finish(page_path, html_path)
            context.index_file({"format": "html"}, HTML_NAME, out)
        index.close()
        finished = True
    finally:
        if not finished:
            if page_file:
                page_file.close()
            index.abandon()
            temporaries.remove_all()
        shutil.rmtree(scratch, ignore_errors=True)
    return ExportResult(out, os.path.join(out, INDEX_NAME), html_path, context.files)


@contextlib.contextmanager
def _progress_bar(show, total):
    """A rich progress bar over `total` layer steps (nothing when `show` is false); yields
    the function that advances it by one."""
    if not show:
        yield lambda: None
        return
    from rich import progress

    bar = progress.Progress(progress.TextColumn("exporting"), progress.BarColumn(),
                            progress.MofNCompleteColumn(), progress.TextColumn("layer steps"),
                            progress.TimeRemainingColumn())
    task = bar.add_task("export", total=total)
    with bar:
        yield lambda: bar.advance(task)
