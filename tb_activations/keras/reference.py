"""Keras (any backend): what each unit responds to over a reference set, one pass in batches.

Each batch runs through the same traced forward pass as the probe (keras.capture), and a
second traced function, written once in keras.ops for every backend, reduces each layer's
output on the device to (batch, units) arrays: the unit's maximum over its map (NaN positions
left out), the first position of that maximum, its mean of max(a, 0), whether its map is all
zeros, and (channel_selection="top") its mean |a|. Only those reach the host, where
rendering.reference merges them; a short last batch is padded to the traced batch size and
its padding dropped on the host, so a pass traces at most once per batch size.
"""

import weakref

import keras
import numpy as np

from tb_activations.format import layout as layout_lib
from tb_activations.keras import capture as capture_lib
from tb_activations.keras import distribute
from tb_activations.keras import log as log_lib
from tb_activations.keras import receptive_fields
from tb_activations.rendering import reference as reference_lib
from tb_activations.rendering import steps
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing import tf_summary

DEFAULT_BATCH_SIZE = 64
# The traced reduction of each probe (kept with it, gone with it).
_reducers = weakref.WeakKeyDictionary()


def reduce_output(x, plan, tracked, top):
    """{maximum, position, positive_mean, zero[, magnitude]}: (batch, units) arrays of one
    layer output, in keras.ops (rendering.reference's module docstring says what they are)."""
    x = keras.ops.cast(x, "float32")
    if plan.channels_first:
        rank = len(x.shape)
        x = keras.ops.transpose(x, [0] + list(range(2, rank)) + [1])
    positions = int(np.prod(plan.canonical_shape[:-1], dtype=np.int64))
    x = keras.ops.reshape(x, (-1, positions, plan.canonical_shape[-1]))
    if not top:
        x = x[:, :, :tracked]
    finite_or_inf = keras.ops.where(keras.ops.isnan(x), float("-inf"), x)
    maximum = keras.ops.max(finite_or_inf, axis=1)
    where_maximum = keras.ops.equal(finite_or_inf, maximum[:, None, :])
    index = keras.ops.arange(positions, dtype="int32")[None, :, None]
    reduced = {"maximum": maximum,
               "position": keras.ops.min(keras.ops.where(where_maximum, index, positions),
                                         axis=1),
               "positive_mean": keras.ops.mean(keras.ops.where(x > 0, x, 0.0), axis=1),
               "zero": keras.ops.all(keras.ops.equal(x, 0.0), axis=1)}
    if top:
        reduced["magnitude"] = keras.ops.mean(
            keras.ops.where(keras.ops.isfinite(x), keras.ops.abs(x), 0.0), axis=1)
    return reduced


def _reducer(probe, layers):
    """The traced reduction of `probe`'s layer outputs (traced on first use)."""
    if probe not in _reducers:
        plans = {record.path: record.layout for record in probe.records}
        options = probe.options
        top = options.channel_selection == "top"
        tracked = {path: reference_lib.tracked_units(plan, options)
                   for path, plan in plans.items()}

        def reduce_all(outputs):
            return {path: reduce_output(tensor, plans[path], tracked[path], top)
                    for path, tensor in outputs.items()}

        _reducers[probe] = capture_lib.backend_module().trace_reduction(reduce_all, layers)
    return _reducers[probe]


def _is_array_like(value):
    return isinstance(value, (np.ndarray, list, dict)) or (
        hasattr(value, "shape") and hasattr(value, "__array__"))


def check_reference(reference, repeated):
    """`reference` split as (x, y or None, whether it is arrays); raises saying what it may be.
    `repeated`: it is read at every reference step, so a one-shot iterator is refused."""
    if reference is None:
        raise ValueError("the reference set is None: pass (x, y), x, or an iterable of (x, y) "
                         "batches")
    if isinstance(reference, tuple) and len(reference) == 2 and _is_array_like(reference[0]):
        return reference[0], reference[1], True
    if _is_array_like(reference):
        return reference, None, True
    if not hasattr(reference, "__iter__"):
        raise TypeError("the reference set must be (x, y), x (arrays) or an iterable of (x, y) "
                        "or x batches (a tf.data.Dataset, a PyDataset), got %s"
                        % type(reference).__name__)
    if repeated and iter(reference) is reference:
        raise ValueError("the reference set is read at every reference step, and %s can be "
                         "read once only: pass arrays, a tf.data.Dataset or a PyDataset"
                         % type(reference).__name__)
    return reference, None, False


