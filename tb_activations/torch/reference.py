"""Plain PyTorch: what each unit responds to over a reference set (`log_reference`), one pass
in batches under no_grad, each module output reduced in its forward hook, in torch ops on the
model's device, to (batch, units) arrays (rendering.reference says what they are), which alone
reach the host; the outputs are planned once, on the first batch's first inputs.
The merging, rendering and stored format are shared with Keras."""

import contextlib
import functools
import math

import numpy as np
import torch

from tb_activations.capture import path_selection
from tb_activations.rendering import reference as reference_lib
from tb_activations.rendering import steps as steps_lib
from tb_activations.torch import capture as capture_lib
from tb_activations.torch import log as log_lib
from tb_activations.torch import receptive_fields
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures

DEFAULT_BATCH_SIZE = 64


# The floats of an output an elementwise step (max(a, 0), |a|) copies at a time before
# summing them, and so the size of a pass's Scratch: chunks of 16 MiB cost MobileNetV2 at
# 128 px 2.5-2.8x less CPU than one output-sized copy (page faults) on 1 or 2 threads; much
# smaller ones pay per call.
CHUNK_ELEMENTS = 1 << 22
# Outputs of at most this many floats (kept units) find every position of their maxima in one
# op (max with indices, ~7x the cost of amax per float): fewer ops than searching the top k.
SMALL_ELEMENTS = 1 << 16
# CPU maps of at least this many positions, in outputs reduced on one thread, find each map's
# maximum and its first position in one numpy argmax (vectorized: ~10x torch's argmax, 1.5-3x
# less than torch's amax and a search of each batch's top k inputs); on shorter maps numpy's
# per-row cost exceeds torch's amax.
NUMPY_POSITIONS = 24
# Exact classes (a subclass may compute anything) whose outputs are never negative: max(a, 0)
# is a, and a map is all zeros where its maximum is 0.
NONNEGATIVE_MODULES = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Sigmoid, torch.nn.Softmax,
                       torch.nn.Hardsigmoid)
# Outputs of at most this many floats (kept units) are reduced on one CPU thread: their short
# ops gain little from a second thread and wait for it at every op whenever the cores are
# shared (on 2 cores under load the MNIST CNN's pass took 2.7x its forward with them on 2
# threads, 1.8x on one); larger ones keep the caller's threads, which they use.
ONE_THREAD_ELEMENTS = 1 << 20


def units_view(x, plan, tracked):
    """(batch, the first `tracked` units, positions) float32 view of a batch-first output:
    channels-first maps are read where they are, only the reduced units are touched."""
    units = plan.canonical_shape[-1]
    positions = math.prod(plan.canonical_shape[:-1])
    if plan.channels_first:
        view = x.reshape(x.shape[0], units, positions)[:, :tracked]
    else:
        view = x.reshape(x.shape[0], positions, units)[:, :, :tracked].transpose(1, 2)
    return view.to(torch.float32)


def _row_major(x):
    """Whether `x`'s strides run in row-major order down to a last stride of 1, so that an
    elementwise op lays its result out contiguously: writing that result into a contiguous
    buffer instead leaves its sums' order, and so their bits, as they were."""
    strides = [stride for stride, size in zip(x.stride(), x.shape) if size > 1]
    return (not strides or strides[-1] == 1) and all(
        outer > inner for outer, inner in zip(strides, strides[1:]))


class Scratch:
    """One buffer a pass's elementwise steps (max(a, 0), |a|) write into, grown to the largest
    chunk and reused by every output: a fresh temporary per output cost more than the step
    itself (page faults on every new allocation)."""

    def __init__(self):
        self.buffer = None

    def like(self, x):
        """A contiguous float32 tensor of `x`'s shape in the buffer, or None where `x` is not
        row-major (its elementwise result would be laid out otherwise)."""
        if not _row_major(x):
            return None
        if (self.buffer is None or self.buffer.numel() < x.numel()
                or self.buffer.device != x.device):
            self.buffer = torch.empty(x.numel(), dtype=torch.float32, device=x.device)
        return self.buffer[:x.numel()].view(x.shape)


