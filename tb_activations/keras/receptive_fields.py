"""Exact receptive fields of a Keras model's 2-D layer outputs, found by running it once on
one sample with every layer's `call` wrapped: each output's field follows from its inputs'
(by tensor identity) and the layer's kernel, strides, dilation and padding. Works for
Sequential, Functional, nested and subclassed models alike; a layer whose spatial effect is
not known (anything but convolutions, poolings, paddings, croppings and the pointwise layers
below) leaves its output, and what follows from it, without an exact field. A tensor no
recorded layer produced is taken as the input when its map has the input's size."""

import weakref

import keras
import numpy as np

from tb_activations.keras import compat
from tb_activations.keras import selection
from tb_activations.rendering import receptive_fields as fields_lib

# Layers that act on each map position alone (or join maps position by position).
POINTWISE_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "InputLayer", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Dropout",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity",
    "Rescaling", "Normalization", "Add", "Subtract", "Multiply", "Average", "Maximum",
    "Minimum", "Concatenate", "ActivityRegularization",
) if hasattr(keras.layers, name))
_TRANSPOSED = tuple(getattr(keras.layers, name) for name in (
    "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose") if hasattr(keras.layers, name))
_found = weakref.WeakKeyDictionary()


def _spatial(tensor, layer):
    shape = tuple(tensor.shape)
    if len(shape) != 4:
        return None
    first = getattr(layer, "data_format", keras.config.image_data_format()) == "channels_first"
    return shape[2:4] if first else shape[1:3]


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def output_field(layer, inputs, fields):
    """The Field of `layer`'s output from its input tensors' `fields` (None if not known)."""
    if isinstance(layer, POINTWISE_LAYERS):
        return fields_lib.merged(fields)
    if len(fields) != 1 or fields[0] is None or isinstance(layer, _TRANSPOSED):
        return None
    field = fields[0]
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return fields_lib.shifted(field, [before for before, _ in layer.padding])
    if isinstance(layer, keras.layers.Cropping2D):
        return fields_lib.shifted(field, [-before for before, _ in layer.cropping])
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    padding = getattr(layer, "padding", None)
    if kernel is None or padding not in ("valid", "same") or len(_pair(kernel)) != 2:
        return None
    kernel, strides = _pair(kernel), _pair(layer.strides or kernel)
    dilation = _pair(getattr(layer, "dilation_rate", 1))
    size = _spatial(inputs[0], layer)
    before = ([fields_lib.same_padding(n, k, s, d) for n, k, s, d in
               zip(size, kernel, strides, dilation)] if padding == "same" else [0, 0])
    return fields_lib.through_window(field, kernel, strides, dilation, before)


def receptive_fields(model, sample):
    """{layer path: receptive_field content} of the layers whose output is a 2-D map with an
    exact field, for one sample (a batch of one) of the model's single image input. Found
    once per model."""
    if model in _found:
        return _found[model]
    by_tensor, by_path, kept = {}, {}, []
    # [map size, field, open] of the input of each model being called, innermost last: until
    # a layer inside it has given an output (open), a tensor no recorded layer produced, of
    # that size, is that input (Keras may convert it first); after, it is unknown.
    entered = [[tuple(np.asarray(sample).shape[1:3]), fields_lib.INPUT, True]]

    def field_of(tensor, layer):
        if id(tensor) in by_tensor:
            return by_tensor[id(tensor)]
        size, field, still_open = entered[-1]
        if still_open and _spatial(tensor, layer) == size:
            by_tensor[id(tensor)] = field
            kept.append(tensor)
            return field
        return None

    def recorder(path, layer, original):
        def recorded(*args, **kwargs):
            inputs = [t for t in keras.tree.flatten(args[:1]) if keras.ops.is_tensor(t)]
            fields = [field_of(t, layer) for t in inputs]
            container = selection.is_container(layer)
            if container:
                entered.append([_spatial(inputs[0], layer) if inputs else None,
                                fields[0] if fields else None, True])
            try:
                result = original(*args, **kwargs)
            finally:
                if container:
                    entered.pop()
            outputs = [t for t in keras.tree.flatten(result) if keras.ops.is_tensor(t)]
            kept.extend(inputs + outputs)  # alive, so their ids stay theirs
            if not outputs:
                return result
            field = (by_tensor.get(id(outputs[0])) if container
                     else output_field(layer, inputs, fields))
            if _spatial(outputs[0], layer) is None:
                field = None
            by_tensor[id(outputs[0])] = field
            entered[-1][2] = False
            if field is not None:
                by_path.setdefault(path, field)
            return result
        return recorded

    candidates = selection.walk_layers(model)
    with compat.instance_methods([(layer, "call", recorder(path, layer, layer.call))
                                  for path, layer in candidates]):
        model(sample, training=False)
    _found[model] = {path: field.to_content() for path, field in by_path.items()}
    return _found[model]
