"""The writer op: one tag per layer, one blob sequence value per logged step.

Logging is two phases so the callback can split them across threads: `capture` runs the
probe through the model (the only part the training thread must wait for); `render_capture`
reduces the layer outputs in TensorFlow, copies the reductions out, tiles and encodes them,
and `write_rendered` writes them.
"""

import dataclasses
import functools
import json
import weakref

import numpy as np
import tensorflow as tf

from tb_activations import distribute
from tb_activations import extraction
from tb_activations import layout as layout_lib
from tb_activations import metadata
from tb_activations import overview
from tb_activations import rendering

from tensorflow.python.ops import gen_summary_ops
from tensorflow.python.ops import summary_ops_v2

# Writers that already hold this model's probe inputs, so they are stored once per run.
_writers_with_probe = weakref.WeakKeyDictionary()
# A capture whose layer outputs take more than this is reduced at once, so the few captures
# the callback's queue holds stay small (MobileNetV2's take 75 MB a probe sample).
MAX_DEFERRED_BYTES = 128 << 20


def render_options(**options):
    """RenderOptions from keyword arguments, naming any that do not exist."""
    known = {field for field in layout_lib.RenderOptions.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError("unknown option(s) %s; the options are %s"
                        % (", ".join(unknown), ", ".join(sorted(known))))
    return layout_lib.RenderOptions(**options)


class Capture:
    """One probe pass: its layer outputs as tensors until `reduce()` is first called, which
    reduces them in TensorFlow and copies the reductions to numpy (in the callback, on the
    writer thread); `model_outputs` as numpy when they were asked for."""

    def __init__(self, probe, layers, model_outputs):
        self.records = probe.records
        self.options = probe.options
        self.model_outputs = model_outputs
        self._probe = probe
        self._layers = layers
        self._reduced = None

    def reduce(self):
        """{path: reduction.reduce_layer_output's arrays} with plain statistics; reduced again
        with the NaN/Inf-safe ones (traced the first time they are needed) only if some
        layer's come out non-finite (its layer-level mean, over every unit, is then
        non-finite). Done once; the layer outputs are let go."""
        if self._reduced is None:
            reduced = self._probe.reduce(self._layers)
            mean = metadata.STAT_FIELDS.index("mean")
            if not all(np.isfinite(output["layer"][..., mean]).all()
                       for output in reduced.values()):
                reduced = self._probe.reduce(self._layers, finite_only=True)
            self._reduced, self._layers = reduced, None
        return self._reduced


def capture(model, arrays, layers=None, options=layout_lib.RenderOptions(),
            model_outputs=False):
    """The probe pass: what whoever logs must wait for before the model changes (and the
    reduction too when the layer outputs are larger than MAX_DEFERRED_BYTES)."""
    probe = extraction.probe_for(model, arrays, layers, options)
    layer_outputs, outputs = probe.run(arrays)
    captured = Capture(probe, layer_outputs,
                       [output.numpy() for output in outputs] if model_outputs else [])
    if probe.output_bytes > MAX_DEFERRED_BYTES:
        captured.reduce()
    return captured


def layer_content(record, samples, options):
    """Plugin content of a layer tag: its tiling, and the caps that shaped it."""
    content = record.layout.to_content()
    content.update(kind=metadata.KIND_LAYER, layer=record.path, layer_class=record.layer_class,
                   order=record.order, samples=samples, caps=dataclasses.asdict(options))
    return content


@functools.lru_cache(maxsize=4096)
def layer_metadata(record, samples, options):
    """SummaryMetadata of a layer tag (shared: not to be changed): the same at every step of
    a probe, and building it anew was ~2 ms of a MobileNetV2 step."""
    return metadata.create_summary_metadata(layer_content(record, samples, options))


def render_layers(captured, statistics=True, only=None):
    """[(plugin content, [PNG per sample] + [statistics blob])] for every layer of a capture
    (or those whose paths are in `only`): what a logged step stores, and what the live probe
    answers (which sends the statistics as JSON, so asks for no blob)."""
    rendered = []
    for record in captured.records:
        if only is not None and record.path not in only:
            continue
        reduced = captured.reduce()[record.path]
        samples = reduced["tiles"].shape[0]
        rendered.append((layer_content(record, samples, captured.options),
                         rendering.render_layer(reduced, record.layout, statistics)))
    return rendered


def render_capture(captured):
    """[(tag, SummaryMetadata, [bytes])] for every layer of a capture, then the step's
    overview (every layer summarised in one blob); raises before any write if anything
    fails, so a failed log writes nothing for that step."""
    rendered = [(metadata.layer_tag(content["layer"]),
                 layer_metadata(record, content["samples"], captured.options), values)
                for record, (content, values) in zip(captured.records, render_layers(captured))]
    summaries = {path: overview.layer_summary(reduced)
                 for path, reduced in captured.reduce().items()}
    rendered.append((metadata.OVERVIEW_TAG, metadata.create_summary_metadata(
        {"kind": metadata.KIND_OVERVIEW}), [overview.encode_overview(summaries)]))
    return rendered


def render_probe(arrays, input_names, max_image=layout_lib.RenderOptions().max_image):
    """[(tag, SummaryMetadata, [PNG per sample])] for each image-like probe input, its
    pictures no larger than `max_image` a side."""
    rendered = []
    for name, array in zip(input_names, tf.nest.flatten(arrays)):
        if not rendering.is_image_like(array.shape[1:]):
            continue
        content = {"kind": metadata.KIND_PROBE, "input": name,
                   "shape": [None] + list(array.shape[1:]), "samples": int(array.shape[0])}
        pictures = [rendering.encode_png(rendering.probe_picture(sample, max_image))
                    for sample in array]
        rendered.append((metadata.probe_tag(name), metadata.create_summary_metadata(content),
                         pictures))
    return rendered


def render_epoch_end(epoch):
    """[(tag, SummaryMetadata, [JSON])]: Keras epoch `epoch` (0-based, the step Keras's
    TensorBoard callback logs its epoch scalars at) ended at the step this is written at."""
    return [(metadata.EPOCH_TAG, metadata.create_summary_metadata({"kind": metadata.KIND_EPOCH}),
             [json.dumps({"epoch": int(epoch)}).encode("utf-8")])]


def input_names(model, arrays):
    if isinstance(arrays, dict):
        return sorted(arrays)
    names = [extraction.producing_layer_name(t) for t in getattr(model, "inputs", None) or []]
    count = len(tf.nest.flatten(arrays))
    if len(names) != count or not all(names):
        names = ["input"] if count == 1 else ["input_%d" % i for i in range(count)]
    return names


def write_rendered(rendered, step):
    """Writes to the default writer, as tf.summary.write would; True if it was recorded.

    One WriteSummary op per tag on the writer's resource, the recording condition checked
    once: tf.summary.write's own checks and conversions, repeated per tag, took as long as
    the writes themselves (MobileNetV2: 18 -> 9.5 ms a step; MNIST CNN 0.8 -> 0.4 ms).
    """
    writer = _default_writer()
    if writer is None or not bool(tf.summary.should_record_summaries()):
        return False
    with tf.device("cpu:0"):
        step = tf.constant(step, tf.int64)
        for tag, summary_metadata, values in rendered:
            gen_summary_ops.write_summary(writer._resource, step,
                                          tf.constant(values, dtype=tf.string), tag,
                                          summary_metadata.SerializeToString())
    return True


def _default_writer():
    return getattr(summary_ops_v2._summary_state, "writer", None)


def log_activations(model, inputs, step=None, layers=None, **options):
    """Writes every selected layer's grids and statistics for `inputs` at `step`.

    Uses the default tf.summary writer, like tf.summary.image; the probe inputs themselves
    are stored once per writer. Returns False (doing nothing) when no summary would be
    recorded or this process is not the chief of a multi-worker job.
    `options` are RenderOptions fields (max_channels, channel_selection, max_tile, ...).
    """
    settings = render_options(**options)
    if not distribute.is_chief() or not bool(tf.summary.should_record_summaries()):
        return False
    if step is None:
        step = tf.summary.experimental.get_step()
        if step is None:
            raise ValueError("no step given and no default step set "
                             "(pass step= or call tf.summary.experimental.set_step)")
    step = int(np.asarray(step))
    arrays = extraction.prepare_probe(model, inputs)
    captured = capture(model, arrays, layers, settings)
    rendered = render_capture(captured)
    writer = _default_writer()
    first_for_writer = writer is None or model not in _writers_with_probe.get(writer, ())
    if first_for_writer:
        rendered = render_probe(arrays, input_names(model, arrays),
                                settings.max_image) + rendered
    written = write_rendered(rendered, step)
    if written and writer is not None:
        _writers_with_probe.setdefault(writer, weakref.WeakSet()).add(model)
    return written
