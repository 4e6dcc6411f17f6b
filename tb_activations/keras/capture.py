"""Every selected layer's output from one forward pass of any Keras model, on the
TensorFlow, JAX or torch backend.

Sequential, Functional, nested and subclassed models all run their layers through
`Layer.__call__`, which calls the layer's `call`. While the probe function is traced, each
layer's `call` is wrapped to record its first output, so one trace of the model's call yields
every layer's output as a tensor of the same graph (tf.function) or jitted function
(jax.jit), with no sub-model per layer and no static graph needed. The wrappers are removed
as soon as the trace is done (on torch, which runs eagerly, they are put back for each pass).
What differs per backend (tracing, and the reduction's ops) is in the
keras_probe module of tensorflow/, jax/ and torch/; nothing here imports TensorFlow, JAX or torch.

Transformers: every MultiHeadAttention's probabilities (B, heads, Tq, Tk) (and those of an
attention layer of its own, from its Softmax sublayer) come out of the same traced function
(keras/attention.py), at `path:attention`, area-averaged in the backend's ops
to the tile cap before they leave it; a token output (B, prefix + rows * columns, D) after a
patch Conv2D whose output showed that grid while tracing (keras/token_grids.py) is drawn over
it, its prefix tokens apart at `path:prefix_tokens`; where an attention layer's keys lie on
such a grid, the class token's (else the mean query's) attention per head is folded onto it
at `path:attention_map`, and for a ViT-style model the attention rollout over every layer
(attention.rollout, in the same traced function) at `<model name>:attention_rollout`.
`token_grid=` says otherwise (capture.token_grids's rules, as on PyTorch).
"""

import collections
import contextlib
import dataclasses
import functools
import importlib
import math
import re
import sys
import textwrap
import warnings

import keras
import numpy as np

from tb_activations.capture import drawing_plans
from tb_activations.capture import rollout_record
from tb_activations.capture import token_grids
from tb_activations.capture.records import LayerRecord, UndrawableLayerError
from tb_activations.capture.records import check_attention_flag
from tb_activations.format import layout as layout_lib
from tb_activations.keras import attention as attention_lib
from tb_activations.keras import compat
from tb_activations.keras import selection
from tb_activations.keras import token_grids as keras_token_grids
from tb_activations.keras.compat import model_inputs, producing_layer_name

# The module that traces and reduces on each Keras backend we support.
BACKEND_MODULES = {"tensorflow": "tb_activations.tensorflow.keras_probe",
                   "jax": "tb_activations.jax.keras_probe",
                   "torch": "tb_activations.torch.keras_probe"}


def check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError("expected a Keras 3 model (keras.Model), got %s" % type(model).__name__)
    if keras.backend.backend() not in BACKEND_MODULES:
        raise RuntimeError(
            "tb-activations runs Keras models on the %s backends, but Keras runs on its %r "
            "backend here: set KERAS_BACKEND to one of them before importing keras"
            % (", ".join(sorted(BACKEND_MODULES)), keras.backend.backend()))
    if not model.built:
        raise ValueError(
            "model %r is not built, so its layers have no outputs yet: call it once on a batch "
            "or build it with model.build(input_shape) first" % model.name)


def backend_module():
    """The module that traces and reduces on the Keras backend in use (imported on first
    use: TensorFlow only on the TensorFlow backend)."""
    return importlib.import_module(BACKEND_MODULES[keras.backend.backend()])


def _as_array(value, what):
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise TypeError("%s must be a numeric array, got dtype %s" % (what, array.dtype))
    return array


def _conform(array, spec, what):
    """`array` cast to the dtype the model input `spec` expects, after checking its shape."""
    expected = tuple(spec.shape)
    if array.ndim != len(expected) or any(
            e is not None and e != a for e, a in zip(expected[1:], array.shape[1:])):
        raise ValueError("%s has shape %s but the model expects %s (batch first)"
                         % (what, array.shape, tuple(expected)))
    dtype = np.dtype(keras.backend.standardize_dtype(spec.dtype))
    if dtype.kind in "iub" and array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError("%s holds non-integer values but the model input is %s (e.g. token "
                             "ids for an Embedding)" % (what, dtype))
    return array.astype(dtype, copy=False)


