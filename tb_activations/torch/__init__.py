"""Plain PyTorch modules' activations in the Activations tab.

    import tb_activations.torch as tbat
    tbat.log_activations(model, x_probe, step=step, writer=summary_writer)  # or log_dir=
    tbat.flush()   # the steps logged so far are written (they are, in the background)
    acts = tbat.get_activations(model, x_probe)   # {"features/0": (B, C, H, W) array, ...}
    tbat.log_reference(model, x_ref, y_ref, step=step, log_dir=...)  # what units respond to

Capture by forward hooks (capture.py), reduction in torch ops on the model's device
(reduction.py); the render and write stages and the stored format are shared with Keras.
"""

import contextlib
import importlib
import importlib.util
import sys

from tb_activations import extras

extras.import_module("torch", extras.TORCH)  # first: without torch, say which extra brings it


def _load_triton_before_tensorflow():
    """Loads triton now where TensorFlow could be loaded after it: torch 2.14's triton and
    TensorFlow 2.21 bundle clashing native libraries, and loading triton after TensorFlow
    (as torch.optim and torch.compile do, and torch.utils.tensorboard loads TensorFlow when
    it is installed) ends the process with a segmentation fault. The other order works."""
    if "tensorflow" in sys.modules or "triton" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") and importlib.util.find_spec("triton"):
        with contextlib.suppress(Exception):  # a broken triton is torch's to report
            importlib.import_module("triton")


_load_triton_before_tensorflow()

from tb_activations.writing.destination_threads import close, flush  # noqa: E402
from tb_activations.torch.capture import get_activations  # noqa: E402
from tb_activations.torch.log import log_activations  # noqa: E402
from tb_activations.torch.reference import log_reference  # noqa: E402

__all__ = ["close", "flush", "get_activations", "log_activations", "log_reference"]
