"""Keras on TensorFlow: the probe's forward pass and its reduction as tf.functions.

Each backend module of the Keras capture (this one, tb_activations.jax.keras_probe and
tb_activations.torch.keras_probe) gives
keras.capture.ActivationProbe the same six things: `reduce_layer_output` (in the backend's
ops), `area_downscale_heads` (attention probabilities averaged inside the forward pass),
`trace_forward`, `trace_reduction`, `to_numpy` (one output's copy to the host) and
`reduced_to_numpy` (a reduced layer's arrays on the host, as reduction.reduce_layer_output
documents them).
"""

import keras
import numpy as np
import tensorflow as tf

from tb_activations.tensorflow import reduction

to_numpy = np.asarray  # an eager tensor's own host buffer, no copy


def reduce_layer_output(x, plan, options, finite_only=False):
    """reduction.reduce_layer_output with a channels layout's tiles left channels last
    (transposing them cost ~6 ms of CPU a MobileNetV2 step): reduced_to_numpy puts them in
    grid order as a view."""
    return reduction.reduce_layer_output(x, plan, options, finite_only, tiles_last=True)


def reduced_to_numpy(reduced, plan):
    """{name: numpy array} of reduce_layer_output's tensors, tiles (batch, tiles, height,
    width)."""
    arrays = {key: to_numpy(value) for key, value in reduced.items()}
    if plan.layout == "channels":
        arrays["tiles"] = arrays["tiles"].transpose(0, 3, 1, 2)
    return arrays


def area_downscale_heads(x, factor_queries, factor_keys):
    """(B, heads, Tq, Tk) averaged over factor-sized blocks of Tq x Tk (reduction.area_downscale:
    the last partial blocks mirrored)."""
    if factor_queries == 1 and factor_keys == 1:
        return x
    small = reduction.area_downscale(tf.transpose(x, [0, 2, 3, 1]), factor_queries, factor_keys)
    return tf.transpose(small, [0, 3, 1, 2])


def trace_forward(model, run, signature, recording):
    """`run(call_model, inputs)` traced once, under `recording()` (the layer-call wrappers), as
    a tf.function of `inputs` (shapes and dtypes as `signature`, a structure of
    keras.capture.ArraySpec: the model's inputs, and whatever else `run` reads);
    `call_model(x)` calls the model on x. The model's variables are read at each call, so it
    follows training.

    Without AutoGraph: ~10x faster to trace (the MNIST CNN's probe function 1.2 s -> 0.1 s,
    most of a fresh model's callback overhead), and it would not help anyway: Keras 3 calls
    layers through Layer.__call__, which AutoGraph does not convert, so a `call` branching on
    a tensor fails either way (as it does in Keras's own fit).
    """
    specs = keras.tree.map_structure(
        lambda spec: tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype)), signature)
    with recording():
        return tf.function(
            lambda inputs: run(lambda x: model(x, training=False), inputs),
            autograph=False).get_concrete_function(specs)


def trace_reduction(reduce_all, layers):
    """`reduce_all` ({path: layer output} -> {path: {name: array}}) traced for the shapes of
    `layers`, as a second function so that the callback's training thread waits for the
    forward pass alone (MobileNetV2: 1.3x a bare forward pass instead of 2.8x)."""
    specs = {path: tf.TensorSpec.from_tensor(tensor) for path, tensor in layers.items()}
    return tf.function(reduce_all, autograph=False).get_concrete_function(specs)