def describe_outputs(model):
    """[{"name", "shape" (no batch axis)}] of a model's outputs; [] when it does not say
    (a subclassed model)."""
    return [{"name": producing_layer_name(tensor), "shape": list(tensor.shape[1:])}
            for tensor in getattr(model, "outputs", None) or []]


def first_batch_inputs(dataset):
    """The inputs of a dataset's first element, read the way `fit` reads its elements: an
    (x, y) or (x, y, sample_weight) tuple gives x."""
    for element in dataset.take(1):
        return element[0] if isinstance(element, tuple) else element
    raise ValueError("the probe dataset is empty: pass a batched dataset holding at least one "
                     "batch, e.g. val_ds.take(1)")


def prepare_probe(model, probe):
    """The probe as numpy arrays of the dtypes and structure the model takes.

    Raises a ValueError/TypeError naming the input that does not fit.
    """
    if probe is None:
        raise ValueError("the probe is None: pass a batch of inputs, e.g. x_val[:4]")
    if _is_dataset(probe):
        probe = first_batch_inputs(probe)
    inputs = model_inputs(model)
    if isinstance(probe, dict):
        arrays = {key: _as_array(value, "probe[%r]" % key) for key, value in probe.items()}
        if inputs is not None:
            # Keras also takes a dict keyed by input names for list inputs.
            specs = inputs if isinstance(inputs, dict) else {
                spec.name: spec for spec in keras.tree.flatten(inputs)}
            missing, extra = set(specs) - set(arrays), set(arrays) - set(specs)
            if missing or extra:
                raise ValueError("probe keys %s do not match the model inputs %s"
                                 % (sorted(arrays), sorted(specs)))
            arrays = {key: _conform(arrays[key], specs[key], "probe[%r]" % key)
                      for key in specs}
    elif isinstance(probe, (list, tuple)):
        arrays = [_as_array(value, "probe[%d]" % i) for i, value in enumerate(probe)]
        specs = keras.tree.flatten(inputs) if inputs is not None else None
        if specs is not None:
            if len(specs) != len(arrays):
                raise ValueError("the model takes %d inputs but the probe has %d arrays"
                                 % (len(specs), len(arrays)))
            arrays = [_conform(a, s, "probe[%d]" % i)
                      for i, (a, s) in enumerate(zip(arrays, specs))]
    else:
        arrays = _as_array(probe, "the probe")
        specs = keras.tree.flatten(inputs) if inputs is not None else None
        if specs is not None:
            if len(specs) != 1:
                raise ValueError("the model takes %d inputs (%s): pass the probe as a list or "
                                 "dict" % (len(specs), ", ".join(s.name for s in specs)))
            arrays = _conform(arrays, specs[0], "the probe")
    leaves = keras.tree.flatten(arrays)
    if not leaves:
        raise ValueError("the probe holds no arrays")
    sizes = {leaf.shape[0] if leaf.ndim else None for leaf in leaves}
    if None in sizes or 0 in sizes or len(sizes) != 1:
        raise ValueError("every probe array needs the same non-zero batch size as its first "
                         "axis, got shapes %s" % [leaf.shape for leaf in leaves])
    return keras.tree.map_structure(
        lambda a: a.astype(np.float32) if a.dtype == np.float64 else a, arrays)