def map_sums(x, elementwise, scratch=None):
    """(batch, units) sums over each map of `elementwise(x)`, taken a few inputs at a time;
    with a Scratch, `elementwise(chunk, out=...)` writes into its buffer where it can."""
    step = max(1, CHUNK_ELEMENTS // max(1, x[0].numel()))

    def chunk_sums(chunk):
        out = None if scratch is None else scratch.like(chunk)
        return (elementwise(chunk) if out is None else elementwise(chunk, out=out)).sum(dim=-1)

    if step >= x.shape[0]:
        return chunk_sums(x)
    return torch.cat([chunk_sums(x[start:start + step]) for start in range(0, x.shape[0], step)])


def _maps(ranked, order):
    """ranked[order[i, u], u]: the (len(order), units, positions) maps of the chosen inputs.
    Where each map lies whole and the maps of every input sit at one spacing (a channels-
    first output, its kept units sliced or not) they are picked as rows of a 2-D view of its
    memory by index_select, 5x cheaper than the advanced indexing used otherwise."""
    rows, units, positions = ranked.shape
    columns = torch.arange(units, device=ranked.device)
    spacing, remainder = divmod(ranked.stride(0), positions)
    if ranked.stride(2) != 1 or ranked.stride(1) != positions or remainder or spacing < units:
        return ranked[order, columns.expand(order.shape)]
    flat = ranked.as_strided(((rows - 1) * spacing + units, positions), (positions, 1))
    picked = flat.index_select(0, (order * spacing + columns).reshape(-1))
    return picked.reshape(order.shape + (positions,))


def first_maxima(maps):
    """The first position of each map's maximum (or NaN) along the last axis: numpy's argmax
    on the CPU (vectorized, ~10x torch's there)."""
    if maps.device.type == "cpu":
        return torch.from_numpy(maps.detach().numpy().argmax(axis=-1))
    return maps.argmax(dim=-1)


def top_positions(ranked, maximum, k):
    """(batch, units) first position of each map's maximum, found for the batch's `k` top
    inputs per unit only (by value, lower index first on ties: the only ones that can enter
    the running top-k of rendering.reference); 0 elsewhere."""
    rows, units, _ = ranked.shape
    order = torch.sort(maximum, dim=0, descending=True, stable=True).indices[:min(k, rows)]
    found = first_maxima(_maps(ranked, order)).to(ranked.device)
    return torch.zeros((rows, units), dtype=torch.int64, device=ranked.device).scatter_(
        0, order, found)


def maxima(ranked, k):
    """(maximum, position) (batch, units) of each map of `ranked`: its maximum (NaN if it
    holds one) and the first position of it, for at least the batch's `k` top inputs per
    unit. A CPU output that one thread reduces finds every map's position in one numpy argmax
    (where its maps are long enough); larger ones take torch's amax on the caller's threads
    and search the top k maps only."""
    if (ranked.device.type == "cpu" and ranked.shape[-1] >= NUMPY_POSITIONS
            and ranked.stride(-1) == 1 and ranked.numel() <= ONE_THREAD_ELEMENTS):
        position = first_maxima(ranked)
        return ranked.gather(-1, position.unsqueeze(-1)).squeeze(-1), position
    if ranked.numel() <= SMALL_ELEMENTS:
        return ranked.max(dim=-1)
    maximum = ranked.amax(dim=-1)
    return maximum, top_positions(ranked, maximum, k)


def all_zero(x, maximum):
    """(batch, units) whether each map of `x` is all zeros: its maximum and its minimum are 0,
    the minimum taken of the few maps whose maximum is 0 only."""
    maybe = maximum == 0
    if not maybe.any():
        return maybe
    zero = maybe.clone()
    zero[maybe] = x[maybe].amin(dim=-1) == 0
    return zero


def nonnegative(module):
    """Whether `module`'s output is never negative by what it is."""
    return type(module) in NONNEGATIVE_MODULES


def reduce_output(x, plan, tracked, top, k, classes=True, finite_only=False, scratch=None,
                  positive=False):
    """{maximum, position, zero[, positive_mean][, magnitude, total]} of one batch-first module
    output, as numpy (batch, units) (rendering.reference says what they are; positions for
    at least the batch's top `k` inputs per unit, means of max(a, 0) only with `classes`). The
    plain reduction is exact while no value is NaN (and, for the mean |a| of
    channel_selection="top", none is infinite): `finite_only` leaves NaN out of the maxima
    and non-finite values out of the mean |a| instead; the plain one writes its elementwise
    steps into `scratch` (a Scratch) where it can. `positive`: no value is negative
    (nonnegative's modules), so max(a, 0) is a and the maximum alone says whether a map is all
    zeros."""
    x = units_view(x, plan, tracked)
    positions = x.shape[-1]
    ranked = torch.where(torch.isnan(x), float("-inf"), x) if finite_only else x
    maximum, position = maxima(ranked, k)
    reduced = {"maximum": maximum, "position": position}
    if finite_only:
        reduced["zero"] = (x == 0).all(dim=-1)
        if classes:
            reduced["positive_mean"] = map_sums(
                x, lambda a: torch.where(a > 0, a, 0.0)) / positions
        if top:
            reduced["magnitude"] = map_sums(
                x, lambda a: torch.where(torch.isfinite(a), a.abs(), 0.0)) / positions
    elif positive:
        reduced["zero"] = maximum == 0
        if classes or top:
            total = x.sum(dim=-1)
        if classes:
            reduced["positive_mean"] = total / positions
        if top:
            reduced["total"] = total
            reduced["magnitude"] = total / positions
    else:
        reduced["zero"] = all_zero(x, maximum)
        if classes:
            reduced["positive_mean"] = map_sums(
                x, functools.partial(torch.clamp_min, min=0), scratch) / positions
        if top:
            reduced["total"] = map_sums(x, torch.abs, scratch)
            reduced["magnitude"] = reduced["total"] / positions
    return {name: value.cpu().numpy() for name, value in reduced.items()}


def _reduced(tensor, plan, options, k, classes, scratch, positive=False):
    """reduce_output of one output, its finite-only form where the plain one met NaN (or,
    for channel_selection="top", Inf); on one thread if it is small."""
    tracked = reference_lib.tracked_units(plan, options)
    top = options.channel_selection == "top"
    elements = len(tensor) * tracked * math.prod(plan.canonical_shape[:-1])
    with one_thread() if elements <= ONE_THREAD_ELEMENTS else contextlib.nullcontext():
        reduced = reduce_output(tensor, plan, tracked, top, k, classes, scratch=scratch,
                                positive=positive)
        if not reference_lib.all_finite({plan.source: reduced}):
            reduced = reduce_output(tensor, plan, tracked, top, k, classes, finite_only=True)
    return reduced


def _batch_first(tensor, plan, rows):
    """`tensor` with its batch axis (the first holding `rows` entries around the planned
    sample shape) moved first."""
    shape = tuple(tensor.shape)
    for axis in range(tensor.ndim):
        if shape[axis] == rows and shape[:axis] + shape[axis + 1:] == plan.source_shape:
            return tensor.movedim(axis, 0)
    raise ValueError("an output of shape %s no longer holds the planned %s per input"
                     % (shape, plan.source_shape))


@contextlib.contextmanager
def one_thread():
    """Torch ops on one CPU thread inside, the caller's thread count restored after (even on
    errors)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reduce_batch(module, records, options, x_batch, k, classes=True, scratch=None):
    """{path: reduced arrays as numpy} of one batch (reduce_output's, for the top `k` inputs
    and with `classes`): each drawn output reduced in its module's forward hook, as soon as
    it exists (before an in-place module after it changes it), so no output is kept; a pass
    gives every batch its one Scratch."""
    scratch = scratch or Scratch()
    args, kwargs, rows = capture_lib.prepare_probe(module, x_batch)
    plans = {record.path: record.layout for record in records}
    owners = path_selection.output_owners(plans)
    reduced = {}

    def after(child, path, output):
        for name, tensor in capture_lib.split_outputs(path, output):
            if name in plans and name not in reduced:
                reduced[name] = _reduced(_batch_first(tensor, plans[name], rows), plans[name],
                                         options, k, classes, scratch,
                                         positive=name == path and nonnegative(child))

    handles = [child.register_forward_hook(
        lambda child, inputs, output, _path=path: after(child, _path, output))
        for path, child in capture_lib.walk_modules(module) if path in owners]
    try:
        with capture_lib.inference_pass(module):
            module(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(plans) - set(reduced))
    if missing:
        raise ValueError("modules %s gave no output in this reference batch" % ", ".join(missing))
    return reduced


def _is_batch(value):
    return isinstance(value, (torch.Tensor, np.ndarray))


def reference_batches(x, y, batch_size):
    """Yields (x batch, y batch or None): slices of a tensor or array, or the batches of a
    DataLoader or any iterable ((x, y), (x, y, ...) or x each), read once."""
    if _is_batch(x):
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size], None if y is None else y[start:start + batch_size]
        return
    if y is not None:
        raise ValueError("y= goes with a tensor or array x; a DataLoader yields its own labels")
    for element in x:
        if isinstance(element, (tuple, list)) and len(element) >= 2 and _is_batch(element[0]):
            yield element[0], element[1]
        else:
            yield element, None


def _labels(y):
    return None if y is None else (y.detach().cpu().numpy() if isinstance(y, torch.Tensor)
                                   else np.asarray(y))


def _picture(batch):
    """The batch as numpy pictures, channels last ((N, 1|3|4, H, W) moved), for thumbnails
    and receptive fields; None if it is not one tensor or array."""
    if not _is_batch(batch):
        return None
    array = batch.detach().cpu().numpy() if isinstance(batch, torch.Tensor) else np.asarray(batch)
    if array.ndim == 4 and array.shape[1] in (1, 3, 4):
        array = np.moveaxis(array, 1, -1)
    return array


def reference_step(model, x, y=None, layers=None, options=None, k=9,
                   batch_size=DEFAULT_BATCH_SIZE, class_names=None, with_inputs=True):
    """One reference pass: [(tag, SummaryMetadata, [bytes])] of every selected module (and
    the inputs' thumbnails and labels with `with_inputs`); raises before anything is written
    if any batch fails."""
    options = options or steps_lib.render_options()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError("the reference batch size must be a positive int, got %r"
                         % (batch_size,))
    module = capture_lib.check_model(model)
    known = len(x) if _is_batch(x) else None
    pending = None
    scratch = Scratch()
    for x_batch, y_batch in reference_batches(x, y, batch_size):
        picture = _picture(x_batch)
        if pending is None:
            # Planned on a few inputs: what each drawn output is and how it is laid out.
            records = [record for record in capture_lib.TorchCapture(
                module, x_batch[:2], layers, options, token_grid=False,
                attention=False).records if record.layout.source == "output"]
            image = None if picture is None else picture.shape[1:]
            fields = (receptive_fields.receptive_fields(module, x_batch[:1])
                      if image is not None and reference_lib.image_input(image) else None)
            pending = reference_lib.ReferencePass(
                records, options, k, class_names, receptive_fields=fields,
                input_shape=image, with_inputs=with_inputs, inputs=known)
        pending.add(reduce_batch(module, records, options, x_batch, k, y_batch is not None,
                                 scratch),
                    _labels(y_batch),
                    picture)
    if pending is None:
        raise ValueError("the reference set is empty")
    return pending.rendered()


def log_reference(model, x, y=None, step=0, writer=None, log_dir=None, k=9,
                  batch_size=DEFAULT_BATCH_SIZE, layers=None, class_names=None,
                  on_error="warn", **options):
    """Writes what each unit of the selected modules responds to over the reference set `x`
    (a tensor or array, with labels `y` (class ids or one-hot; optional), or a DataLoader or
    iterable of (x, y) or x batches, read once) at `step`: per module its units' `k` top
    inputs (values, positions), zero fractions and per-class means; the inputs' thumbnails
    and labels once per writer. `writer` (a torch SummaryWriter) or `log_dir`, exactly one,
    and `on_error` as log_activations; one event: a pass that fails writes nothing.
    `options` are RenderOptions fields (max_channels and channel_selection choose the
    units). Returns whether it wrote (False on ranks other than 0)."""
    settings = steps_lib.render_options(**options)
    failures.check_on_error(on_error)
    step = destinations.step_number(step)
    if not log_lib.is_rank_zero():
        return False
    log_lib.check_destination(writer, log_dir)
    place = writer if log_dir is None else events.shared_writer_key(log_dir)
    if failures.is_stopped(place):
        return False
    destination = writer.get_logdir() if log_dir is None else log_dir
    target = failures.write_or_stop(on_error, place, destination,
                                    lambda: log_lib.writer_for(writer, log_dir))
    if target is False:
        return False
    module = capture_lib.check_model(model)
    with_inputs = not destinations.holds_probe(target, module, destinations.REFERENCE_INPUTS)
    rendered = reference_step(model, x, y, layers, settings, k, batch_size, class_names,
                              with_inputs)

    def write():
        written = destinations.write_rendered(rendered, step, target)
        if written and with_inputs:
            destinations.record_probe(target, module, destinations.REFERENCE_INPUTS)
        return written

    return failures.write_or_stop(on_error, place, destination, write)
