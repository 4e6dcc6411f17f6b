"""Every selected module's output from one forward pass of a torch.nn.Module, by forward hooks.

One pass under torch.no_grad() with the model in eval mode (each module's own training flag
restored after). Hooks on every module record the first call's output of the selected ones.
Those a later in-place operation of the pass overwrites (torchvision's ReLU(inplace=True) after
a BatchNorm, `out += identity`) are cloned in the hook; which ones they are is learned from the
model's first pass (everything cloned, version counters watched) and checked at every pass
(a pass that overwrote another runs again, cloning all), so the loop waits for no other copy. The hooks are removed when the pass ends, also
when it raises. Paths are module names with `.` shown as `/` (`features.3` -> `features/3`);
an output holding several tensors adds `path:1`, `path:2`... (tuples and lists in order,
dicts in insertion order). Sequence-first outputs ((T, B, F) of batch_first=False layers)
are drawn batch first, moved on the device (modules.batch_axes says where the batch is).

Transformers: a token output (B, prefix + rows * columns, D) on a patch grid the model
declares or the pass shows (token_grids) is drawn over that grid, its prefix tokens apart at
`path:prefix_tokens`; every attention module's probabilities (attention.recording_attention)
at `path:attention`, and where the keys lie on a patch grid, one query's attention per head
folded onto it at `path:attention_map`; for a ViT-style model, the attention rollout over all
of them (rollout.Rollout, accumulated in the same pass) at `<model class>:attention_rollout`.

Windows: an output whose axis 0 holds B·n entries, each sample's windows or patches (Swin,
MaxViT, MobileViT, LeViT's flattened tokens), is put back per sample onto its map where the
model's partition is known (windows.windows_of), else drawn with each sample's n entries
stacked; window attention is drawn as the mean over each sample's windows and each window's
mean query put back onto the map (window_drawings, attention_drawings).
"""

import collections
import contextlib
import dataclasses
import itertools
import warnings
import weakref

import numpy as np
import torch

from tb_activations.capture import drawing_plans
from tb_activations.capture import path_selection
from tb_activations.capture import rollout_record
from tb_activations.capture import token_grids as grid_rules
from tb_activations.capture.records import LayerRecord, UndrawableLayerError
from tb_activations.capture.records import check_attention_flag
from tb_activations.capture.records import reduce_finite_if_needed
from tb_activations.format import layout as layout_lib
from tb_activations.torch import attention as attention_lib
from tb_activations.torch import modules as modules_lib
from tb_activations.torch import reduction
from tb_activations.torch import rollout as rollout_lib
from tb_activations.torch import streams
from tb_activations.torch import token_grids
from tb_activations.torch import windows as windows_lib


def check_model(model):
    if not isinstance(model, torch.nn.Module):
        raise TypeError("expected a torch.nn.Module, got %s" % type(model).__name__)
    return modules_lib.unwrap(model)


def walk_modules(model):
    """[(path, module)] of every submodule (the model itself left out), each module once,
    parents before their children."""
    return [(name.replace(".", "/"), module) for name, module in model.named_modules()
            if module is not model]


def _model_placement(model):
    """(device, floating dtype) of the model's first parameter or buffer (CPU, float32 for a
    module that holds none)."""
    tensors = list(model.parameters()) + list(model.buffers())
    device = tensors[0].device if tensors else torch.device("cpu")
    floating = [t.dtype for t in tensors if t.dtype.is_floating_point]
    return device, floating[0] if floating else torch.float32


