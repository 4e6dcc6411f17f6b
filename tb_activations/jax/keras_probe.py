"""Keras on JAX: the probe's forward pass and its reduction compiled with jax.jit (the
interface of tb_activations.tensorflow.keras_probe).

The forward pass calls the model in a keras.StatelessScope, so the variable values are
arguments: read right before each call (compat.variable_values), the compiled function
follows training without being traced again.
"""

import jax
import keras
import numpy as np

from tb_activations.jax import reduction
from tb_activations.keras import compat

reduce_layer_output = reduction.reduce_layer_output
to_numpy = np.asarray  # waits for the device, copies to the host


def reduced_to_numpy(reduced, plan):
    """{name: numpy array} of reduce_layer_output's arrays (`plan` unused: they are in grid
    order already)."""
    return {key: to_numpy(value) for key, value in reduced.items()}


def area_downscale_heads(x, factor_queries, factor_keys):
    """(B, heads, Tq, Tk) averaged over factor-sized blocks of Tq x Tk (reduction.area_downscale:
    the last partial blocks mirrored)."""
    if factor_queries == 1 and factor_keys == 1:
        return x
    small = reduction.area_downscale(x.transpose(0, 2, 3, 1), factor_queries, factor_keys)
    return small.transpose(0, 3, 1, 2)


def _spec(value):
    return jax.ShapeDtypeStruct(value.shape, value.dtype)


def trace_forward(model, run, signature, recording):
    """`run(call_model, inputs)` traced, under `recording()` (the layer-call wrappers), and
    compiled once for `inputs` shaped as `signature` (tensorflow.keras_probe.trace_forward
    says what they are); returns a function of those arrays."""
    def stateless(trainable, non_trainable, inputs):
        # As model.stateless_call, but through model.__call__, which passes `training` only
        # to the calls that take it (a subclassed model's own call may not).
        mapping = list(zip(model.trainable_variables, trainable)) + list(
            zip(model.non_trainable_variables, non_trainable))
        with keras.StatelessScope(state_mapping=mapping):
            return run(lambda x: model(x, training=False), inputs)

    trainable, non_trainable = compat.variable_values(model)
    with recording():
        compiled = jax.jit(stateless).lower(
            [_spec(value) for value in trainable], [_spec(value) for value in non_trainable],
            jax.tree.map(_spec, signature)).compile()

    def forward(arrays):
        return compiled(*compat.variable_values(model), arrays)

    return forward


def trace_reduction(reduce_all, layers):
    """`reduce_all` ({path: layer output} -> {path: {name: array}}) compiled for the shapes of
    `layers`, apart from the forward pass so the callback's training thread waits for that
    alone."""
    return jax.jit(reduce_all).lower(jax.tree.map(_spec, layers)).compile()