def _is_dataset(probe):
    """Whether the probe is a tf.data.Dataset (TensorFlow imported only if it already is:
    without it, nothing can be one)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(probe, tf.data.Dataset)


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """The shape and dtype (a numpy name) of one probe input, as each backend traces for."""

    shape: tuple
    dtype: str


def probe_signature(arrays):
    return keras.tree.map_structure(lambda a: ArraySpec(a.shape, a.dtype.name), arrays)


@contextlib.contextmanager
def recording_outputs(candidates, outputs, muted=None):
    """While open, each candidate layer's first output per trace lands in `outputs[path]`
    (none while `muted[0]` is non-zero)."""
    def recorder(path, original):
        @functools.wraps(original)
        def recorded(*args, **kwargs):
            result = original(*args, **kwargs)
            if not (muted and muted[0]):
                outputs.setdefault(path, result)
            return result
        return recorded

    with compat.instance_methods([(layer, "call", recorder(path, layer.call))
                                  for path, layer in candidates]):
        yield


@contextlib.contextmanager
def recording(candidates, outputs, attention_layers, attention, repeated=None,
              weight_layers=()):
    """recording_outputs, and attention_lib.recording_attention of `attention_layers` into
    `attention` (the layers called again into `repeated`), its second calls muted, and
    attention_lib.recording_weights of `weight_layers` into `attention`."""
    muted = [0]

    @contextlib.contextmanager
    def mute():
        muted[0] += 1
        try:
            yield
        finally:
            muted[0] -= 1

    with recording_outputs(candidates, outputs, muted), \
            attention_lib.recording_attention(attention_layers, attention, mute, repeated), \
            attention_lib.recording_weights(weight_layers, attention):
        yield


def split_outputs(path, value):
    """[(name, tensor)] of a layer output: the first tensor keeps the path, others get :i."""
    tensors = [t for t in keras.tree.flatten(value) if keras.ops.is_tensor(t)]
    return [(path if i == 0 else "%s:%d" % (path, i), t) for i, t in enumerate(tensors)]


def trace_error_text(error):
    """The model's own message in an error raised while tracing, without AutoGraph's listing
    of frames (the traceback has them) or Keras's terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    if text.startswith("in user code:"):
        marker = "\n    %s: " % type(error).__name__
        if marker in text:
            text = textwrap.dedent("    " + text.rsplit(marker, 1)[1])
    return text.strip()


def plan_drawable(tensor, batch, options, channels_first):
    """The grid layout of one layer output; raises ValueError saying why it has none."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    if not (keras.backend.is_float_dtype(dtype) or keras.backend.is_int_dtype(dtype)
            or dtype == "bool"):
        raise ValueError("its dtype %s is not real-valued" % dtype)
    # A TensorFlow shape of unknown rank has rank None; other backends' shapes are tuples.
    if getattr(tensor.shape, "rank", 0) is None or len(tensor.shape) < 1:
        raise ValueError("its shape %s has no batch axis" % tensor.shape)
    if tensor.shape[0] is not None and tensor.shape[0] != batch:
        raise ValueError("its first axis has %d entries where the probe batch has %d"
                         % (tensor.shape[0], batch))
    return layout_lib.plan_layout(tensor.shape[1:], options, channels_first=channels_first)


@dataclasses.dataclass(frozen=True)
class Drawing:
    """One drawn output of the probe pass: its stored `plan` (None: kept whole, for
    get_activations), the `reduction_plan` its reduction follows (the averaged shape of
    attention probabilities), and `derive(tensors, attention)`, its tensor from the pass's
    {name: layer output} and {path: (layer, probabilities)}, in the backend's ops."""

    name: str
    plan: object
    reduction_plan: object
    derive: object
    itemsize: int


def token_drawings(name, tensor, plan, options, token_grid, grids):
    """[Drawing] of one layer output: a token output on a patch grid as its grid (channels
    last) and its prefix tokens, anything else as it is."""
    itemsize = np.dtype(keras.backend.standardize_dtype(tensor.dtype)).itemsize
    whole = [Drawing(name, plan, plan, lambda tensors, _: tensors[name], itemsize)]
    if len(tensor.shape) != 3 or plan.channels_first:
        return whole
    _, tokens, features = tuple(tensor.shape)
    chosen = token_grids.grid_choice(name, tokens, features, token_grid, (), grids)
    if chosen is None:
        return whole
    grid, prefix = chosen
    rows, columns = grid.rows, grid.columns
    grid_plan = drawing_plans.token_grid_plan((rows, columns, prefix), features, options)
    drawings = [Drawing(name, grid_plan, grid_plan, lambda tensors, _: keras.ops.reshape(
        tensors[name][:, prefix:, :], (-1, rows, columns, features)), itemsize)]
    if prefix:
        prefix_plan = drawing_plans.prefix_tokens_plan((rows, columns, prefix), features,
                                                       options)
        drawings.append(Drawing(name + layout_lib.PREFIX_TOKENS_SUFFIX, prefix_plan, prefix_plan,
                                lambda tensors, _: tensors[name][:, :prefix, :], itemsize))
    return drawings