def _as_tensor(value, what, device, dtype):
    """A probe value on the model's device: numpy arrays converted (floating ones to the
    model's dtype, integer and bool ones, e.g. token ids, kept), tensors moved; any other
    value (None, a flag) passed through untouched."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError("%s must be a numeric array, got dtype %s" % (what, value.dtype))
        value = torch.from_numpy(np.ascontiguousarray(value))
        if value.dtype.is_floating_point:
            value = value.to(dtype)
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return value


def probe_batch_axis(model):
    """The axis of the probe's tensors that holds its samples: 1 where the model itself says
    it is sequence first (an nn.TransformerEncoder, or a module of yours with
    batch_first=False), else 0."""
    return 1 if modules_lib.declared_batch_first(model) is False else 0


def prepare_probe(model, probe):
    """(args, kwargs, batch size) the model is called with: a tensor or array is the one
    positional argument, a tuple or list gives the positional arguments, a dict the keyword
    arguments (only their top level is converted and moved)."""
    if probe is None:
        raise ValueError("the probe is None: pass a batch of inputs, e.g. x_val[:4]")
    device, dtype = _model_placement(model)
    if isinstance(probe, dict):
        args, kwargs = (), {key: _as_tensor(value, "probe[%r]" % key, device, dtype)
                            for key, value in probe.items()}
    elif isinstance(probe, (list, tuple)):
        args, kwargs = tuple(_as_tensor(value, "probe[%d]" % i, device, dtype)
                             for i, value in enumerate(probe)), {}
    else:
        args, kwargs = (_as_tensor(probe, "the probe", device, dtype),), {}
    tensors = [value for value in args + tuple(kwargs.values())
               if isinstance(value, torch.Tensor)]
    if not tensors:
        raise TypeError("the probe holds no tensor or numpy array: pass a batch as one, or a "
                        "tuple (positional arguments) or dict (keyword arguments) of them")
    axis = probe_batch_axis(model)
    if tensors[0].ndim <= axis or tensors[0].shape[axis] < 1:
        where = "first" if axis == 0 else "second (the model is sequence first)"
        raise ValueError("the probe's first tensor needs a batch axis of at least one sample "
                         "%s, got shape %s" % (where, tuple(tensors[0].shape)))
    return args, kwargs, tensors[0].shape[axis]


def tensor_leaves(value):
    """The tensors inside a module output: tuples and lists in order, dicts in insertion
    order, anything else (None, numbers) left out."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in tensor_leaves(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in tensor_leaves(item)]
    return []


def batch_first_by_path(model):
    """{path: declared_batch_first of the module or else of its nearest ancestor (the model
    included) having one, None where none has} for every submodule."""
    flags = {"": modules_lib.declared_batch_first(model)}
    for name, module in model.named_modules():
        if module is not model:
            own = modules_lib.declared_batch_first(module)
            flags[name] = flags[name.rpartition(".")[0]] if own is None else own
    return {name.replace(".", "/"): flag for name, flag in flags.items() if name}


def find_batch_axis(tensor, axes, batch):
    """The first of `axes` along which `tensor` has `batch` entries, None if none has."""
    return next((axis for axis in axes if axis < tensor.ndim and tensor.shape[axis] == batch),
                None)


def split_outputs(path, value):
    """[(name, tensor)] of a module output: the first tensor keeps the path, others get :i."""
    return [(path if i == 0 else "%s:%d" % (path, i), t)
            for i, t in enumerate(tensor_leaves(value))]


