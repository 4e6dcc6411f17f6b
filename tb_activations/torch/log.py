"""log_activations for plain PyTorch: capture (hooks), reduce (torch), then the shared render
and write stages, into a torch SummaryWriter's run or a log_dir of our own; all but the
capture on a writer thread of the destination's (background.py) unless asked otherwise."""

import torch

from tb_activations.capture.records import check_attention_flag
from tb_activations.format import tokens as tokens_lib
from tb_activations.rendering import steps as steps_lib
from tb_activations.torch import capture as capture_lib
from tb_activations.writing import destination_threads as background_lib
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures


def is_rank_zero():
    """False on every rank but 0 of a torch.distributed job: asked of the process group's
    own state, no collective op (one that only rank 0 reached would hang)."""
    distributed = torch.distributed
    return not (distributed.is_available() and distributed.is_initialized()
                and distributed.get_rank() != 0)


def check_destination(writer, log_dir):
    """Refuses anything but exactly one of a torch SummaryWriter and a log_dir."""
    if (writer is None) == (log_dir is None):
        raise ValueError("pass exactly one of writer= (a torch.utils.tensorboard.SummaryWriter) "
                         "and log_dir= (a directory for an event file of our own)")
    if writer is not None:
        from torch.utils.tensorboard import SummaryWriter  # imported already if one was made
        if not isinstance(writer, SummaryWriter):
            raise TypeError("writer= takes a torch.utils.tensorboard.SummaryWriter, got %s "
                            "(or pass log_dir=)" % type(writer).__name__)


def writer_for(writer, log_dir):
    """The writer a step goes to: the user's torch SummaryWriter, or ours for `log_dir` (one
    per directory for the life of the process, so a run's steps share one event file)."""
    check_destination(writer, log_dir)
    return writer if log_dir is None else events.shared_writer(log_dir)


def probe_images(args, kwargs, batch_axis=0):
    """([array], [name]) of the probe's tensors as numpy, batch first (`batch_axis` moved
    first: capture.probe_batch_axis), (N, C, H, W) images with 1, 3 or 4 channels moved
    channels last as the probe pictures want them; positional inputs are `input` (or
    `input_<i>`), keyword ones keep their names."""
    named = [("input" if len(args) == 1 else "input_%d" % i, value)
             for i, value in enumerate(args)] + sorted(kwargs.items())
    arrays, names = [], []
    for name, value in named:
        if not isinstance(value, torch.Tensor) or value.is_complex():
            continue
        if value.ndim > batch_axis:
            value = value.movedim(batch_axis, 0)
        if value.ndim == 4 and value.shape[1] in (1, 3, 4):
            value = value.movedim(1, -1)
        arrays.append(value.detach().to(torch.float32).cpu().numpy())
        names.append(name)
    return arrays, names


def probe_token_labels(module, inputs, token_labels):
    """The checked token labels of the probe (tokens.resolve: None, lists checked against the
    probe's sample count, or a tokenizer's tokens of its input_ids); raises saying what is
    wrong."""
    if token_labels is None:
        return None
    args, kwargs, _ = capture_lib.prepare_probe(module, inputs)
    batch_axis = capture_lib.probe_batch_axis(module)
    named = [("input" if len(args) == 1 else "input_%d" % i, value)
             for i, value in enumerate(args)] + sorted(kwargs.items())
    arrays = [(name, (value.movedim(batch_axis, 0) if value.ndim > batch_axis else value)
               .detach().cpu().numpy())
              for name, value in named if isinstance(value, torch.Tensor)
              and not value.is_complex() and value.ndim > batch_axis]
    samples = arrays[0][1].shape[0] if arrays else None
    return tokens_lib.resolve(token_labels, arrays, samples)


def probe_arrays(module, inputs):
    """probe_images of the probe as the module takes it: ([array], [name]), copies."""
    args, kwargs, _ = capture_lib.prepare_probe(module, inputs)
    return probe_images(args, kwargs, capture_lib.probe_batch_axis(module))


