"""Plain PyTorch modules' activations in the Activations tab.

    import tb_activations.torch as tbat
    tbat.log_activations(model, x_probe, step=step, writer=summary_writer)  # or log_dir=
    acts = tbat.get_activations(model, x_probe)   # {"features/0": (B, C, H, W) array, ...}

Capture by forward hooks (capture.py), reduction in torch ops on the model's device
(reduction.py); the render and write stages and the stored format are shared with Keras.
"""

from tb_activations.torch.capture import get_activations
from tb_activations.torch.log import log_activations

__all__ = ["get_activations", "log_activations"]
