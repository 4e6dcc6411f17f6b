"""Keras (TensorFlow, JAX or torch backend): the capture stage, and `log_activations` under a
tf.summary writer or into a `log_dir=`.

Logging is two phases so the callback can split them across threads: `capture` runs the
probe through the model (the only part the training thread must wait for); rendering the
capture (steps.render_capture) reduces the layer outputs in the backend's ops,
copies the reductions out, tiles and encodes them, and `destinations.write_rendered` writes them.
TensorFlow is imported only for the default tf.summary writer.
"""


import keras
import numpy as np

from tb_activations.capture import records as captured_lib
from tb_activations.capture import token_grids
from tb_activations.capture.records import check_attention_flag
from tb_activations.format import layout as layout_lib
from tb_activations.format import tokens as tokens_lib
from tb_activations.keras import capture as capture_lib
from tb_activations.keras import distribute
from tb_activations.rendering import steps
from tb_activations.writing import destination_threads as background_lib
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing import tf_summary

# A capture whose layer outputs take more than this is reduced at once, so the few captures
# the callback's queue holds stay small (MobileNetV2's take 75 MB a probe sample).
MAX_DEFERRED_BYTES = 128 << 20


class Capture:
    """One probe pass: its layer outputs as tensors until `reduce()` is first called, which
    reduces them in the backend's ops and copies the reductions to numpy (in the callback, on the
    writer thread); `model_outputs` as numpy when they were asked for."""

    def __init__(self, probe, layers, model_outputs, heads=None):
        self.records = probe.records
        self._heads = heads or {}
        self._head_numbers = None
        self.options = probe.options
        self.model_outputs = model_outputs
        self._probe = probe
        self._layers = layers
        self._reduced = None

    @property
    def head_numbers(self):
        """{path:attention: per-head numbers as numpy} (rendering.steps.render_capture)."""
        if self._head_numbers is None:
            self._head_numbers = self._probe.head_numbers(self._heads)
            self._heads = None
        return self._head_numbers

    def reduce(self):
        """{path: reduction.reduce_layer_output's arrays} by
        records.reduce_finite_if_needed (the NaN/Inf-safe reduction is traced the first time
        it is needed). Done once; the layer outputs are let go."""
        if self._reduced is None:
            self._reduced = captured_lib.reduce_finite_if_needed(
                lambda finite_only: self._probe.reduce(self._layers, finite_only))
            self._layers = None
        return self._reduced


def capture(model, arrays, layers=None, options=layout_lib.RenderOptions(),
            model_outputs=False, token_grid=None, attention=True):
    """The probe pass: what whoever logs must wait for before the model changes (and the
    reduction too when the layer outputs are larger than MAX_DEFERRED_BYTES)."""
    probe = capture_lib.probe_for(model, arrays, layers, options, token_grid=token_grid,
                                  attention=attention)
    layer_outputs, outputs, heads = probe.run(arrays, heads=True)
    captured = Capture(probe, layer_outputs,
                       [capture_lib.backend_module().to_numpy(output) for output in outputs]
                       if model_outputs else [], heads)
    if probe.output_bytes > MAX_DEFERRED_BYTES:
        captured.reduce()
    return captured


def input_names(model, arrays):
    if isinstance(arrays, dict):
        return sorted(arrays)
    names = [capture_lib.producing_layer_name(t) for t in getattr(model, "inputs", None) or []]
    count = len(keras.tree.flatten(arrays))
    if len(names) != count or not all(names):
        names = ["input"] if count == 1 else ["input_%d" % i for i in range(count)]
    return names


def probe_token_labels(model, arrays, token_labels):
    """The checked token labels of a prepared probe (tokens.resolve: None, lists checked
    against its sample count, or a tokenizer's tokens of its input_ids or first integer
    input); raises saying what is wrong."""
    if token_labels is None:
        return None
    named = [(name, np.asarray(array)) for name, array in
             zip(input_names(model, arrays), keras.tree.flatten(arrays))]
    samples = named[0][1].shape[0] if named and named[0][1].ndim else None
    return tokens_lib.resolve(token_labels, named, samples)


def probe_rendered(model, arrays, max_image, labels):
    """The probe pictures' and token labels' [(tag, metadata, values)], stored once a run."""
    return (steps.render_probe(arrays, input_names(model, arrays), max_image)
            + tokens_lib.render(labels))


def default_step():
    """The default tf.summary step; a ValueError if there is none."""
    import tensorflow as tf

    step = tf.summary.experimental.get_step()
    if step is None:
        raise ValueError("no step given and no default step set "
                         "(pass step= or call tf.summary.experimental.set_step)")
    return step


