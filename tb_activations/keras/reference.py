"""Keras (any backend): what each unit responds to over a reference set, one pass in batches.

The layers and their layouts are the probe's (keras.capture, planned once); each batch runs
through one traced function of the forward pass and each layer output's reduction (written
once in keras.ops for every backend) to (batch, units) arrays on the device: the unit's
maximum over its map (NaN positions left out), its mean of max(a, 0), whether its map is all
zeros, (channel_selection="top") its mean |a|, and the first position of that maximum for
the batch's top k inputs per unit only. Only those reach the host, where rendering.reference
merges them; a short last batch is padded to the traced batch size (its real row count is an
input of the traced function, so padding never enters a top k) and its padding dropped on
the host, so a pass traces at most once per batch size.
"""

import math
import weakref

import keras
import numpy as np

from tb_activations.capture import path_selection
from tb_activations.format import layout as layout_lib
from tb_activations.keras import capture as capture_lib
from tb_activations.keras import distribute
from tb_activations.keras import log as log_lib
from tb_activations.keras import receptive_fields
from tb_activations.keras import selection
from tb_activations.rendering import reference as reference_lib
from tb_activations.rendering import steps
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing import tf_summary

DEFAULT_BATCH_SIZE = 64
# The traced reference passes of each probe (kept with it, gone with it): {finite_only: fn}.
_passes = weakref.WeakKeyDictionary()


def top_rows(maxima, rows, k):
    """(units, min(k, batch)) int32: per unit the rows of the batch's `k` largest maxima
    (`maxima`: (units, batch)), by value then lower row first (the only ones that can enter
    rendering.reference's running top k); the padding rows (from `rows` on) rank last, so
    they never displace a real one."""
    batch = maxima.shape[1]
    # Ascending -maximum, 0.0 and -0.0 made one value: a sort may order them apart.
    key = keras.ops.where(maxima == 0, 0.0, -maxima)
    real = keras.ops.less(keras.ops.arange(batch, dtype="int32"), rows)
    key = keras.ops.where(real, key, float("inf"))
    return keras.ops.cast(keras.ops.argsort(key, axis=-1)[:, :min(k, batch)], "int32")


def block_side(positions):
    """The largest divisor of `positions` at most its square root: maps are searched in blocks
    of that many positions."""
    side = math.isqrt(positions)
    while positions % side:
        side -= 1
    return side


