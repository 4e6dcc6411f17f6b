"""tb-activations: every layer's feature maps of a Keras model, in a TensorBoard tab.

Writer side: `ActivationsCallback` (during fit), `log_activations` (custom loops; `flush`
and `close` drain its background=True steps),
`get_activations` (arrays in a notebook), `log_reference` (what each unit responds to over a
reference set, in custom loops), `read_activations`, `read_reference` and `read_heads` (what
was written; `read_heads`: every attention head's entropy, mean distance and dead flag),
`export` (what was written, as figures, animations, arrays and a page), `is_chief` (whether
this process writes in a multi-worker job).
The TensorBoard plugin lives in `tb_activations.plugin` and is found by TensorBoard itself;
names here load lazily so that TensorBoard importing the plugin does not import TensorFlow,
and a writer name used without Keras installed says which extra to install.
"""

from tb_activations import extras

__version__ = "0.1.0"

_EXPORTS = {
    "ActivationsCallback": "tb_activations.keras.callback",
    "ActivationRecord": "tb_activations.reading.reader",
    "close": "tb_activations.writing.destination_threads",
    "RenderOptions": "tb_activations.format.layout",
    "export": "tb_activations.exporting.run_export",
    "flush": "tb_activations.writing.destination_threads",
    "get_activations": "tb_activations.keras.capture",
    "HeadNumbers": "tb_activations.reading.heads",
    "is_chief": "tb_activations.keras.distribute",
    "log_activations": "tb_activations.keras.log",
    "log_reference": "tb_activations.keras.reference",
    "read_activations": "tb_activations.reading.reader",
    "read_heads": "tb_activations.reading.heads",
    "read_reference": "tb_activations.reading.reference",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'tb_activations' has no attribute %r" % name)
    return getattr(extras.import_module(_EXPORTS[name], extras.KERAS), name)


def __dir__():
    return sorted(list(globals()) + __all__)