def render_probe_pictures(arrays, names, settings, labels=None):
    """The probe pictures' [(tag, metadata, values)] of probe_arrays' copies."""
    return steps_lib.render_probe(arrays, names, settings.max_image) + tokens_lib.render(labels)


def probe_pictures(module, inputs, settings, labels=None):
    """The probe pictures' [(tag, metadata, values)]."""
    return render_probe_pictures(*probe_arrays(module, inputs), settings, labels)


def log_activations(model, inputs, step, writer=None, log_dir=None, layers=None,
                    on_error="warn", token_grid=None, attention=True, token_labels=None,
                    background=True, **options):
    """Writes every selected module's grids and statistics for `inputs` at `step`.

    One forward pass by capture.get_activations's rules (inputs: a tensor or array, a tuple
    of positional or a dict of keyword arguments); `writer` a torch SummaryWriter (the step
    lands in its run, flushed when it flushes) or `log_dir` (a directory or a URL) for an
    event file of our own: exactly one. The probe pictures are stored once per writer.
    `background` (default True): the call returns once the forward pass is done and its
    outputs copied (the model may change right after); the reduction, rendering and writing
    run on a thread of the destination's, which writes its steps in order and holds one
    step queued at most (a call while one is queued waits). `tb_activations.torch.flush()`
    waits until everything is written (before reading the run, or closing the
    SummaryWriter), `close()` also ends the threads; interpreter exit flushes.
    `background=False` does it all before returning (after what is queued for that
    destination). Returns False, doing nothing, on ranks other than 0 of torch.distributed;
    True once written (queued, in the background). `on_error="warn"` (default): a failure
    to write (a full disk) warns once and returns False, and so does every later call for
    that writer or log_dir, at once; "raise" raises the EventFileError. A failure in the
    background is reported so by the next call for that destination, or by flush()/close().
    Errors in the arguments raise either way.
    `token_grid`: which token outputs (B, prefix + rows * columns, D) are drawn over their
    patch grid: None (default: where the model declares a grid or a patch embedding shows
    one), False (never), (rows, columns), or {layer path or glob: (rows, columns), False or
    None}. `attention`: attention modules' probabilities drawn as one tile per head
    (`path:attention`), and over the patch grid (`path:attention_map`) where the keys lie on
    one (default True; False leaves torch's attention functions alone). `token_labels`:
    names of the sequence positions, stored once per writer for the tab and export: a list
    (one per probe sample) of lists of strings, or a tokenizer (`convert_ids_to_tokens`,
    e.g. Hugging Face's), which names the probe's `input_ids` (or its first integer
    tensor). `options` are RenderOptions fields (max_channels, channel_selection,
    max_tile, ...).
    """
    settings = steps_lib.render_options(**options)
    failures.check_on_error(on_error)
    check_attention_flag(attention)
    background_lib.check_background_flag(background)
    step = destinations.step_number(step)
    if not is_rank_zero():
        return False
    check_destination(writer, log_dir)
    place = writer if log_dir is None else events.shared_writer_key(log_dir)
    destination = writer.get_logdir() if log_dir is None else log_dir
    if failures.is_stopped(place) or background_lib.report_failure(
            place, on_error, stacklevel=2, wait=not background):
        return False
    module = capture_lib.check_model(model)
    labels = probe_token_labels(module, inputs, token_labels)
    captured = capture_lib.TorchCapture(model, inputs, layers, settings, token_grid, attention)
    if background:
        def write():
            target = writer_for(writer, log_dir)
            probe = None if destinations.holds_probe(target, module) else probe_arrays(
                module, inputs)
            destinations.record_probe(target, module)
            background_lib.queue(place, target, destination, on_error, lambda: (
                [] if probe is None else render_probe_pictures(*probe, settings, labels))
                + steps_lib.render_capture(captured), step)
            return True
    else:
        rendered = steps_lib.render_capture(captured)

        def write():
            return destinations.write_with_probe(
                rendered, step, writer_for(writer, log_dir), module,
                lambda: probe_pictures(module, inputs, settings, labels))

    return failures.write_or_stop(on_error, place, destination, write)
