"""Small keras-hub backbones with random weights (built from their constructors: no preset,
no download) for tests/test_keras_hub.py, and, run as a module, the JAX or torch backend's
run of the ViT (KERAS_BACKEND is fixed at `import keras`, hence a subprocess): its weights,
get_activations, log_activations(log_dir=) and the warnings, and what a Llama backbone
draws there (its attention runs in a fused ops.dot_product_attention), written into the directory
given as its argument, with `result.json`.
"""

import json
import os
import sys
import warnings

import keras
import keras_hub
import numpy as np

import tb_activations as tba

IMAGE, PATCH, HEADS, WIDTH, LAYERS = (32, 48, 3), 8, 2, 32, 2
STEPS, VOCABULARY = 8, 100


def vit():
    """A 32 x 48 picture cut into 8 x 8 patches: a 4 x 6 grid and a class token."""
    keras.utils.set_random_seed(0)
    return keras_hub.models.ViTBackbone(
        image_shape=IMAGE, patch_size=PATCH, num_layers=LAYERS, num_heads=HEADS,
        hidden_dim=WIDTH, mlp_dim=2 * WIDTH, name="vit")


def text_config():
    return dict(vocabulary_size=VOCABULARY, num_layers=LAYERS, num_heads=HEADS,
                hidden_dim=WIDTH, intermediate_dim=37, max_sequence_length=STEPS)


def bert():
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(**text_config(), name="bert")


def gpt2():
    keras.utils.set_random_seed(0)
    return keras_hub.models.GPT2Backbone(**text_config(), name="gpt2")


def llama():
    """Attention of its own (LlamaAttention, not a MultiHeadAttention), rotary positions."""
    keras.utils.set_random_seed(0)
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=VOCABULARY, num_layers=LAYERS, num_query_heads=HEADS,
        num_key_value_heads=HEADS, hidden_dim=WIDTH, intermediate_dim=37, name="llama")


def images(count=2, seed=0):
    return np.random.default_rng(seed).normal(size=(count, *IMAGE)).astype("float32")


def padding(count):
    """1 where a token is, 0 where the sequence is padded: the second sample after 5
    tokens, the third after 3."""
    lengths = [STEPS, 5, 3][:count] + [STEPS] * max(0, count - 3)
    return np.array([[1] * n + [0] * (STEPS - n) for n in lengths], dtype="int32")


def text(count=2, segments=False):
    ids = (np.arange(count * STEPS, dtype="int32").reshape(count, STEPS) * 7) % (VOCABULARY - 1) + 1
    mask = padding(count)
    probe = {"token_ids": ids * mask, "padding_mask": mask}
    if segments:
        probe["segment_ids"] = np.zeros((count, STEPS), dtype="int32")
    return probe


def main(folder):
    model, x = vit(), images()
    np.savez(os.path.join(folder, "weights.npz"), *model.get_weights())
    before = keras.ops.convert_to_numpy(model(x, training=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        activations = tba.get_activations(model, x)
        assert tba.log_activations(model, x, step=0, log_dir=os.path.join(folder, "logs"))
    np.savez(os.path.join(folder, "activations.npz"), **activations)
    after = keras.ops.convert_to_numpy(model(x, training=False))
    result = {"backend": keras.backend.backend(), "order": list(activations),
              "unchanged": bool(np.array_equal(before, after)),
              "warnings": [str(w.message) for w in caught if "tb-activations" in str(w.message)]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result["llama_drawn"] = list(tba.get_activations(llama(), text()))
    result["llama_warnings"] = [str(w.message) for w in caught
                                if "tb-activations" in str(w.message)]
    with open(os.path.join(folder, "result.json"), "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1])
