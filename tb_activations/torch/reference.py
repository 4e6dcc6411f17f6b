"""Plain PyTorch: what each unit responds to over a reference set (`log_reference`), one pass
in batches under no_grad, each module output reduced in torch ops on the model's device to
(batch, units) arrays (rendering.reference says what they are), which alone reach the host.
The merging, rendering and stored format are shared with Keras."""

import math

import numpy as np
import torch

from tb_activations.rendering import reference as reference_lib
from tb_activations.rendering import steps as steps_lib
from tb_activations.torch import capture as capture_lib
from tb_activations.torch import log as log_lib
from tb_activations.torch import receptive_fields
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures

DEFAULT_BATCH_SIZE = 64


def reduce_output(x, plan, tracked, top):
    """{maximum, position, positive_mean, zero[, magnitude]} of one batch-first module
    output, as numpy (batch, units)."""
    x = x.to(torch.float32)
    if plan.channels_first:
        x = x.movedim(1, -1)
    positions = math.prod(plan.canonical_shape[:-1])
    x = x.reshape(x.shape[0], positions, plan.canonical_shape[-1])
    if not top:
        x = x[:, :, :tracked]
    finite_or_inf = torch.where(torch.isnan(x), float("-inf"), x)
    maximum = finite_or_inf.amax(dim=1)
    index = torch.arange(positions, device=x.device, dtype=torch.int32)[None, :, None]
    first = torch.where(finite_or_inf == maximum[:, None, :], index, positions).amin(dim=1)
    reduced = {"maximum": maximum, "position": first,
               "positive_mean": torch.where(x > 0, x, 0.0).mean(dim=1),
               "zero": (x == 0).all(dim=1)}
    if top:
        reduced["magnitude"] = torch.where(torch.isfinite(x), x.abs(), 0.0).mean(dim=1)
    return {name: value.cpu().numpy() for name, value in reduced.items()}


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
    top = options.channel_selection == "top"
    for x_batch, y_batch in reference_batches(x, y, batch_size):
        captured = capture_lib.TorchCapture(module, x_batch, layers, options, token_grid=False,
                                            attention=False)
        with torch.no_grad():
            reduced = {record.path: reduce_output(
                captured.layer_outputs[record.path], record.layout,
                reference_lib.tracked_units(record.layout, options), top)
                for record in captured.records}
        picture = _picture(x_batch)
        if pending is None:
            image = None if picture is None else picture.shape[1:]
            fields = (receptive_fields.receptive_fields(module, x_batch[:1])
                      if image is not None and reference_lib.image_input(image) else None)
            pending = reference_lib.ReferencePass(
                captured.records, options, k, class_names, receptive_fields=fields,
                input_shape=image, with_inputs=with_inputs, inputs=known)
        pending.add(reduced, _labels(y_batch), picture)
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