def log_activations(model, inputs, step=None, layers=None, log_dir=None, on_error="warn",
                    token_grid=None, attention=True, token_labels=None, background=False,
                    **options):
    """Writes every selected layer's grids and statistics for `inputs` at `step`.

    Into an event file of its own in `log_dir` when given (a directory or a URL; required off
    the TensorFlow backend; `step` then too), else to the default tf.summary writer, like
    tf.summary.image; the probe inputs themselves are stored once per writer. Returns False
    (doing nothing) when no summary would be recorded or this process is not the chief of a
    multi-worker job. `on_error="warn"` (default): a failure to write (a full disk) warns
    once and returns False, and so does every later call for that log_dir or writer, at once;
    "raise" raises the EventFileError. Errors in the arguments raise either way.
    `token_grid`: which token outputs (B, prefix + rows * columns, D) are drawn over their
    patch grid: None (default: where a patch Conv2D, strides == kernel_size and padding
    "valid", showed one in the pass), False (never), (rows, columns), or {layer path or glob:
    (rows, columns), False or None}. `attention`: each MultiHeadAttention's probabilities
    drawn as one tile per head (`path:attention`), and over the patch grid
    (`path:attention_map`) where the keys lie on one (default True). `token_labels`: names
    of the sequence positions, stored once per writer for the tab and export: a list (one
    per probe sample) of lists of strings, or a tokenizer (`convert_ids_to_tokens`, e.g.
    Hugging Face's) that names the probe's `input_ids` (or its first integer input).
    `background` (with `log_dir=`): True returns once the probe's forward pass is done (as
    the callback's training thread waits: MobileNetV2 ~1.3x a forward pass instead of ~7x);
    the reduction, rendering and writing run on the run's own thread, in order, one step
    queued at most, as PyTorch's log_activations does by default. `tb_activations.flush()`
    waits until everything is written (before reading the run), `close()` also ends the
    threads; interpreter exit flushes. A failure there is reported by the next call for that
    log_dir, or by flush()/close(), as `on_error` says.
    `options` are RenderOptions fields (max_channels, channel_selection, max_tile, ...).
    """
    settings = steps.render_options(**options)
    token_grid = token_grids.resolve_token_grid_option(token_grid)
    check_attention_flag(attention)
    failures.check_on_error(on_error)
    background_lib.check_background_flag(background)
    if background and log_dir is None:
        raise ValueError("background=True writes into log_dir= on a thread of the run's own; "
                         "the default tf.summary writer is written on the calling thread: "
                         "pass log_dir= and step=, or leave background=False")
    if log_dir is None and keras.backend.backend() != "tensorflow":
        raise ValueError("on Keras's %r backend there is no default tf.summary writer: pass "
                         "log_dir= (the run directory to write into) and step="
                         % keras.backend.backend())
    if log_dir is not None and step is None:
        raise ValueError("log_dir= needs step= (the training step to log at)")
    if not distribute.is_chief():
        return False
    if log_dir is None:
        import tensorflow as tf

        if not bool(tf.summary.should_record_summaries()):
            return False
        if step is None:
            step = default_step()
    step = destinations.step_number(step)
    place = tf_summary.default_writer() if log_dir is None else events.shared_writer_key(log_dir)
    if failures.is_stopped(place) or (log_dir is not None and background_lib.report_failure(
            place, on_error, stacklevel=2, wait=not background)):
        return False
    arrays = capture_lib.prepare_probe(model, inputs)
    if background:  # the caller may change its arrays in place once the call returns
        arrays = keras.tree.map_structure(np.array, arrays)
    labels = probe_token_labels(model, arrays, token_labels)
    captured = capture(model, arrays, layers, settings, token_grid=token_grid,
                       attention=attention)
    if background:
        def write():
            writer = events.shared_writer(log_dir)
            first = not destinations.holds_probe(writer, model)
            destinations.record_probe(writer, model)
            background_lib.queue(place, writer, log_dir, on_error, lambda: (
                probe_rendered(model, arrays, settings.max_image, labels) if first else [])
                + steps.render_capture(captured), step)
            return True

        return failures.write_or_stop(on_error, place, log_dir, write)
    rendered = steps.render_capture(captured)

    def write():
        writer = tf_summary.default_writer() if log_dir is None else events.shared_writer(log_dir)
        return destinations.write_with_probe(
            rendered, step, None if log_dir is None else writer, model,
            lambda: probe_rendered(model, arrays, settings.max_image, labels), holder=writer)

    return failures.write_or_stop(on_error, place, "the default tf.summary writer"
                                  if log_dir is None else log_dir, write)
