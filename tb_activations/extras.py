"""Which pip extra to install when an optional dependency is missing, said in one place.

The core install (the TensorBoard plugin, `read_activations`, export) needs no framework; the
Keras writer needs Keras and a backend, `tb_activations.torch` needs PyTorch (its Lightning
callback Lightning too), the demo and the export figures need their own few packages.
Each entry point imports through `import_module` with the hint for its extra, so a missing
one fails at import with what to install.
"""

import importlib

KERAS = ("tb-activations needs Keras and a backend for this: pip install "
         "'tb-activations[tensorflow]' (or [jax], or keras with torch)")
TORCH = "tb_activations.torch needs PyTorch: pip install 'tb-activations[torch]'"
LIGHTNING = ("tb_activations.torch.lightning needs PyTorch Lightning: pip install "
             "'tb-activations[lightning]'")
PYTORCH_LIGHTNING = ("tb_activations.torch.pytorch_lightning needs PyTorch Lightning under its "
                     "older name: pip install 'tb-activations[torch]' pytorch-lightning (or use "
                     "tb_activations.torch.lightning with the lightning package)")
DEMO = "the demo needs TensorFlow, Keras and scikit-learn: pip install 'tb-activations[demo]'"
EXPORT = "exporting activations needs Pillow: pip install 'tb-activations[export]'"

# Top-level modules that only an extra installs; any other missing module is a broken install
# and keeps its own error.
EXTRA_MODULES = frozenset({"keras", "tensorflow", "jax", "jaxlib", "torch", "lightning",
                           "pytorch_lightning", "sklearn", "PIL"})


def import_module(name, hint):
    """`importlib.import_module(name)`, where a missing extra's module raises an ImportError
    that starts with `hint` (the install command) and names the module that is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in EXTRA_MODULES:
            raise
        raise ImportError("%s (no module named %r)" % (hint, missing), name=missing) from error
