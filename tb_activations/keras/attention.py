"""Attention probabilities (B, heads, Tq, Tk) of every keras.layers.MultiHeadAttention (and
subclass: keras-hub's CachedMultiHeadAttention, ...) in the probe pass, as tensors of the same
traced function; keras.layers.Attention and AdditiveAttention give their weights (B, Tq, Tv)
beside their output (recording_weights), one head.

No layer returns its probabilities unless called with return_attention_scores=True, and
Keras's fast path (ops.dot_product_attention, flash attention or not) never forms them. So
while the probe function is traced (on torch: during each pass), each such layer's
`_compute_attention(query, key, value, attention_mask, training, ...)` is wrapped on the
instance: the wrapper runs the layer's own method with the caller's arguments and returns
its result untouched (the layer's output is bit-identical: the same ops on the same
values), then reads the probabilities:

- the scores the call returned, when it returned some (return_attention_scores=True, or
  Keras's explicit path: dropout, attention_axes over several axes);
- else by calling the layer's `_compute_attention` once more on the same projected query,
  key, value and mask with return_attention_scores=True and the layer's `_flash_attention`
  off (put back right after, also if the call raises): Keras's own explicit path,
  einsum(query / sqrt(key_dim), key) then its masked softmax (masked keys -1e9, a row whose
  every key is masked 0), so the values are Keras's own definition with the layer's own
  causal and padding masks. That second call's output is discarded; layer outputs it makes
  (the layer's Softmax sublayer) are not recorded.

A subclass whose `_compute_attention` takes no return_attention_scores and returns no scores
is skipped with a warning. A layer called several times keeps its first call's
probabilities.

A layer of its own whose class name says Attention (keras-hub's Llama, Gemma, Mistral...)
has its probabilities read from its keras.layers.Softmax sublayer's output when that ran
(own_attention_softmaxes); where it computes them inside ops.dot_product_attention or its
own ops.softmax, they never exist as a tensor to read, and `unread_attention` names the
layer for a one-line warning. The private APIs are in keras/compat.py.
"""

import contextlib
import inspect
import math
import re
import warnings

import keras

from tb_activations.keras import compat


def attention_layers(candidates):
    """[(path, layer)] of the candidates that are MultiHeadAttention layers."""
    return [(path, layer) for path, layer in candidates
            if isinstance(layer, keras.layers.MultiHeadAttention)]


# A class name saying its layer computes attention (and not only its mask: keras-hub's
# ComputeAttentionMask, XLNetAttentionMaskLayer).
ATTENTION_CLASS_NAME = re.compile(r"Attention(?!Mask)")


def says_attention(layer):
    return isinstance(layer, keras.layers.MultiHeadAttention) or bool(
        ATTENTION_CLASS_NAME.search(type(layer).__name__))


def innermost_attention(candidates):
    """[(path, layer)] of the candidates that are attention layers (MultiHeadAttention, or a
    class name saying Attention: keras.layers.Attention among them) holding no other one."""
    says = [(path, layer) for path, layer in candidates if says_attention(layer)]
    return [(path, layer) for path, layer in says
            if not any(other.startswith(path + "/") for other, _ in says)]


def own_attention_softmaxes(chosen, candidates):
    """{path: (layer, [paths of its keras.layers.Softmax sublayers])} of the chosen
    attention layers of their own (not MultiHeadAttention: keras-hub's Llama, Gemma,
    Mistral... layers, which compute softmax(q·kᵀ·scale + mask) through a Softmax sublayer
    where no fused ops.dot_product_attention is available, as on TensorFlow)."""
    own = [(path, layer) for path, layer in innermost_attention(chosen)
           if not isinstance(layer, (keras.layers.MultiHeadAttention, keras.layers.Attention))]
    return {path: (layer, [inner for inner, sublayer in candidates
                           if inner.startswith(path + "/")
                           and isinstance(sublayer, keras.layers.Softmax)])
            for path, layer in own}


def softmax_probabilities(softmaxes, outputs):
    """{path: (layer, (B, heads, Tq, Tk) float32)} of the attention layers of `softmaxes`
    (own_attention_softmaxes) whose Softmax sublayer gave a (B, heads, Tq, Tk) output in
    this pass (`outputs`: {path: first output})."""
    found = {}
    for path, (layer, inner) in softmaxes.items():
        for softmax in inner:
            output = outputs.get(softmax)
            if keras.ops.is_tensor(output) and len(output.shape) == 4:
                found[path] = (layer, keras.ops.cast(output, "float32"))
                break
    return found


