"""Tiny Keras transformers for tests/test_keras_transformers.py, and, run as a module, the
JAX or torch backend's run of them (KERAS_BACKEND is fixed at `import keras`, hence a
subprocess): weights, get_activations, log_activations(log_dir=) and a `fit` with the
callback, written into the directory given as its argument, with `result.json`.
"""

import json
import os
import sys

import keras
import numpy as np

import tb_activations as tba

GRID, PATCH, WIDTH, HEADS, KEY_DIM = 4, 8, 16, 2, 8
STEPS, VOCABULARY = 8, 50


class ClassToken(keras.layers.Layer):
    """A learned token put in front of the patch tokens."""

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), name="token",
                                     initializer="random_normal")

    def call(self, x):
        batch = keras.ops.shape(x)[0]
        token = keras.ops.broadcast_to(self.token, (batch, 1, x.shape[-1]))
        return keras.ops.concatenate([keras.ops.cast(token, x.dtype), x], axis=1)


def vit(blocks=2):
    """32 x 32 x 3 -> 8 x 8 patches by a Conv2D (a 4 x 4 grid of 16 features) -> a class
    token in front -> `blocks` attention + MLP blocks (outputs `block{i}`) -> 10 classes."""
    images = keras.Input((GRID * PATCH, GRID * PATCH, 3), name="image")
    x = keras.layers.Conv2D(WIDTH, PATCH, strides=PATCH, padding="valid", name="patches")(images)
    x = keras.layers.Reshape((GRID * GRID, WIDTH), name="tokens")(x)
    x = ClassToken(name="cls")(x)
    for i in range(blocks):
        attended = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="attention%d" % i)(x, x)
        x = keras.layers.Add(name="residual%d" % i)([x, attended])
        hidden = keras.layers.Dense(2 * WIDTH, activation="gelu", name="mlp%d_in" % i)(x)
        hidden = keras.layers.Dense(WIDTH, name="mlp%d_out" % i)(hidden)
        x = keras.layers.Add(name="block%d" % i)([x, hidden])
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(images, keras.layers.Dense(10, name="classes")(x), name="tiny_vit")


def text_encoder():
    """Token ids (0 pads) -> Embedding(mask_zero) -> causal self-attention (the padding mask
    comes with the embedding's mask) -> pooled -> 2 classes."""
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    x = keras.layers.Embedding(VOCABULARY, WIDTH, mask_zero=True, name="embed")(ids)
    x = keras.layers.MultiHeadAttention(HEADS, KEY_DIM, name="self_attention")(
        x, x, use_causal_mask=True)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(ids, keras.layers.Dense(2, name="classes")(x), name="text_encoder")


def images(count=2, seed=0):
    return np.random.default_rng(seed).normal(size=(count, 32, 32, 3)).astype("float32")


def token_ids():
    """Two sequences, the second padded after 5 tokens, the first after 7."""
    return np.array([[3, 7, 9, 4, 11, 2, 5, 0], [2, 5, 8, 8, 3, 0, 0, 0]], dtype="int32")


def attention_weights(layer):
    """{wq, bq, wk, bk} of a MultiHeadAttention as numpy."""
    return {"wq": np.asarray(keras.ops.convert_to_numpy(layer.query_dense.kernel)),
            "bq": np.asarray(keras.ops.convert_to_numpy(layer.query_dense.bias)),
            "wk": np.asarray(keras.ops.convert_to_numpy(layer.key_dense.kernel)),
            "bk": np.asarray(keras.ops.convert_to_numpy(layer.key_dense.bias))}


def reference_attention(x, weights, mask=None):
    """softmax(q kᵀ / sqrt(key_dim) + mask) in float64 numpy, (B, heads, Tq, Tk); `mask` (B,
    Tq, Tk) True where a query attends; rows with no key 0 (as Keras's masked softmax)."""
    x = x.astype(np.float64)
    q = np.einsum("btd,dnh->btnh", x, weights["wq"]) + weights["bq"]
    k = np.einsum("bsd,dnh->bsnh", x, weights["wk"]) + weights["bk"]
    scores = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask[:, None], scores, -np.inf)
    top = np.max(scores, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    exp = np.exp(scores - top)
    total = exp.sum(axis=-1, keepdims=True)
    return np.where(total > 0, exp / np.where(total > 0, total, 1.0), 0.0)


def text_mask(ids):
    """(B, T, T): causal, and neither the query nor the key a padding token."""
    valid = ids != 0
    causal = np.tril(np.ones((ids.shape[1], ids.shape[1]), dtype=bool))
    return causal[None] & valid[:, :, None] & valid[:, None, :]


def save_weights(model, path):
    np.savez(path, *model.get_weights())


def main(folder):
    results = {"backend": keras.backend.backend()}
    for name, build, probe in (("vit", vit, images), ("text", text_encoder, token_ids)):
        model, x = build(), probe()
        save_weights(model, os.path.join(folder, name + "_weights.npz"))
        before = keras.ops.convert_to_numpy(model(x, training=False))
        flash = [layer.__dict__.get("_flash_attention") for layer in model.layers
                 if isinstance(layer, keras.layers.MultiHeadAttention)]
        activations = tba.get_activations(model, x)
        np.savez(os.path.join(folder, name + "_activations.npz"), **activations)
        assert tba.log_activations(model, x, step=3, log_dir=os.path.join(folder, "logs", name))
        after = keras.ops.convert_to_numpy(model(x, training=False))
        results[name] = {
            "unchanged": bool(np.array_equal(before, after)),
            "flash_kept": flash == [layer.__dict__.get("_flash_attention")
                                    for layer in model.layers
                                    if isinstance(layer, keras.layers.MultiHeadAttention)],
            "order": list(activations)}
    # A short fit of the ViT with the callback logging each epoch.
    model = vit()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    rng = np.random.default_rng(1)
    x, y = images(16, seed=2), rng.integers(0, 10, size=16)
    callback = tba.ActivationsCallback(os.path.join(folder, "fit"), x[:2])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    save_weights(model, os.path.join(folder, "fit_weights.npz"))
    results["fit_step"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    results["tensorflow_imported"] = "tensorflow" in sys.modules
    with open(os.path.join(folder, "result.json"), "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main(sys.argv[1])
