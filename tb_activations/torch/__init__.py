"""Plain PyTorch modules' activations in the Activations tab.

    import tb_activations.torch as tbat
    tbat.log_activations(model, x_probe, step=step, writer=summary_writer)
    acts = tbat.get_activations(model, x_probe)   # {"features/0": (B, C, H, W) array, ...}

Capture by forward hooks (capture.py), reduction in torch ops on the model's device
(reduction.py); rendering and the stored format are the Keras path's.
"""

from tb_activations.torch.capture import get_activations

__all__ = ["get_activations"]
