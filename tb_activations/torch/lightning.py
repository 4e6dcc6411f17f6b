"""`ActivationsCallback` for PyTorch Lightning: log_activations at fit start, every N global
steps and at train end, into the trainer's TensorBoard run.

    from tb_activations.torch.lightning import ActivationsCallback
    trainer = Trainer(callbacks=[ActivationsCallback(probe=x_val[:4], every_n_steps=100)])

Lightning is imported here only (`import tb_activations.torch` does not), through
extras.import_module, so a missing one names the extra that installs it.
"""

import os

from tb_activations import extras
from tb_activations import failures
from tb_activations import step_rendering
from tb_activations.torch import log as log_lib

pl = extras.import_module("lightning.pytorch", extras.LIGHTNING)


def tensorboard_logger(trainer):
    """The trainer's first TensorBoardLogger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            return logger
    return None


class ActivationsCallback(pl.Callback):
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
      **options: RenderOptions fields: max_channels, channel_selection, max_tile,
        max_depth_slices, max_image, columns.

    Only the global zero process logs (`trainer.is_global_zero`, no collective op); the
    probe pass runs in eval mode under no_grad, each module's training flag restored after.
    """

    def __init__(self, probe, every_n_steps=50, layers=None, log_dir=None, on_error="warn",
                 **options):
        super().__init__()
        if probe is None:
            raise ValueError("the probe is None: pass a batch of inputs, e.g. x_val[:4]")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) \
                or every_n_steps < 1:
            raise ValueError("every_n_steps must be a positive int (global steps between "
                             "logs), got %r" % (every_n_steps,))
        self.on_error = failures.check_on_error(on_error)
        step_rendering.render_options(**options)  # names an unknown option now
        self.probe = probe
        self.every_n_steps = every_n_steps
        self.layers = layers
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.options = options
        self._target = None
        self._last_step = None
        self._stopped = False

    def setup(self, trainer, pl_module, stage):
        """Decides where the steps go. On every process: `trainer.log_dir` is a broadcast."""
        if stage != "fit":
            return
        self._last_step = None
        self._stopped = False
        if self.log_dir is not None:
            self._target = {"log_dir": self.log_dir}
        elif tensorboard_logger(trainer) is not None:
            self._target = None  # its SummaryWriter, asked for on the global zero only
        else:
            log_dir = trainer.log_dir
            if log_dir is None:
                raise ValueError(
                    "tb-activations finds no directory to write into: the trainer has no "
                    "TensorBoardLogger and its logger %s has no save_dir; pass log_dir= to "
                    "ActivationsCallback" % type(trainer.loggers[0]).__name__)
            self._target = {"log_dir": log_dir}

    def _destination(self, trainer):
        """log_activations's writer= or log_dir= argument."""
        if self._target is not None:
            return self._target
        return {"writer": tensorboard_logger(trainer).experiment}

    def _log(self, trainer, pl_module, first=False):
        """Logs the global step once; a failure stops logging ("warn") or ends fit ("raise").
        At fit start, any error but a failure to write is the arguments' and raises."""
        step = trainer.global_step
        if self._stopped or step == self._last_step or not trainer.is_global_zero:
            return
        self._last_step = step
        try:
            log_lib.log_activations(pl_module, self.probe, step, layers=self.layers,
                                    on_error="raise", **self._destination(trainer),
                                    **self.options)
        except Exception as error:
            if first and not isinstance(error, OSError):
                raise
            self._fail(error, trainer)

    def _fail(self, error, trainer):
        self._stopped = True
        where = self._target["log_dir"] if self._target else tensorboard_logger(trainer).log_dir
        failures.fail(self.on_error, error, where, stacklevel=3)

    def on_train_start(self, trainer, pl_module):
        self._log(trainer, pl_module, first=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self._log(trainer, pl_module)
