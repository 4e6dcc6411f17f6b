"""Keras on torch: the probe's forward pass run eagerly under torch.no_grad(), reduced in
torch ops (tb_activations.torch.reduction) on the model's device (the interface of
tb_activations.tensorflow.keras_probe).

Nothing is compiled: each pass calls the model with the layer-call wrappers in place. The
first pass, on zeros of the probe's shapes and dtypes, is the "trace" that finds which
layers output what.
"""

import keras
import numpy as np
import torch

from tb_activations.torch import reduction

reduce_layer_output = reduction.reduce_layer_output
# (B, heads, Tq, Tk) averaged over blocks of Tq x Tk (the heads are torch's channels).
area_downscale_heads = reduction.area_downscale


def to_numpy(tensor):
    """A host copy of a tensor on any device (np.asarray refuses CUDA tensors)."""
    return tensor.detach().cpu().numpy()


def reduced_to_numpy(reduced, plan):
    """{name: numpy array} of reduce_layer_output's tensors (`plan` unused: they are in grid
    order already)."""
    return reduction.to_host(reduced)


def trace_forward(model, run, signature, recording):
    """A function of arrays shaped as `signature` (tensorflow.keras_probe.trace_forward says
    what they are) running `run(call_model, arrays)` under `recording()` (the layer-call
    wrappers) and torch.no_grad(), run once on zeros."""
    def forward(arrays):
        with recording(), torch.no_grad():
            return run(lambda x: model(x, training=False), arrays)

    forward(keras.tree.map_structure(lambda spec: np.zeros(spec.shape, spec.dtype), signature))
    return forward


def trace_reduction(reduce_all, layers):
    """`reduce_all` ({path: layer output} -> {path: {name: tensor}}) under torch.no_grad()."""
    def reduce(outputs):
        with torch.no_grad():
            return reduce_all(outputs)

    return reduce
