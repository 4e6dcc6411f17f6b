"""A two-process DDP fit on CPU (gloo) of the Lightning tests' DigitsCNN, logging activations
every 4 global steps into a TensorBoardLogger under argv[1]. Lightning's own launcher starts
the second process by running this script again; the global zero prints `RESULT <json>`."""

import json
import sys

from lightning.pytorch.loggers import TensorBoardLogger

from tb_activations.torch.lightning import ActivationsCallback
from tests.test_torch_lightning import PROBE
from tests.test_torch_lightning import fit


def main(root):
    trainer, _ = fit([ActivationsCallback(PROBE, every_n_steps=4)], logger=TensorBoardLogger(root),
                     devices=2, strategy="ddp")
    if trainer.is_global_zero:
        print("RESULT " + json.dumps({"world_size": trainer.world_size,
                                      "global_step": trainer.global_step}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
