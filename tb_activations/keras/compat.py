"""The private Keras APIs tb-activations relies on, in one place; checked against Keras
3.15.1 (TensorFlow 2.21, JAX 0.10.2 and torch 2.13 backends).

  * `Functional._inputs_struct`: a model's inputs in the structure it is called with;
  * `KerasTensor._keras_history.operation`: the layer that made a model's input or output;
  * on JAX, the trainer holds the weights in its own state during `fit` and writes them to
    the variables only in `jax_state_sync()` (Keras's `Callback.model` calls it, and so do
    we before each probe pass); `fit` donates the variables' buffers to each train step,
    so their values are read right before every use and never held.
"""

import keras


def model_inputs(model):
    """The model's input KerasTensors in the structure it is called with, None if unknown
    (subclassed models). A Sequential keeps them on an inner Functional."""
    inputs = getattr(model, "_inputs_struct", None)
    if inputs is None and isinstance(model, keras.Sequential):
        inputs = getattr(model, "inputs", None)
    return inputs


def producing_layer_name(tensor):
    """The name of the layer that made a model's input or output KerasTensor (an unnamed
    keras.Input's tensor is called keras_tensor_N; its InputLayer has the name users see in
    model.summary())."""
    return getattr(getattr(tensor, "_keras_history", None), "operation", tensor).name


def variable_values(model):
    """(trainable, non-trainable) variable values of a model as they are now, for a
    stateless call: on JAX, the trainer's state is written back first if `fit` holds it."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
    return ([variable.value for variable in model.trainable_variables],
            [variable.value for variable in model.non_trainable_variables])