def attention_drawings(path, probabilities, batch, options, token_grid, grids, downscale):
    """[Drawing] of one attention layer's (B, heads, Tq, Tk) probabilities: per head,
    area-averaged by `downscale` (the backend's area_downscale_heads; None: kept whole, for
    get_activations) so that the reduction plans the averaged shape while the stored plan
    says the whole one; and, when its keys lie on a patch grid, the class token's (else the
    mean query's) attention per head folded onto that grid."""
    if probabilities.shape[0] is not None and probabilities.shape[0] != batch:
        raise ValueError("its attention holds %d maps where the probe batch has %d (axes "
                         "that attention_axes leaves out folded into the batch axis)"
                         % (probabilities.shape[0], batch))
    _, heads, queries, keys = tuple(probabilities.shape)
    name = path + layout_lib.ATTENTION_SUFFIX
    if downscale is None:
        return [Drawing(name, None, None, lambda _, attention: attention[path][1], 4)]
    factors = (layout_lib.downscale_factor(queries, options.max_tile),
               layout_lib.downscale_factor(keys, options.max_tile))
    stored, averaged = drawing_plans.attention_plans(
        drawing_plans.averaged_shape(heads, queries, keys, factors), queries, keys, factors,
        options)
    drawings = [Drawing(name, stored, averaged, lambda _, attention: downscale(
        attention[path][1], *factors), 4)]
    chosen = token_grids.grid_choice(path, keys, heads, token_grid, (), grids)
    if chosen is not None:
        grid, prefix = chosen
        rows, columns = grid.rows, grid.columns

        def folded(_, attention):
            values = attention[path][1]
            row = values[:, :, 0, prefix:] if prefix else keras.ops.mean(values, axis=2)
            return keras.ops.transpose(keras.ops.reshape(row, (-1, heads, rows, columns)),
                                       (0, 2, 3, 1))

        plan = drawing_plans.attention_map_plan((rows, columns, prefix), heads, options,
                                                drawing_plans.attention_query(prefix))
        drawings.append(Drawing(path + layout_lib.ATTENTION_MAP_SUFFIX, plan, plan, folded, 4))
    return drawings


def rollout_drawing(model_name, attention, batch, options, token_grid, grids, reduce):
    """The Drawing of the attention rollout over the layers of `attention` ([(path,
    (B, heads, Tq, Tk) probabilities)], call order), the class token's row over the patch
    grid, or None where the pass is not a ViT-style stack (as torch/rollout.py: every layer
    self-attention over the same tokens of each sample, once a pass, a class token and a
    patch grid: the caller leaves out a pass whose layers ran twice)."""
    shapes = {tuple(probabilities.shape) if probabilities is not None else None
              for _, probabilities in attention}
    if len(shapes) != 1 or None in shapes:
        return None
    samples, heads, queries, keys = next(iter(shapes))
    if samples != batch or queries != keys:
        return None
    chosen = token_grids.grid_choice(attention[0][0], keys, heads, token_grid, (), grids)
    if chosen is None or not chosen[1]:
        return None
    rows, columns, prefix = chosen[0].rows, chosen[0].columns, chosen[1]
    paths = [path for path, _ in attention]

    def derive(_, recorded):
        product = attention_lib.rollout([recorded[path][1] for path in paths])
        maps = keras.ops.reshape(product[:, 0, prefix:], (-1, rows, columns))
        return maps[..., None] if reduce else maps

    plan = rollout_record.rollout_plan((rows, columns, prefix), options) if reduce else None
    return Drawing(rollout_record.rollout_name(model_name), plan, plan, derive, 4)