@contextlib.contextmanager
def inference_pass(model):
    """eval() and no_grad for one pass; each module's own training flag restored after."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in flags:
            module.training = training


class _Recorder:
    """Forward hooks on every module: records the first call's output of the modules
    `wanted(path, module, ran_submodules)` picks, with the channels-first flag of each call
    and the axes that may hold the `batch` of each output tensor (`batch_first`:
    batch_first_by_path)."""

    def __init__(self, wanted, batch, batch_first, clone_paths, model_memory):
        self.wanted = wanted
        self.clone_paths = clone_paths
        self.model_memory = model_memory
        self.watched = []  # (path, tensor, its version when recorded)
        self.batch = batch
        self.batch_first = batch_first
        self.outputs = collections.OrderedDict()  # path -> (module, channels_first, outputs)
        self.completed = {}  # path -> position in the order modules' first calls ended
        self.observed_grids = []  # token_grids.TokenGrid of each patch embedding's output
        self.input_shapes = {}  # path -> shape of the first call's first float tensor argument
        self.called = set()
        self._starts = []
        self._calls = 0
        self._layouts = {}  # id(tensor) -> (weakref to it, channels_first, batch axis)

    def _layout_of(self, tensor):
        """(channels_first, batch axis) recorded for `tensor`, (None, None) if none was."""
        ref, flag, axis = self._layouts.get(id(tensor), (None, None, None))
        return (flag, axis) if ref is not None and ref() is tensor else (None, None)

    def _input_layout(self, args):
        """(the first tensor argument, its channels_first, its batch axis); the last two
        None unless it is a recorded output."""
        for value in args:
            if isinstance(value, torch.Tensor):
                return (value, *self._layout_of(value))
        return None, None, None

    def before(self, module, args):
        self._starts.append(self._calls)

    def after(self, path, module, args, output):
        ran_submodules = self._calls > self._starts.pop()
        self._calls += 1
        leaves = tensor_leaves(output)
        called_on, input_flag, input_axis = self._input_layout(args)
        # A container returning its last submodule's tensor: that submodule said its layout.
        flag = self._layout_of(leaves[0])[0] if leaves else None
        if flag is None and leaves:
            flag = modules_lib.channels_first(module, leaves[0], called_on, input_flag)
        axes = [modules_lib.batch_axes(module, index, self.batch_first[path], input_axis)
                for index in range(len(leaves))]
        for leaf, leaf_axes in zip(leaves, axes):
            if self._layout_of(leaf)[0] is None:
                self._layouts[id(leaf)] = (weakref.ref(leaf), flag,
                                           find_batch_axis(leaf, leaf_axes, self.batch))
        grid = token_grids.observed_grid(module, output, args, path)
        if grid is not None and grid not in self.observed_grids:
            self.observed_grids.append(grid)
        if path in self.called:
            return
        if called_on is not None and called_on.is_floating_point():  # not token ids, indices
            self.input_shapes[path] = tuple(called_on.shape)
        self.called.add(path)
        self.completed[path] = len(self.completed)
        if self.wanted(path, module, ran_submodules):
            self.outputs[path] = (module, flag, [
                (name, self._keep(path, tensor.detach()), leaf_axes)
                for (name, tensor), leaf_axes in zip(split_outputs(path, output), axes)])

    def _keep(self, path, tensor):
        """The output as it is now: cloned if its path is one the model overwrites in place
        later in its pass (all of them while `clone_paths` is None, the first pass), if it is
        model or probe memory the user may change after, or if it has no version counter
        (made under torch.inference_mode); else the tensor itself, watched."""
        if tensor.is_inference() or tensor.layout != torch.strided:
            return tensor.clone()
        if self.clone_paths is None:
            self.watched.append((path, tensor, tensor._version))
            return tensor.clone()
        if path in self.clone_paths or _storage_of(tensor) in self.model_memory:
            return tensor.clone()
        self.watched.append((path, tensor, tensor._version))
        return tensor

    def overwritten(self):
        """The paths whose watched output an in-place operation changed after its hook."""
        return {path for path, tensor, version in self.watched if tensor._version != version}

    @contextlib.contextmanager
    def hooked(self, candidates):
        handles = []
        try:
            for path, module in candidates:
                handles.append(module.register_forward_pre_hook(self.before))
                handles.append(module.register_forward_hook(
                    lambda module, args, output, _path=path: self.after(
                        _path, module, args, output)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _storage_of(tensor):
    return tensor.untyped_storage().data_ptr()


# model -> the paths whose recorded output its forward pass overwrites in place later (ReLU(
# inplace=True) after a BatchNorm, `out += identity`), learned by watching version counters:
# only those are cloned in the hook, the others are kept as they are (no copy on the loop).
_overwritten_paths = weakref.WeakKeyDictionary()


def describe_probe(args, kwargs):
    shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
              for v in args + tuple(kwargs.values())]
    return ", ".join(map(str, shapes))


ProbePass = collections.namedtuple(
    "ProbePass",
    "outputs batch attention declared_grids observed_grids order input_shapes rollout")
ProbePass.__doc__ = """One forward pass: `outputs` {path: (module, channels_first, [(name, tensor,
batch axes)])} of the selected modules, the `batch` size, `attention` [AttentionProbabilities]
of the selected modules (every attention module under the default selection), the token
grids the model declares and those the pass showed, `order` {path: position} of every module's first call's end and
`input_shapes` {path: shape of its first call's first tensor argument, if floating point} and
the `rollout.Rollout` of the pass's attention (None unless attention is recorded under the
default selection)."""


def run_pass(model, probe, layers=None, attention_side=None, attention=True, token_grid=None):
    """ProbePass of one forward pass: the first call of each selected module (`layers` as
    path_selection.select, None for every module that computes a new value); attention
    probabilities area-averaged to at most `attention_side` queries and keys (None: kept
    whole), none recorded (and torch's attention functions left alone) if not `attention`;
    each attention's mean distance measured on the grid `token_grid=` (as TorchCapture's)
    chooses for its keys from the grids declared and those observed so far."""
    check_attention_flag(attention)
    model = check_model(model)
    args, kwargs, batch = prepare_probe(model, probe)
    candidates = walk_modules(model)
    if not candidates:
        raise ValueError("model %s has no submodules to record: its output is all there is"
                         % type(model).__name__)
    batch_first = batch_first_by_path(model)
    if layers is None:
        def wanted_output(path, module, ran):
            return modules_lib.is_default_module(module, ran)
    else:
        chosen = {path for path, _ in path_selection.select(candidates, layers)}

        def wanted_output(path, module, ran):
            return path in chosen
    declared = token_grids.declared_token_grids(model)
    model_memory = {_storage_of(tensor) for tensor in itertools.chain(
        model.parameters(), model.buffers(), args, kwargs.values())
        if isinstance(tensor, torch.Tensor) and tensor.layout == torch.strided}

    def forward(clone_paths):
        recorder = _Recorder(wanted_output, batch, batch_first, clone_paths, model_memory)

        def grid_of(path, keys, heads):
            chosen = token_grids.grid_choice(path, keys, heads, token_grid, declared,
                                             recorder.observed_grids)
            return None if chosen is None else (chosen[0].rows, chosen[0].columns, chosen[1])
        wanted = None if layers is None else chosen.__contains__
        rollout = rollout_lib.Rollout(batch) if attention and layers is None else None
        recording = (attention_lib.recording_attention(model, attention_side, grid_of, wanted,
                                                       rollout)
                     if attention else contextlib.nullcontext([]))
        with recorder.hooked(candidates), inference_pass(model), recording as records:
            try:
                model(*args, **kwargs)
            except Exception as error:
                raise ValueError("the probe (%s) could not pass through model %s: %s: %s"
                                 % (describe_probe(args, kwargs), type(model).__name__,
                                    type(error).__name__, error)) from error
        overwritten = recorder.overwritten()
        _overwritten_paths[model] = _overwritten_paths.get(model, set()) | overwritten
        return recorder, records, rollout, overwritten

    known = _overwritten_paths.get(model)
    recorder, attention, rollout, overwritten = forward(known)
    if known is not None and overwritten:  # this pass overwrote outputs the last ones did not
        recorder, attention, rollout, _ = forward(None)
    if layers is None and not recorder.outputs:
        paths = path_selection.describe([path for path, _ in candidates])
        raise ValueError("no module of model %s computed a value of its own in the forward "
                         "pass; its modules are: %s" % (type(model).__name__, paths))
    if layers is not None:
        never_called = sorted(chosen - recorder.called)
        if never_called:
            raise ValueError("layers %s were selected but never called by the model's forward "
                             "pass" % ", ".join(never_called))
    return ProbePass(recorder.outputs, batch, attention, declared, recorder.observed_grids,
                     recorder.completed, recorder.input_shapes, rollout)


def describe_axis(tensor, axis):
    if axis >= tensor.ndim:
        return "its shape %s has no axis %d" % (tuple(tensor.shape), axis)
    return "its axis %d has %d entries" % (axis, tensor.shape[axis])


def check_real_dense(tensor):
    """Raises ValueError unless `tensor` is a dense real-valued (or integer) tensor."""
    if not (tensor.dtype.is_floating_point or tensor.dtype in modules_lib.INTEGER_DTYPES):
        raise ValueError("its dtype %s is not real-valued" % tensor.dtype)
    if tensor.layout != torch.strided:
        raise ValueError("it is a %s tensor, not a dense one" % tensor.layout)


class WindowContext:
    """What deciding a partition needs: the model's modules by path, the pass's input
    shapes and the token grids' sizes (for one token per entry)."""

    def __init__(self, model, input_shapes, declared, observed):
        self.modules = {name.replace(".", "/"): module for name, module in model.named_modules()}
        self.input_shapes = input_shapes
        self.grid_sizes = [(grid.rows, grid.columns)
                           for grid in grid_rules.candidate_grids(declared, observed)]

    def partition(self, path, entries, batch, rank):
        """(windows.Partition or None, whether the model's attributes say it): the
        partition of an output of rank `rank` with `entries` on axis 0; one token per entry
        (rank 2) on a `resolution` attribute's or a token grid's grid."""
        partition = windows_lib.windows_of(path, self.modules, self.input_shapes, entries,
                                           batch)
        if partition is not None:
            return partition, True
        if rank == 2:
            return windows_lib.tokens_partition(
                entries // batch, windows_lib.resolution_grids(path, self.modules)
                + self.grid_sizes), False
        return None, False