def block_maxima(ranked, side):
    """(batch, blocks, units): the maximum of each run of `side` positions of each map of
    `ranked` (batch, positions, units), as a max pooling (TensorFlow's: ~3x faster than its
    max over an axis)."""
    batch, positions, units = ranked.shape
    if side == 1:
        return ranked
    pooled = keras.ops.max_pool(keras.ops.reshape(ranked, (batch, positions // side, side, units)),
                                (1, side), (1, side), "valid", "channels_last")
    return keras.ops.reshape(pooled, (batch, positions // side, units))


def gather_runs(x, order, start, length):
    """(units, take, length): x[order[u, j], start[u, j] + i, u] for i < length, of x (batch,
    positions, units), each run laid out contiguously."""
    batch, positions, units = x.shape
    dtype = "int32" if batch * positions * units < 2 ** 31 else "int64"
    first = ((keras.ops.cast(order, dtype) * positions + keras.ops.cast(start, dtype)) * units
             + keras.ops.expand_dims(keras.ops.arange(units, dtype=dtype), 1))
    flat = keras.ops.expand_dims(first, 2) + keras.ops.arange(length, dtype=dtype) * units
    return keras.ops.take(keras.ops.reshape(x, [-1]), flat)


def first_maximum(runs):
    """(first position of each run's maximum (argmax's: Keras's on CPU ranks -0.0 below 0.0; a
    test checks it is the first), its value there) of (units, take, length) runs."""
    position = keras.ops.cast(keras.ops.argmax(runs, axis=-1), "int32")
    value = keras.ops.take_along_axis(runs, keras.ops.expand_dims(position, -1), axis=-1)
    return position, value[..., 0]


def top_positions(ranked, blocks, maxima, order):
    """((units, take) first position of the maximum of each map whose row `order` gives, its
    value there) of `ranked` (batch, positions, units), from the maxima of its blocks
    (block_maxima's) and of its maps (`maxima`, (units, batch)): the first block holding the
    map's maximum, then that block's first position of it. Only the maps of the top rows, and
    of those one block each, are read again: an argmax over every position of every map costs
    TensorFlow several times the model's own pass."""
    side = ranked.shape[1] // blocks.shape[1]
    top = keras.ops.take_along_axis(maxima, order, axis=-1)
    first = keras.ops.argmax(keras.ops.cast(
        gather_runs(blocks, order, 0, blocks.shape[1]) == keras.ops.expand_dims(top, -1),
        "int32"), axis=-1)
    within, value = first_maximum(gather_runs(ranked, order, first * side, side))
    # Exact but where the block's maximum is -0.0: a later block may hold a 0.0, which
    # Keras's argmax ranks above it; such batches search every position of the top maps.
    doubt = keras.ops.any(keras.ops.logical_and(value == 0, keras.ops.signbit(value)))
    return keras.ops.cond(
        doubt, lambda: first_maximum(gather_runs(ranked, order, 0, ranked.shape[1])),
        lambda: (keras.ops.cast(first, "int32") * side + within, value))


def nonnegative(layer):
    """Whether `layer`'s output is never negative (or NaN) by what it is: a ReLU layer of no
    negative slope (Keras refuses a negative threshold), or a relu or relu6 Activation (exact
    classes: a subclass may compute anything)."""
    if type(layer) is keras.layers.ReLU:
        return layer.negative_slope == 0
    return type(layer) is keras.layers.Activation and any(
        layer.activation is activation
        for activation in (keras.activations.relu, keras.activations.relu6))


def reduce_output(x, plan, tracked, top, k, rows, finite_only=False, positive=False):
    """{maximum, order, top_position, top_maximum, positive_mean, zero[, magnitude][, total]}
    of one layer output in keras.ops: (batch, units) arrays (rendering.reference's module
    docstring says what they are), but the first position of each map's maximum and its value
    there (a maximum is 0.0 or -0.0 as found there) come for the batch's top `k` rows per unit
    only, (units, k) as those rows `order` (top_rows', of the first `rows`) gives;
    dense_positions spreads them. The plain pass is exact while no value is NaN and, for
    channel_selection="top" (which gives each map's sum of |a|, `total`), none is infinite
    (each map's mean of max(a, 0), NaN where it holds a NaN, marks its maximum NaN): where one
    is, the batch is reduced again with `finite_only`, which leaves NaN out of the maxima and
    non-finite values out of the mean |a|. `positive`: no value is negative (nonnegative's
    layers), so max(a, 0) is a and the maximum alone says whether a map is all zeros."""
    x = keras.ops.cast(x, "float32")
    if plan.channels_first:
        rank = len(x.shape)
        x = keras.ops.transpose(x, [0] + list(range(2, rank)) + [1])
    positions = int(np.prod(plan.canonical_shape[:-1], dtype=np.int64))
    x = keras.ops.reshape(x, (-1, positions, plan.canonical_shape[-1]))
    if not top:
        x = x[:, :, :tracked]
    ranked = keras.ops.where(keras.ops.isnan(x), float("-inf"), x) if finite_only else x
    blocks = block_maxima(ranked, block_side(positions))
    maximum = keras.ops.max(blocks, axis=1)
    if finite_only:
        reduced = {"positive_mean": keras.ops.mean(keras.ops.where(x > 0, x, 0.0), axis=1),
                   "zero": keras.ops.all(keras.ops.equal(x, 0.0), axis=1)}
        if top:
            reduced["magnitude"] = keras.ops.mean(
                keras.ops.where(keras.ops.isfinite(x), keras.ops.abs(x), 0.0), axis=1)
    else:
        positive_mean = keras.ops.mean(x if positive else keras.ops.relu(x), axis=1)
        # A max may pass over a NaN; max(NaN, 0) and a sum do not.
        maximum = keras.ops.where(keras.ops.isnan(positive_mean), float("nan"), maximum)
        reduced = {"positive_mean": positive_mean}
        if top:
            reduced["total"] = total = keras.ops.sum(keras.ops.abs(x), axis=1)
            reduced["magnitude"] = total / positions
            reduced["zero"] = total == 0
        elif positive:
            reduced["zero"] = maximum == 0
        else:
            # All zeros where the maximum and the minimum are 0: the minimum is taken for the
            # layers (of a batch) where some map's maximum is 0 only.
            reduced["zero"] = keras.ops.cond(
                keras.ops.any(maximum == 0),
                lambda: keras.ops.logical_and(maximum == 0, keras.ops.min(x, axis=1) == 0),
                lambda: keras.ops.zeros(maximum.shape, "bool"))
    maxima = keras.ops.transpose(maximum)
    order = top_rows(maxima, rows, k)
    reduced["top_position"], reduced["top_maximum"] = top_positions(ranked, blocks, maxima,
                                                                    order)
    reduced.update(maximum=maximum, order=order)
    return reduced


def _reference_pass(model, probe, signature, finite_only, k):
    """The forward pass and every drawn layer's reduction as one traced function of (a batch,
    its real row count) (traced on first use), so each layer output can be let go once
    reduced: the batch's outputs are never all held at once, as the probe's would be."""
    traced = _passes.setdefault(probe, {})
    if (finite_only, k) not in traced:
        options = probe.options
        top = options.channel_selection == "top"
        records = probe.records
        owners = path_selection.output_owners(record.path for record in records)
        candidates = [(path, layer) for path, layer in selection.walk_layers(model)
                      if path in owners]
        positive = {path for path, layer in candidates if nonnegative(layer)}
        outputs = {}

        def run(call_model, inputs):
            batch, rows = inputs
            outputs.clear()
            call_model(batch)
            tensors = {name: tensor for path, value in outputs.items()
                       for name, tensor in capture_lib.split_outputs(path, value)}
            return {record.path: reduce_output(
                tensors[record.path], record.layout,
                reference_lib.tracked_units(record.layout, options), top, k, rows, finite_only,
                record.path in positive) for record in records}

        traced[finite_only, k] = capture_lib.backend_module().trace_forward(
            model, run, signature, lambda: capture_lib.recording_outputs(candidates, outputs))
    return traced[finite_only, k]


def dense_positions(arrays, rows):
    """reduce_output's arrays (numpy) as rendering.reference takes them, (rows, units) each:
    the positions of the top rows in a (batch, units) array, 0 elsewhere, and their maxima as
    found there."""
    arrays = dict(arrays)
    order = arrays.pop("order").T
    position = np.zeros(arrays["maximum"].shape, np.int32)
    np.put_along_axis(position, order, arrays.pop("top_position").T, axis=0)
    maximum = np.array(arrays["maximum"])
    np.put_along_axis(maximum, order, arrays.pop("top_maximum").T, axis=0)
    arrays.update(position=position, maximum=maximum)
    return {name: value[:rows] for name, value in arrays.items()}


def reduce_batch(model, probe, batch, rows, k):
    """{path: reduced arrays as numpy} of one (padded) batch, its first `rows` rows, for the
    top `k` inputs per unit (dense_positions'); the finite-only reduction where the plain one
    met NaN (or Inf, as reduce_output says)."""
    to_numpy = capture_lib.backend_module().to_numpy
    inputs = (batch, np.array(rows, np.int32))
    signature = capture_lib.probe_signature(inputs)
    for finite_only in (False, True):
        reduced = {path: {name: to_numpy(value) for name, value in arrays.items()}
                   for path, arrays in _reference_pass(model, probe, signature, finite_only,
                                                       k)(inputs).items()}
        if finite_only or reference_lib.all_finite(
                {path: {name: value[:rows] for name, value in arrays.items()}
                 for path, arrays in reduced.items()}):
            return {path: dense_positions(arrays, rows) for path, arrays in reduced.items()}


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
    reference_lib.check_k(k)
    x, y, arrays = check_reference(reference, repeated)
    known = len(keras.tree.flatten(x)[0]) if arrays else None
    pending = None
    traced_size = None
    for x_batch, y_batch in reference_batches(x, y, arrays, batch_size):
        batch = capture_lib.prepare_probe(model, x_batch)
        rows = len(keras.tree.flatten(batch)[0])
        traced_size = traced_size or rows
        padded = _padded(batch, traced_size)
        probe = capture_lib.probe_for(model, padded, layers, options, token_grid=False,
                                      attention=False)
        reduced = reduce_batch(model, probe, padded, rows, k)
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
    if y is not None and not _is_array_like(x):
        raise ValueError("y= goes with arrays x; an iterable of batches yields its own labels")
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