def head_grid(drawings, probabilities):
    """(rows, columns, prefix) of the attention map among `drawings` when the queries lie on
    it too (self-attention), else None: the grid the mean attention distance is measured on."""
    _, _, queries, keys = tuple(probabilities.shape)
    if queries != keys:
        return None
    return drawing_plans.drawn_map_grid((drawing.name, drawing.plan) for drawing in drawings)


class ActivationProbe:
    """One traced function: probe batch in, every selected layer's output out.

    Traced once for a fixed probe signature; the model's variables are read at each call,
    so it follows training. `reduce=False` keeps every output (get_activations);
    `reduce=True` keeps the outputs a grid can show and plans their layouts, and the method
    `reduce` turns them into the statistics, downscaled selected tiles and ranges that tiling
    needs (the callback and log_activations), so little leaves the backend. The reduction is
    a second traced function (see tensorflow.keras_probe.trace_reduction); `output_bytes` is what
    the kept outputs of one call take. Outputs no grid can show (strings, dynamic shapes, no
    batch axis) are skipped with a warning when the selection is the default, and raise
    UndrawableLayerError when `layers=` selects them.
    """

    def __init__(self, model, signature, layers=None, options=layout_lib.RenderOptions(),
                 reduce=True, token_grid=None, attention=True):
        check_model(model)
        record_attention = check_attention_flag(attention)
        self._backend = backend_module()
        self.options = options
        self.records = []
        token_grid = token_grids.resolve_token_grid_option(token_grid)
        candidates = selection.walk_layers(model)
        chosen = selection.select_layers(candidates, layers)
        chosen_paths = {path for path, _ in chosen}
        classes = {path: type(layer).__name__ for path, layer in candidates}
        channels_first = {path: getattr(layer, "data_format", None) == "channels_first"
                          for path, layer in candidates}
        outputs = {}
        attention = {}  # path -> (layer, (B, heads, Tq, Tk) probabilities or None)
        repeated = set()  # paths of the attention layers called more than once a pass
        called = set()
        self.skipped = []
        self.output_bytes = 0 if reduce else None
        self._drawings = {}  # record path -> Drawing
        self._heads = {}  # path:attention -> (layer path, grid of its distance or None, keys)
        batch = keras.tree.flatten(signature)[0].shape[0]
        downscale = self._backend.area_downscale_heads if reduce else None

        def add(drawing, layer_class):
            self._drawings[drawing.name] = drawing
            self.records.append(LayerRecord(drawing.name, layer_class, len(self.records),
                                            drawing.plan))
            if reduce:
                self.output_bytes += batch * math.prod(
                    drawing.reduction_plan.source_shape) * drawing.itemsize

        def plan_records(grids):
            """The records (and skipped outputs) of the first pass's outputs, each attention
            layer's after its own output (under the default selection, not the Softmax
            sublayer its probabilities were read from a second time)."""
            shown = {path for path, (_, probabilities) in attention.items()
                     if probabilities is not None}
            repeats = attention_lib.attention_softmax_paths(candidates, shown) \
                if layers is None else set()
            for path, value in outputs.items():
                if path not in chosen_paths or path in repeats:
                    continue
                for name, tensor in split_outputs(path, value):
                    if not reduce:
                        add(Drawing(name, None, None, lambda tensors, _, _name=name:
                                    tensors[_name], 0), classes[path])
                        continue
                    try:
                        plan = plan_drawable(tensor, batch, options, channels_first[path])
                    except ValueError as error:
                        self.skipped.append("%s (%s): %s" % (name, classes[path], error))
                        continue
                    for drawing in token_drawings(name, tensor, plan, options, token_grid,
                                                  grids):
                        add(drawing, classes[path])
                probabilities = attention.get(path, (None, None))[1]
                if probabilities is not None:
                    try:
                        drawings = attention_drawings(path, probabilities, batch, options,
                                                      token_grid, grids, downscale)
                    except ValueError as error:
                        self.skipped.append("%s:attention (%s): %s"
                                            % (path, classes[path], error))
                        continue
                    for drawing in drawings:
                        add(drawing, classes[path])
                    if reduce:
                        self._heads[path + layout_lib.ATTENTION_SUFFIX] = (
                            path, head_grid(drawings, probabilities), int(probabilities.shape[3]))
            if attention and layers is None and not repeated:
                drawing = rollout_drawing(model.name, [(path, probabilities) for path, (
                    _, probabilities) in attention.items()], batch, options, token_grid, grids,
                    reduce)
                if drawing is not None:
                    add(drawing, rollout_record.LAYER_CLASS)

        planned = False

        def run(call_model, inputs):
            """One pass (traced once, or run at every call on an eager backend)."""
            nonlocal planned
            outputs.clear()
            attention.clear()
            model_outputs = call_model(inputs)
            attention.update(attention_lib.softmax_probabilities(softmaxes, outputs))
            called.update(outputs)
            if not planned:
                planned = True
                plan_records(keras_token_grids.observed_grids(candidates, outputs))
            tensors = {name: tensor for path, value in outputs.items() if path in chosen_paths
                       for name, tensor in split_outputs(path, value)}
            return {"layers": {record.path: self._drawings[record.path].derive(tensors,
                                                                               attention)
                               for record in self.records},
                    "heads": {name: attention_lib.head_numbers(attention[path][1], grid)
                              for name, (path, grid, _) in self._heads.items()},
                    "outputs": [t for t in keras.tree.flatten(model_outputs)
                                if keras.ops.is_tensor(t)]}

        attention_layers = attention_lib.attention_layers(chosen) if record_attention else []
        weight_layers = attention_lib.weight_layers(chosen) if record_attention else []
        softmaxes = attention_lib.own_attention_softmaxes(chosen, candidates) \
            if record_attention else {}
        try:
            self._function = self._backend.trace_forward(
                model, run, signature,
                lambda: recording(candidates, outputs, attention_layers, attention, repeated,
                                  weight_layers))
        except (ValueError, TypeError) as error:
            raise ValueError("the probe %s could not pass through model %r: %s"
                             % (keras.tree.map_structure(lambda s: tuple(s.shape), signature),
                                model.name, trace_error_text(error))) from error
        never_called = [path for path, _ in chosen if path not in called]
        if layers is not None and never_called:
            raise ValueError("layers %s were selected but never called by the model's forward "
                             "pass" % ", ".join(never_called))
        if layers is not None and self.skipped:
            raise UndrawableLayerError("layers= selects outputs that cannot be drawn: %s; "
                                       "leave them out" % "; ".join(self.skipped))
        if not self.records:
            raise ValueError("no selected layer produced a tensor output that can be drawn"
                             + "".join("; skipped " + reason for reason in self.skipped))
        if self.skipped:
            warnings.warn("tb-activations skips layers it cannot draw: %s"
                          % "; ".join(self.skipped), stacklevel=3)
        unread = attention_lib.unread_attention(chosen, called, set(attention)) \
            if record_attention else []
        if unread:
            warnings.warn(attention_lib.unread_attention_warning(unread), stacklevel=3)

        self._reducers = {}

    def __call__(self, arrays):
        """The layer outputs for this probe batch, as numpy arrays (one copy out of the
        backend)."""
        layers, _ = self.run(arrays)
        return collections.OrderedDict((record.path, self._backend.to_numpy(layers[record.path]))
                                       for record in self.records)

    def run(self, arrays, heads=False):
        """({path: layer output tensor}, [the model's own output tensors, flattened]): the
        forward pass alone; with `heads`, also {path:attention: (3, B, heads) tensor} of
        attention.head_numbers."""
        result = self._function(arrays)
        if heads:
            return result["layers"], result["outputs"], result.get("heads", {})
        return result["layers"], result["outputs"]

    def head_numbers(self, heads):
        """{path:attention: {"entropy", "peak", "distance" (None off a grid), "keys"}} as
        numpy (samples, heads) of run(..., heads=True)'s head tensors."""
        numbers = {}
        for name, tensor in heads.items():
            _, grid, keys = self._heads[name]
            array = np.asarray(self._backend.to_numpy(tensor), dtype=np.float64)
            numbers[name] = {"entropy": array[0], "peak": array[1],
                             "distance": array[2] if grid is not None else None, "keys": keys}
        return numbers

    def reduce(self, layers, finite_only=False):
        """{path: {stats, tiles, ranges, channels} as numpy} of the outputs `run` gave, by the
        backend's reduce_layer_output (`finite_only` as there), traced on first use."""
        if finite_only not in self._reducers:
            plans = {record.path: self._drawings[record.path].reduction_plan
                     for record in self.records}
            options = self.options
            reduce_layer_output = self._backend.reduce_layer_output

            def reduce_all(outputs):
                return {path: reduce_layer_output(tensor, plans[path], options, finite_only)
                        for path, tensor in outputs.items()}

            self._reducers[finite_only] = self._backend.trace_reduction(reduce_all, layers)
        reduced = self._reducers[finite_only](layers)
        return collections.OrderedDict(
            (record.path, self._backend.reduced_to_numpy(
                reduced[record.path], self._drawings[record.path].reduction_plan))
            for record in self.records)