def attention_softmax_paths(candidates, recorded):
    """Paths of the keras.layers.Softmax sublayers of the attention layers whose
    probabilities were `recorded` (drawn at path:attention already, so not again)."""
    prefixes = tuple(path + "/" for path in recorded)
    return {path for path, layer in candidates
            if prefixes and isinstance(layer, keras.layers.Softmax) and path.startswith(prefixes)}


def unread_attention(chosen, called, recorded):
    """[(path, class name)] of the called attention layers among `chosen` whose
    probabilities the pass did not read (not in `recorded`): a layer of its own with no
    Softmax sublayer, or whose softmax ran inside a fused ops.dot_product_attention (keras-hub
    on JAX and torch), or a MultiHeadAttention whose `_compute_attention` never ran (a
    subclass computing attention in its own `call`)."""
    return [(path, type(layer).__name__) for path, layer in innermost_attention(chosen)
            if path in called and path not in recorded]


def unread_attention_warning(unread):
    """The one line that names the attention layers whose heads are not drawn, and what to
    do about it."""
    return ("tb-activations draws no attention heads for %s: they compute attention outside "
            "keras.layers.MultiHeadAttention._compute_attention and a keras.layers.Softmax "
            "sublayer, so no probabilities exist to read (their outputs are drawn); compute "
            "it in a MultiHeadAttention (or subclass), or through a Softmax sublayer, to see "
            "the heads (docs/keras.md)" % ", ".join("%s (%s)" % pair for pair in unread))


def as_batch_heads(scores, query_axes):
    """(B, heads, Tq, Tk) float32 of scores (batch axes..., heads, query axes..., key
    axes...): query and key axes (`query_axes` of each) flattened, extra batch axes (those
    attention_axes leaves out) folded into the batch."""
    shape = tuple(scores.shape)
    if len(shape) < 4 or query_axes < 1 or len(shape) < 2 + 2 * query_axes:
        raise ValueError("its attention scores have shape %s, not (batch, heads, queries, "
                         "keys)" % (shape,))
    queries = math.prod(shape[len(shape) - 2 * query_axes:len(shape) - query_axes])
    keys = math.prod(shape[len(shape) - query_axes:])
    heads = shape[len(shape) - 2 * query_axes - 1]
    scores = keras.ops.cast(scores, "float32")
    if len(shape) == 4:
        return scores
    return keras.ops.reshape(scores, (-1, heads, queries, keys))


