"""`ActivationsCallback` for PyTorch Lightning under its older package name,
`pytorch_lightning`: the probe's activations at fit start, every N global steps and at train
end, into the trainer's TensorBoard run, rendered and written off the training loop
(lightning_logging.ActivationsLogging).

    from tb_activations.torch.pytorch_lightning import ActivationsCallback
    trainer = Trainer(callbacks=[ActivationsCallback(probe=x_val[:4], every_n_steps=100)])

`pytorch_lightning` is imported here only (`import tb_activations.torch` does not), so a
missing one says what to install.
"""

from tb_activations import extras
from tb_activations.torch.lightning_logging import ActivationsLogging

pl = extras.import_module("pytorch_lightning", extras.PYTORCH_LIGHTNING)


class ActivationsCallback(ActivationsLogging, pl.Callback):
    __doc__ = ActivationsLogging.__doc__
    tensorboard_logger_class = pl.loggers.TensorBoardLogger