def _cache_key(signature, layers, options, reduce, token_grid, attention):
    items = layers if isinstance(layers, (list, tuple)) else [layers]
    try:
        layer_key = tuple(items)
        hash(layer_key)
    except TypeError:
        layer_key = tuple(id(item) for item in items)
    return (repr(signature), layer_key, options, reduce, repr(token_grid), attention)


def probe_for(model, arrays, layers=None, options=layout_lib.RenderOptions(), reduce=True,
              token_grid=None, attention=True):
    """The ActivationProbe for this model and probe signature, traced on first use only.

    Kept on the model object itself, so it lives and dies with the model. `token_grid`:
    token_grids.resolve_token_grid_option's values; `attention`: whether MultiHeadAttention
    layers' probabilities are drawn.
    """
    token_grid = token_grids.resolve_token_grid_option(token_grid)
    check_attention_flag(attention)
    check_model(model)
    cache = model.__dict__.get("_tb_activations_probes")
    if cache is None:
        cache = {}
        object.__setattr__(model, "_tb_activations_probes", cache)
    signature = probe_signature(arrays)
    key = _cache_key(signature, layers, options, reduce, token_grid, attention)
    if key not in cache:
        cache[key] = ActivationProbe(model, signature, layers, options, reduce, token_grid,
                                     attention)
    return cache[key]


