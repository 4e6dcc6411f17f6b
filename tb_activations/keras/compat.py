"""The private Keras APIs tb-activations relies on, in one place; checked against Keras
3.15.1 (TensorFlow 2.21, JAX 0.10.2 and torch 2.13 backends).

  * `Functional._inputs_struct`: a model's inputs in the structure it is called with;
  * `KerasTensor._keras_history.operation`: the layer that made a model's input or output;
  * on JAX, the trainer holds the weights in its own state during `fit` and writes them to
    the variables only in `jax_state_sync()` (Keras's `Callback.model` calls it, and so do
    we before each probe pass); `fit` donates the variables' buffers to each train step,
    so their values are read right before every use and never held;
  * `MultiHeadAttention._compute_attention(query, key, value, attention_mask=None,
    training=None, return_attention_scores=False, use_causal_mask=False)` returns
    `(attention_output, attention_scores)`, the scores None on its fast path
    (ops.dot_product_attention) and the softmax probabilities (B, heads, Tq, Tk) with
    return_attention_scores=True, which raises while `_flash_attention` is truthy;
    `MultiHeadAttention._attention_axes`: the axes attention runs over (one per query and
    per key axis of the scores). keras-hub 0.32 (installed by the test extra):
    CachedMultiHeadAttention and the Whisper and Moonshine layers built on it call
    `_compute_attention` with keywords; XLNet's TwoStreamRelativeAttention never calls it
    (not captured); its ViT embeds patches by Conv2D(strides=patch_size, padding="valid");
    its attention layers of their own (Llama, Gemma, Mistral...) run a keras.layers.Softmax
    sublayer where keras_hub's fused_attention_op_available() is false (TensorFlow), else
    ops.dot_product_attention. Checked against Keras 3.15.1 on the TensorFlow, JAX and
    torch backends;
  * `Attention._apply_scores(scores, value, scores_mask=None, training=False)` (also
    AdditiveAttention's) returns `(output, weights)`, the weights softmax(scores) under the
    mask, (B, Tq, Tv), before dropout's effect at inference;
  * a layer's method set on the instance (`call`, `_compute_attention`, `_apply_scores`) is what
    `Layer.__call__` runs, so one pass can be recorded without touching the class.
"""

import contextlib

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


def flash_attention_setting(layer):
    """(whether the layer holds its own `_flash_attention`, its value)."""
    return "_flash_attention" in layer.__dict__, layer.__dict__.get("_flash_attention")


def set_flash_attention(layer, value):
    object.__setattr__(layer, "_flash_attention", value)


def restore_flash_attention(layer, had, value):
    """Puts back what flash_attention_setting read."""
    if had:
        object.__setattr__(layer, "_flash_attention", value)
    elif "_flash_attention" in layer.__dict__:
        object.__delattr__(layer, "_flash_attention")


def attention_axes_count(layer, scores):
    """How many query (and as many key) axes a MultiHeadAttention's scores have: one per
    attention axis; 1 for rank-4 scores."""
    if len(scores.shape) == 4:
        return 1
    axes = getattr(layer, "_attention_axes", None)
    return len(axes) if axes else 1


@contextlib.contextmanager
def instance_methods(replacements):
    """Each (layer, name, replacement) set on the layer instance while open (bypassing
    Layer.__setattr__'s tracking); what the instance itself had (usually nothing: the
    class's method) is put back after, also when the body raises."""
    saved = []
    try:
        for layer, name, replacement in replacements:
            saved.append((layer, name, layer.__dict__.get(name)))
            object.__setattr__(layer, name, replacement)
        yield
    finally:
        for layer, name, own in reversed(saved):
            if own is None:
                object.__delattr__(layer, name)
            else:
                object.__setattr__(layer, name, own)