def reference_batches(x, y, arrays, batch_size):
    """Yields (x batch, y batch or None) as numpy: slices of arrays, or an iterable's own
    batches ((x, y), (x, y, sample_weight) or x each)."""
    if arrays:
        size = len(keras.tree.flatten(x)[0])
        for start in range(0, size, batch_size):
            take = slice(start, start + batch_size)
            yield (keras.tree.map_structure(lambda a: np.asarray(a)[take], x),
                   None if y is None else np.asarray(y)[take])
        return
    elements = x
    if isinstance(x, keras.utils.PyDataset):
        elements = (x[index] for index in range(len(x)))
    for element in elements:
        if isinstance(element, (tuple, list)) and len(element) in (2, 3) and not isinstance(
                element[0], (int, float)):
            yield (keras.tree.map_structure(np.asarray, element[0]), np.asarray(element[1]))
        else:
            yield keras.tree.map_structure(np.asarray, element), None


def _padded(arrays, size):
    """`arrays` (a structure of batches of `n` <= size rows) with the last row repeated up to
    `size` rows."""
    def pad(array):
        extra = size - len(array)
        return array if extra <= 0 else np.concatenate([array, np.repeat(array[-1:], extra, 0)])
    return keras.tree.map_structure(pad, arrays)


def reference_step(model, reference, layers=None, options=layout_lib.RenderOptions(), k=9,
                   batch_size=DEFAULT_BATCH_SIZE, class_names=None, with_inputs=True,
                   repeated=False):
    """One reference pass: [(tag, SummaryMetadata, [bytes])] of every selected layer (and the
    reference inputs' thumbnails and labels with `with_inputs`); raises before anything is
    written if any batch fails."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("the reference batch size must be a positive int, got %r"
                         % (batch_size,))
    x, y, arrays = check_reference(reference, repeated)
    backend = capture_lib.backend_module()
    known = len(keras.tree.flatten(x)[0]) if arrays else None
    pending = None
    traced_size = None
    for x_batch, y_batch in reference_batches(x, y, arrays, batch_size):
        batch = capture_lib.prepare_probe(model, x_batch)
        rows = len(keras.tree.flatten(batch)[0])
        traced_size = traced_size or rows
        probe = capture_lib.probe_for(model, _padded(batch, traced_size), layers, options,
                                      token_grid=False, attention=False)
        outputs, _ = probe.run(_padded(batch, traced_size))
        reduced = _reducer(probe, outputs)(outputs)
        reduced = {path: {name: backend.to_numpy(value)[:rows] for name, value in arrays_.items()}
                   for path, arrays_ in reduced.items()}
        if pending is None:
            image = None if isinstance(batch, (list, dict)) else batch.shape[1:]
            fields = (receptive_fields.receptive_fields(model, batch[:1])
                      if image is not None and reference_lib.image_input(image) else None)
            pending = reference_lib.ReferencePass(
                probe.records, options, k, class_names, receptive_fields=fields,
                input_shape=image, with_inputs=with_inputs, inputs=known)
        pending.add(reduced, y_batch, None if isinstance(batch, (list, dict)) else batch)
    if pending is None:
        raise ValueError("the reference set is empty")
    return pending.rendered()


def log_reference(model, x, y=None, step=None, layers=None, log_dir=None, k=9,
                  batch_size=DEFAULT_BATCH_SIZE, class_names=None, on_error="warn", **options):
    """Writes what each unit of the selected layers responds to over the reference set `x`
    (arrays, or an iterable of (x, y) or x batches read once) with labels `y` (class ids or
    one-hot; optional) at `step`: per layer its units' `k` top inputs (values, positions),
    zero fractions and per-class means; the inputs' thumbnails and labels once per writer.

    Written where log_activations writes (`log_dir=`, else the default tf.summary writer),
    with the same `on_error`, and as one event: a pass that fails writes nothing. `options`
    are RenderOptions fields (max_channels and channel_selection choose the units). Returns
    whether it wrote.
    """
    settings = steps.render_options(**options)
    failures.check_on_error(on_error)
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
            step = log_lib.default_step()
    step = destinations.step_number(step)
    place = tf_summary.default_writer() if log_dir is None else events.shared_writer_key(log_dir)
    if failures.is_stopped(place):
        return False
    destination = "the default tf.summary writer" if log_dir is None else log_dir
    holder = place if log_dir is None else failures.write_or_stop(
        on_error, place, destination, lambda: events.shared_writer(log_dir))
    if holder is False:
        return False
    with_inputs = not destinations.holds_probe(holder, model, destinations.REFERENCE_INPUTS)
    rendered = reference_step(model, x if y is None else (x, y), layers, settings, k,
                              batch_size, class_names, with_inputs)

    def write():
        written = destinations.write_rendered(rendered, step, None if log_dir is None else holder)
        if written and with_inputs:
            destinations.record_probe(holder, model, destinations.REFERENCE_INPUTS)
        return written

    return failures.write_or_stop(on_error, place, destination, write)