def head_numbers(probabilities, grid=None):
    """(3, B, heads) float32 in the backend's ops, from the full-resolution (B, heads, Tq, Tk)
    probabilities inside the traced pass: per sample and head the entropy (mean over
    queries of -sum p log p, nats), the peak (mean over queries of the largest
    probability) and the mean attention distance in patches over `grid` ((rows, columns,
    prefix) of the keys and the queries; 0 without one): as torch/attention.head_numbers."""
    ops = keras.ops
    p = probabilities
    logs = ops.where(p > 0, ops.log(ops.maximum(p, 1e-38)), ops.zeros_like(p))
    entropy = -ops.mean(ops.sum(p * logs, axis=-1), axis=-1)
    peak = ops.mean(ops.max(p, axis=-1), axis=-1)
    distance = ops.zeros_like(entropy)
    if grid is not None:
        rows, columns, prefix = grid
        cells = rows * columns
        on_grid = p[:, :, prefix:, prefix:]
        index = ops.arange(cells, dtype="int32")
        row = ops.cast(index // columns, "float32")
        column = ops.cast(index % columns, "float32")
        table = ops.sqrt(ops.square(row[:, None] - row[None, :])
                         + ops.square(column[:, None] - column[None, :]))
        mass = ops.sum(on_grid, axis=-1)
        spread = ops.sum(on_grid * table, axis=-1)
        kept = ops.cast(mass > 0, "float32")
        per_query = kept * spread / ops.maximum(mass, 1e-30)
        distance = ops.sum(per_query, axis=-1) / ops.maximum(ops.sum(kept, axis=-1), 1.0)
    return ops.stack([entropy, peak, distance])


def rollout(probabilities):
    """(B, T, T) float32 attention rollout (Abnar & Zuidema 2020) of the full-resolution
    (B, heads, T, T) probabilities of each attention layer in forward order, in the
    backend's ops: R <- normalise_rows(0.5 * mean_heads(A) + 0.5 * I) @ R, as
    torch/rollout.rollout_step."""
    ops = keras.ops
    product = None
    for values in probabilities:
        mixed = 0.5 * ops.mean(values, axis=1) + 0.5 * ops.eye(values.shape[-1], dtype="float32")
        mixed = mixed / ops.sum(mixed, axis=-1, keepdims=True)
        product = mixed if product is None else ops.matmul(mixed, product)
    return product


@contextlib.contextmanager
def flash_attention_off(layer):
    """The layer's flash-attention setting off for the context, put back as it was."""
    had, value = compat.flash_attention_setting(layer)
    compat.set_flash_attention(layer, False)
    try:
        yield
    finally:
        compat.restore_flash_attention(layer, had, value)


def _scores_of(result):
    if isinstance(result, (tuple, list)) and len(result) == 2:
        return result[1]
    return None


def probabilities(layer, original, args, kwargs, result, muted):
    """(B, heads, Tq, Tk) float32 attention probabilities of one `_compute_attention` call
    that gave `result`; `muted()` is the context under which the second call runs."""
    scores = _scores_of(result)
    if scores is None:
        signature = inspect.signature(original)
        if "return_attention_scores" not in signature.parameters:
            raise ValueError("its _compute_attention returns no scores and takes no "
                             "return_attention_scores")
        bound = signature.bind(*args, **kwargs)
        bound.arguments["return_attention_scores"] = True
        with muted(), flash_attention_off(layer):
            scores = _scores_of(original(*bound.args, **bound.kwargs))
        if scores is None:
            raise ValueError("its _compute_attention returned no scores with "
                             "return_attention_scores=True")
    return as_batch_heads(scores, compat.attention_axes_count(layer, scores))


def weight_layers(candidates):
    """[(path, layer)] of the candidates that are keras.layers.Attention (dot-product) or
    AdditiveAttention layers: one head each."""
    return [(path, layer) for path, layer in candidates
            if isinstance(layer, keras.layers.Attention)]


@contextlib.contextmanager
def recording_weights(layers, found):
    """While open, each of `layers` ([(path, keras.layers.Attention)])'s first call's
    weights land in `found[path]` as (layer, (B, 1, Tq, Tv) float32): its `_apply_scores`
    returns them beside its output, so nothing is computed twice."""
    def recorder(path, layer, original):
        def recorded(*args, **kwargs):
            result = original(*args, **kwargs)
            if path not in found:
                weights = result[1]
                if len(weights.shape) == 3:
                    found[path] = (layer, keras.ops.cast(weights, "float32")[:, None])
                else:
                    found[path] = (layer, None)
                    warnings.warn("tb-activations could not record the attention of %s (%s): "
                                  "its weights have shape %s, not (batch, queries, keys)"
                                  % (path, type(layer).__name__, tuple(weights.shape)),
                                  stacklevel=2)
            return result
        return recorded

    with compat.instance_methods(
            [(layer, "_apply_scores", recorder(path, layer, layer._apply_scores))
             for path, layer in layers]):
        yield


@contextlib.contextmanager
def recording_attention(layers, found, muted, repeated=None):
    """While open, each of `layers` ([(path, MultiHeadAttention)])'s first call's
    probabilities land in `found[path]` as (layer, (B, heads, Tq, Tk) float32 tensor), and
    the paths of those called again in the set `repeated` (when given: a rollout, one step
    per layer, cannot follow them). `muted()`: a context during which the layer-call
    recording records nothing."""
    def recorder(path, layer, original):
        def recorded(*args, **kwargs):
            result = original(*args, **kwargs)
            if path in found and repeated is not None:
                repeated.add(path)
            if path not in found:
                try:
                    found[path] = (layer, probabilities(layer, original, args, kwargs, result,
                                                        muted))
                except Exception as error:  # noqa: BLE001: never break the user's pass
                    found[path] = (layer, None)
                    warnings.warn("tb-activations could not record the attention of %s (%s): "
                                  "%s" % (path, type(layer).__name__, error), stacklevel=2)
            return result
        return recorded

    with compat.instance_methods(
            [(layer, "_compute_attention", recorder(path, layer, layer._compute_attention))
             for path, layer in layers]):
        yield