def window_drawings(name, path, tensor, batch, options, channels_first, context):
    """[(name, tensor, plan)] of an output whose axis 0 holds each sample's n windows (B·n
    entries, sample-major): put back onto the sample's (H, W, C) map as a token grid where
    the partition is known, else the n entries stacked along the sample's first axis
    (source "windows"). Without a partition the model's attributes say, the module must
    have been called on a tensor with B·n entries too (the windows came in folded; a
    position table whose length happens to be a multiple of B is no window). Raises
    ValueError when it holds no windows."""
    check_real_dense(tensor)
    entries = tensor.shape[0] if tensor.ndim >= 2 else 0
    if entries <= batch or entries % batch:
        raise ValueError("its axis 0 has %d entries, not a multiple of the probe batch %d"
                         % (entries, batch))
    count = entries // batch
    partition, declared = context.partition(path, entries, batch, tensor.ndim)
    called_on = context.input_shapes.get(path)
    if not declared and not (called_on and called_on[0] == entries):
        raise ValueError("its axis 0 has %d entries where the probe batch has %d, and it was "
                         "not called on %d windows" % (entries, batch, entries))
    if partition is not None:
        image_map = windows_lib.put_back(tensor, batch, partition, bool(channels_first))
        if image_map is not None:
            rows, columns, features = image_map.shape[1:]
            plan = drawing_plans.token_grid_plan((rows, columns, 0), features, options,
                                                 windows=(count, partition.kind))
            return [(name, image_map, plan)]
    stacked = windows_lib.stack_windows(tensor, batch)
    plan = dataclasses.replace(
        layout_lib.plan_layout(tuple(stacked.shape[1:]), options,
                               channels_first=bool(channels_first) and tensor.ndim > 2),
        source="windows", windows=windows_lib.describe(partition, count))
    return [(name, stacked, plan)]


