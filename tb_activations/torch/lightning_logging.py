"""What the PyTorch Lightning callbacks do, written once for both package names
(tb_activations.torch.lightning for `lightning.pytorch`, .pytorch_lightning for
`pytorch_lightning`): the probe's activations at fit start, every N global steps and at train
end, into the trainer's TensorBoard run. The training loop waits for the probe's forward pass
only; the reduction, rendering and writing run on a thread of their own
(background.BackgroundWriter), as in the Keras callback. Imports no Lightning itself.
"""

import os

from tb_activations.capture import token_grids as grid_rules
from tb_activations.capture.records import check_attention_flag
from tb_activations.format import tokens as tokens_lib
from tb_activations.rendering import steps as steps_lib
from tb_activations.torch import capture as capture_lib
from tb_activations.torch import log as log_lib
from tb_activations.torch import reference as reference_lib
from tb_activations.writing import destinations
from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing.background import BackgroundWriter


def tensorboard_logger(trainer, logger_class):
    """The trainer's first `logger_class` (its package's TensorBoardLogger), or None."""
    for logger in trainer.loggers:
        if isinstance(logger, logger_class):
            return logger
    return None


class ActivationsLogging:
    """Logs every selected module's activations of the LightningModule for a fixed probe.

    Args:
      probe: the inputs to look at, batch first (a few samples, e.g. `x_val[:4]`): a tensor or
        numpy array (the module's one positional argument), a tuple or list (positional
        arguments) or a dict (keyword arguments); moved to the module's device at each log.
      every_n_steps: log when `trainer.global_step` (optimizer steps) is a multiple of this;
        the step at fit start (0, or the resumed one) and the last step are logged too.
      layers: which modules (see `tb_activations.torch.get_activations`); default every
        module that computes a new value.
      log_dir: where to write. Default: the run of the trainer's TensorBoardLogger (through
        its SummaryWriter, beside its scalars); without one, `trainer.log_dir` (another
        logger's directory, or `default_root_dir` when there is no logger).
      on_error: "warn" (default): a failure to log during training (a full disk, say) warns
        once and stops logging for the rest of the run, and training goes on; "raise" ends
        `fit` with the error. Errors in the arguments (a probe the module cannot take, a
        selection that matches nothing) raise at fit start either way.
      token_grid: which token outputs are drawn over a patch grid: None (default: where
        the model declares one or a patch embedding shows it), False (never), (rows,
        columns) (every output that fits it), or {layer path or glob: (rows, columns),
        False or None}.
      attention: draw every attention module's heads (default True; False leaves torch's
        attention functions alone).
      token_labels: names of the sequence positions, stored once per run for the tab and
        export: a list (one per probe sample) of lists of strings, or a tokenizer
        (`convert_ids_to_tokens`, e.g. Hugging Face's) that names the probe's `input_ids`
        (or its first integer tensor). Checked here, and against the probe at fit start.
      reference: a reference set to find what each unit responds to (torch/reference.py): a
        tensor or array, a (x, y) tuple of them with labels, or a DataLoader (re-iterable) of
        (x, y) or x batches; passed over at fit start and at each `reference_every`.
      reference_every: "epoch" (default: each training epoch end), an int N (global steps),
        or "end" (train end).
      reference_k, reference_batch_size: top inputs kept per unit (9), batch size of the
        pass (64, for tensors and arrays).
      class_names: optional names of the label ids.
      **options: RenderOptions fields: max_channels, channel_selection, max_tile,
        max_depth_slices, max_image, columns.

    Only the global zero process logs (`trainer.is_global_zero`, no collective op); the
    probe pass runs in eval mode under no_grad, each module's training flag restored after.
    A subclass adds its package's Callback and names its TensorBoardLogger class.
    """

    tensorboard_logger_class = None

    def __init__(self, probe, every_n_steps=50, layers=None, log_dir=None, on_error="warn",
                 token_grid=None, attention=True, token_labels=None, reference=None,
                 reference_every="epoch", reference_k=9,
                 reference_batch_size=reference_lib.DEFAULT_BATCH_SIZE, class_names=None,
                 **options):
        super().__init__()
        if reference_every not in ("epoch", "end") and (
                isinstance(reference_every, bool) or not isinstance(reference_every, int)
                or reference_every < 1):
            raise ValueError('reference_every must be "epoch", "end" or a positive number of '
                             'global steps, got %r' % (reference_every,))
        if reference is not None and not isinstance(reference, tuple) and iter(
                reference) is reference:
            raise ValueError("the reference set is read at every reference step, and %s can "
                             "be read once only: pass a tensor, an array or a DataLoader"
                             % type(reference).__name__)
        self.reference = reference
        self.reference_every = reference_every
        self.reference_k = reference_k
        self.reference_batch_size = reference_batch_size
        self.class_names = class_names
        self._last_reference_step = None
        if probe is None:
            raise ValueError("the probe is None: pass a batch of inputs, e.g. x_val[:4]")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) \
                or every_n_steps < 1:
            raise ValueError("every_n_steps must be a positive int (global steps between "
                             "logs), got %r" % (every_n_steps,))
        self.on_error = failures.check_on_error(on_error)
        self.settings = steps_lib.render_options(**options)  # names an unknown one now
        self.token_grid = grid_rules.resolve_token_grid_option(token_grid)
        self.attention = check_attention_flag(attention)
        self.token_labels = tokens_lib.check_option(token_labels)
        self.probe = probe
        self.every_n_steps = every_n_steps
        self.layers = layers
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self._target = None
        self._background = None
        self._last_step = None

    def setup(self, trainer, pl_module, stage):
        """Decides where the steps go. On every process: `trainer.log_dir` is a broadcast."""
        if stage != "fit":
            return
        self._last_step = None
        if self.log_dir is not None:
            self._target = {"log_dir": self.log_dir}
        elif self._logger(trainer) is not None:
            self._target = None  # its SummaryWriter, asked for on the global zero only
        else:
            log_dir = trainer.log_dir
            if log_dir is None:
                raise ValueError(
                    "tb-activations finds no directory to write into: the trainer has no "
                    "TensorBoardLogger and its logger %s has no save_dir; pass log_dir= to "
                    "ActivationsCallback" % type(trainer.loggers[0]).__name__)
            self._target = {"log_dir": log_dir}

    def _logger(self, trainer):
        return tensorboard_logger(trainer, self.tensorboard_logger_class)

    def _writer(self, trainer):
        """The logger's SummaryWriter, or our event file writer for the log_dir."""
        if self._target is not None:
            return events.shared_writer(self._target["log_dir"])
        return self._logger(trainer).experiment

    def _log(self, trainer, pl_module):
        """Captures the global step once and queues its rendering; a failure stops logging
        ("warn") or ends fit ("raise")."""
        step = trainer.global_step
        if self._background is None or step == self._last_step:
            return
        self._last_step = step
        try:
            captured = capture_lib.TorchCapture(pl_module, self.probe, self.layers,
                                                self.settings, self.token_grid,
                                                self.attention)
            self._background.put(lambda: steps_lib.render_capture(captured), step)
        except Exception as error:
            self._fail(error, trainer)

    def _log_reference(self, trainer, pl_module, first=False):
        """Passes over the reference set at the global step and queues it (with the inputs
        when `first`, at train start, where its errors raise whatever on_error says)."""
        step = trainer.global_step
        if (self.reference is None or self._background is None
                or step == self._last_reference_step):
            return
        self._last_reference_step = step
        x, y = self.reference if isinstance(self.reference, tuple) else (self.reference, None)
        try:
            self._background.put(reference_lib.reference_step(
                pl_module, x, y, self.layers, self.settings, self.reference_k,
                self.reference_batch_size, self.class_names, with_inputs=first), step)
        except Exception as error:
            if first:
                raise
            self._fail(error, trainer)

    def _fail(self, error, trainer):
        background, self._background = self._background, None
        where = self._target["log_dir"] if self._target else self._logger(trainer).log_dir
        try:
            failures.fail(self.on_error, error, where, stacklevel=4)
        finally:
            if background is not None:
                background.abandon()

    def on_train_start(self, trainer, pl_module):
        """Checks the probe and the selection with a first capture (their errors raise,
        whatever on_error says), then starts the writer thread with the probe pictures."""
        if not trainer.is_global_zero:
            return
        self._last_step = None
        captured = capture_lib.TorchCapture(pl_module, self.probe, self.layers, self.settings,
                                            self.token_grid, self.attention)
        module = capture_lib.check_model(pl_module)
        labels = log_lib.probe_token_labels(module, self.probe, self.token_labels)
        try:
            writer = self._writer(trainer)
            self._background = BackgroundWriter(writer, max_queue=1, close_writer=False)
            probe = ([] if destinations.holds_probe(writer, module)
                     else log_lib.probe_pictures(module, self.probe, self.settings, labels))
            destinations.record_probe(writer, module)
            self._last_step = trainer.global_step
            self._background.put(lambda: probe + steps_lib.render_capture(captured),
                                 trainer.global_step)
        except OSError as error:
            self._fail(error, trainer)
        self._last_reference_step = None
        self._log_reference(trainer, pl_module, first=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)
        if isinstance(self.reference_every, int) and (
                trainer.global_step % self.reference_every == 0):
            self._log_reference(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.reference_every == "epoch":
            self._log_reference(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._log(trainer, pl_module)
        if self.reference_every == "end":
            self._log_reference(trainer, pl_module)
        self._close(trainer)

    def teardown(self, trainer, pl_module, stage):
        self._close(trainer)  # fit ended by an exception: what was queued is still written

    def _close(self, trainer):
        background, self._background = self._background, None
        if background is None:
            return
        try:
            background.close()
        except Exception as error:
            self._fail(error, trainer)
