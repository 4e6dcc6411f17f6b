"""`ActivationsCallback` for PyTorch Lightning (`lightning.pytorch`): the probe's activations at fit
start, every N global steps and at train end, into the trainer's TensorBoard run, rendered and
written off the training loop (lightning_logging.ActivationsLogging).

    from tb_activations.torch.lightning import ActivationsCallback
    trainer = Trainer(callbacks=[ActivationsCallback(probe=x_val[:4], every_n_steps=100)])

Lightning is imported here only (`import tb_activations.torch` does not), so a missing one names
the extra that installs it.
"""

from tb_activations import extras
from tb_activations.torch.lightning_logging import ActivationsLogging

pl = extras.import_module("lightning.pytorch", extras.LIGHTNING)


class ActivationsCallback(ActivationsLogging, pl.Callback):
    __doc__ = ActivationsLogging.__doc__
    tensorboard_logger_class = pl.loggers.TensorBoardLogger