def plan_drawable(tensor, axes, batch, options, channels_first):
    """(the grid layout of one module output, the output batch first: its batch axis, the
    first of `axes` holding `batch` entries, moved first on its device); raises ValueError
    saying why it has none."""
    check_real_dense(tensor)
    if tensor.ndim < 1:
        raise ValueError("its shape %s has no batch axis" % (tuple(tensor.shape),))
    axis = find_batch_axis(tensor, axes, batch)
    if axis is None:
        raise ValueError("%s where the probe batch has %d"
                         % (" and ".join(describe_axis(tensor, a) for a in axes), batch))
    tensor = tensor.movedim(axis, 0)
    return layout_lib.plan_layout(tuple(tensor.shape[1:]), options,
                                  channels_first=channels_first), tensor


def token_drawings(name, tensor, plan, options, token_grid, declared, observed):
    """[(name, tensor, plan)] of one batch-first output: a token output on a patch grid as
    its grid (channels last) and its prefix tokens, anything else as it is."""
    split = None
    if tensor.ndim == 3 and not plan.channels_first:
        split = token_grids.grid_for(name, tensor, token_grid, declared, observed)
    if split is None:
        return [(name, tensor, plan)]
    grid = (split.grid.rows, split.grid.columns, split.prefix)
    features = split.grid_tokens.shape[-1]
    drawings = [(name, split.grid_tokens, drawing_plans.token_grid_plan(grid, features, options))]
    if split.extra_tokens is not None:
        drawings.append((name + layout_lib.PREFIX_TOKENS_SUFFIX, split.extra_tokens,
                         drawing_plans.prefix_tokens_plan(grid, features, options)))
    return drawings