def get_activations(model, inputs, layers=None, attention=True):
    """{layer path: numpy array (batch first)} from one forward pass, in call order.

    Nested models appear as `outer/inner` paths; a layer with several outputs adds `path:1`,
    `path:2`...; a shared layer reports its first call. `layers` selects as in
    `selection.select_layers` (default: every layer that computes a new value).
    Each MultiHeadAttention layer's attention probabilities, (B, heads, Tq, Tk) float32
    (softmax(query·keyᵀ/√key_dim) under the layer's own masks, a row whose every key is
    masked 0), are at `path:attention`, right after the layer's own output (every attention
    layer under the default selection, the selected ones under `layers=`; none with
    `attention=False`), as are a keras.layers.Attention's (or AdditiveAttention's) weights
    as one head (B, 1, Tq, Tv), and those an attention layer of its own gave its Softmax
    sublayer (attention.own_attention_softmaxes; the sublayer itself is then left out of
    the default selection, as is a MultiHeadAttention's), and under the default selection
    the attention rollout of a
    ViT-style model (rollout_drawing), the class token's row over its (rows, columns) patch
    grid, last, at `<model name>:attention_rollout` (B, rows, columns).
    """
    arrays = prepare_probe(model, inputs)
    return probe_for(model, arrays, layers, reduce=False, attention=attention)(arrays)