def window_attention_drawings(entry, batch, options, context):
    """[(name, tensor, stored plan, reduction plan)] of a window attention's probabilities,
    (B·n, heads, Tq, Tk): per head the mean over each sample's n windows (how a head
    attends inside a window, its relative-position pattern), and, where the partition is
    known, each window's mean query's attention over its keys put back onto the sample's
    map (where in the picture the heads look). Raises ValueError when the maps are not a
    multiple of the batch."""
    entries = entry.probabilities.shape[0]
    if entries <= batch or entries % batch:
        raise ValueError("its attention holds %d maps where the probe batch has %d"
                         % (entries, batch))
    count = entries // batch
    partition, _ = context.partition(entry.module_path, entries, batch, 4)
    windows = windows_lib.describe(partition, count)
    mean = windows_lib.mean_over_windows(entry.probabilities, batch)
    stored, averaged = drawing_plans.attention_plans(
        tuple(mean.shape[1:]), entry.queries, entry.keys, entry.downscale, options,
        windows=windows)
    drawings = [(entry.module_path + layout_lib.ATTENTION_SUFFIX, mean, stored, averaged)]
    if partition is not None:
        maps = windows_lib.put_back(entry.mean_query.transpose(1, 2), batch, partition)
        if maps is not None:
            rows, columns, heads = maps.shape[1:]
            plan = drawing_plans.attention_map_plan((rows, columns, 0), heads, options, "mean",
                                                    windows=windows)
            drawings.append((entry.module_path + layout_lib.ATTENTION_MAP_SUFFIX, maps, plan,
                             plan))
    return drawings


def attention_drawings(entry, batch, options, token_grid, declared, observed, context=None):
    """[(name, tensor, stored plan, reduction plan)] of one module's attention: its
    probabilities per head (area-averaged already, so the reduction plans the averaged
    shape while the stored plan says the whole one), and, when its keys lie on a patch grid,
    the class token's (else the mean query's) attention per head folded onto that grid.
    Window attention (more maps than samples) as window_attention_drawings, given the
    `context` (a WindowContext)."""
    path = entry.module_path
    if entry.probabilities.shape[0] != batch:
        if context is not None:
            return window_attention_drawings(entry, batch, options, context)
        raise ValueError("its attention holds %d maps where the probe batch has %d (windows "
                         "or patches folded into the batch axis)"
                         % (entry.probabilities.shape[0], batch))
    stored, averaged = drawing_plans.attention_plans(
        tuple(entry.probabilities.shape[1:]), entry.queries, entry.keys, entry.downscale,
        options)
    drawings = [(path + layout_lib.ATTENTION_SUFFIX, entry.probabilities, stored, averaged)]
    split = token_grids.grid_for(path, entry.first_query.transpose(1, 2), token_grid,
                                 declared, observed)
    if split is not None:
        query = drawing_plans.attention_query(split.prefix)
        if not split.prefix:
            split = token_grids.split_tokens(entry.mean_query.transpose(1, 2), [split.grid])
        maps = split.grid_tokens
        plan = drawing_plans.attention_map_plan(
            (split.grid.rows, split.grid.columns, split.prefix), maps.shape[-1], options, query)
        drawings.append((path + layout_lib.ATTENTION_MAP_SUFFIX, maps, plan, plan))
    return drawings


def rollout_drawing(probe_pass, model, options):
    """(sort key, name, class, tensor, plan, plan) of the pass's attention rollout, drawn
    after every module, or None when the pass has none (rollout.Rollout's rules)."""
    maps = probe_pass.rollout.class_token_map() if probe_pass.rollout is not None else None
    if maps is None:
        return None
    plan = rollout_record.rollout_plan(probe_pass.rollout.grid, options)
    return ((len(probe_pass.order), 0), rollout_record.rollout_name(type(model).__name__),
            rollout_record.LAYER_CLASS, maps[..., None], plan, plan)


def head_numbers_on_host(entry, batch, drawings):
    """{"entropy", "peak", "distance" (or None), "keys"} of one attention module, numpy
    (samples, heads): window attention's numbers are the mean over each sample's windows
    (no distance: its keys are a window, not the sample's grid); the distance is kept only
    when the attention map was drawn on the grid it was measured on. None without numbers."""
    numbers = entry.heads
    if not numbers:
        return None
    entries = numbers["entropy"].shape[0]
    if entries % batch:
        return None
    host = {}
    for name in ("entropy", "peak"):
        value = numbers[name].reshape(batch, entries // batch, -1).mean(dim=1)
        host[name] = _as_numpy(value).astype(np.float64)
    host["distance"] = None
    if numbers["distance"] is not None and entries == batch:
        grid = drawing_plans.drawn_map_grid((name, plan) for name, _, plan, _ in drawings)
        if grid is not None and grid == tuple(entry.grid):
            host["distance"] = _as_numpy(numbers["distance"]).astype(np.float64)
    host["keys"] = int(entry.keys)
    return host


class TorchCapture:
    """One probe pass of a torch model: `records` (records.LayerRecord per drawn output,
    call order), `options`, and `reduce()`, the reduced arrays as numpy, which
    rendering.steps.render_capture renders. Outputs no grid can show are skipped with a
    warning under the default selection and raise UndrawableLayerError when `layers=`
    selects them. `token_grid`: capture.token_grids.resolve_token_grid_option's values;
    `attention`: whether attention modules' probabilities are drawn."""

    def __init__(self, model, probe, layers=None, options=layout_lib.RenderOptions(),
                 token_grid=None, attention=True):
        self.options = options
        self.records = []
        self._outputs = {}
        self._reduction_plans = {}  # path -> the plan its reduction follows, where not its own
        self._reduced = None
        self.head_numbers = {}  # path:attention -> head_numbers_on_host
        token_grid = grid_rules.resolve_token_grid_option(token_grid)
        probe_pass = run_pass(model, probe, layers, options.max_tile, attention, token_grid)
        grids = (probe_pass.declared_grids, probe_pass.observed_grids)
        context = WindowContext(check_model(model), probe_pass.input_shapes, *grids)
        drawn, skipped = [], []  # drawn: ((order, part), name, class, tensor, plan, reduction plan)
        for path, (module, channels_first, outputs) in probe_pass.outputs.items():
            layer_class = type(module).__name__
            if not outputs:
                skipped.append("%s (%s): its output holds no tensor" % (path, layer_class))
            for name, tensor, axes in outputs:
                try:
                    plan, tensor = plan_drawable(tensor, axes, probe_pass.batch, options,
                                                 channels_first)
                except ValueError as error:
                    drawings, why = self._windows_or_none(
                        name, path, tensor, axes, probe_pass.batch, channels_first, context)
                    if drawings is None:
                        skipped.append("%s (%s): %s%s" % (name, layer_class, error, why))
                    drawn.extend(((probe_pass.order[path], 0), drawing, layer_class, part,
                                  plan, plan) for drawing, part, plan in drawings or ())
                    continue
                drawn.extend(((probe_pass.order[path], 0), drawing, layer_class, part, plan, plan)
                             for drawing, part, plan in token_drawings(
                                 name, tensor, plan, options, token_grid, *grids))
        for entry in probe_pass.attention:
            try:
                drawings = attention_drawings(entry, probe_pass.batch, options, token_grid,
                                              *grids, context=context)
            except Exception as error:  # noqa: BLE001: a window merge that fails is a skip
                skipped.append("%s:attention (%s): %s"
                               % (entry.module_path, entry.module_class, error))
                continue
            drawn.extend(((probe_pass.order.get(entry.module_path, -1), 1), name,
                          entry.module_class, tensor, stored, reduced)
                         for name, tensor, stored, reduced in drawings)
            numbers = head_numbers_on_host(entry, probe_pass.batch, drawings)
            if numbers is not None:
                self.head_numbers[entry.module_path + layout_lib.ATTENTION_SUFFIX] = numbers
        rollout = rollout_drawing(probe_pass, model, options)
        if rollout is not None:
            drawn.append(rollout)
        for _, name, layer_class, tensor, plan, reduction_plan in sorted(
                drawn, key=lambda item: item[0]):
            self._outputs[name] = tensor
            if reduction_plan is not plan:
                self._reduction_plans[name] = reduction_plan
            self.records.append(LayerRecord(name, layer_class, len(self.records), plan))
        if layers is not None and skipped:
            raise UndrawableLayerError("layers= selects outputs that cannot be drawn: %s; "
                                       "leave them out" % "; ".join(skipped))
        if not self.records:
            raise ValueError("no selected module produced a tensor output that can be drawn"
                             + "".join("; skipped " + reason for reason in skipped))
        if skipped:
            warnings.warn("tb-activations skips modules it cannot draw: %s"
                          % "; ".join(skipped), stacklevel=3)
        self._ready = streams.mark_ready(self._outputs.values())

    def _windows_or_none(self, name, path, tensor, axes, batch, channels_first, context):
        """(window_drawings of an output whose batch axis was not found, or None when it holds
        no windows, and what to add to its skip reason): never an exception, a merge that
        fails is the old skip with a warning."""
        if 0 not in axes:
            return None, ""
        try:
            return window_drawings(name, path, tensor, batch, self.options, channels_first,
                                   context), ""
        except ValueError:
            return None, ""
        except Exception as error:  # noqa: BLE001: never break the user's training
            return None, " (its windows could not be put back: %s: %s)" % (
                type(error).__name__, error)

    def _reduce_all(self, finite_only):
        return collections.OrderedDict(
            (record.path, reduction.to_host(reduction.reduce_layer_output(
                self._outputs[record.path],
                self._reduction_plans.get(record.path, record.layout), self.options,
                finite_only)))
            for record in self.records)

    def reduce(self):
        """{path: the reduction's arrays as numpy}, reduced on the model's device by
        records.reduce_finite_if_needed (on a CUDA device, on a stream of its own: see
        streams.py), on whichever thread asks first. Done once; the outputs are let go (after
        the copies to the host, which wait for the reduction stream)."""
        if self._reduced is None:
            with torch.no_grad(), streams.on_reduction_streams(self._ready):
                self._reduced = reduce_finite_if_needed(self._reduce_all)
            self._outputs = None
        return self._reduced


def _as_numpy(tensor):
    tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.to(torch.float32)
    return tensor.numpy()


def get_activations(model, inputs, layers=None, attention=True):
    """{module path: numpy array, shaped as the module output is ((N, C, H, W) stays, and so
    does a sequence-first (T, B, F)} from one forward pass, in call order.

    `inputs`: a tensor or numpy array (the one positional argument), a tuple or list of
    them (the positional arguments) or a dict (keyword arguments). `layers` selects as in
    path_selection.select (default: every module that computes a new value); a module called
    more than once reports its first call; several tensors in one output add `path:1`, ...
    Each attention module's probabilities, (B, heads, Tq, Tk), are at `path:attention` (every
    attention module under the default selection, the selected ones under `layers=`; none
    with `attention=False`), and the attention rollout of a ViT-style model, the class
    token's row over its (rows, columns) patch grid, at `<model class>:attention_rollout`
    (B, rows, columns) (torch/rollout.py says which models have one).
    """
    probe_pass = run_pass(model, inputs, layers, attention=attention)
    arrays = [((probe_pass.order[path], 0), name, tensor)
              for path, (_, _, outputs) in probe_pass.outputs.items()
              for name, tensor, _ in outputs]
    arrays += [((probe_pass.order.get(entry.module_path, -1), 1),
                entry.module_path + layout_lib.ATTENTION_SUFFIX, entry.probabilities)
               for entry in probe_pass.attention]
    rollout = rollout_drawing(probe_pass, model, layout_lib.RenderOptions())
    if rollout is not None:
        arrays.append((rollout[0], rollout[1], rollout[3][..., 0]))
    return collections.OrderedDict((name, _as_numpy(tensor))
                                   for _, name, tensor in sorted(arrays, key=lambda a: a[0]))
