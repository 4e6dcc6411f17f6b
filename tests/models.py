"""Small real Keras models (and one training helper) shared by the test suites.

Every builder names its layers, so tests can refer to paths, and returns a built model.
Sizes are tiny so the whole suite runs on two CPU cores; none downloads anything.
"""

import dataclasses
import os

import keras
import numpy as np

from tb_activations.keras import callback as callback_lib
from tb_activations.keras import capture


def rng(seed=0):
    return np.random.default_rng(seed)


def small_cnn(input_shape=(16, 16, 1), classes=10):
    """Conv/BN/pool/dense classifier with every kind of skipped pass-through layer."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad")(x)
    x = keras.layers.Conv2D(12, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(16, activation="relu", name="dense")(x)
    x = keras.layers.Reshape((4, 4), name="reshape")(x)
    x = keras.layers.Flatten(name="flatten2")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


# Layers of small_cnn the default selection draws, in call order.
SMALL_CNN_DRAWN = ["conv1", "bn1", "conv2", "pool", "dense", "logits"]


def branchy():
    """Functional model with two branches joined by Add and Concatenate."""
    inputs = keras.Input((12, 12, 3), name="pixels")
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    left = keras.layers.Conv2D(4, 1, name="left")(stem)
    right = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="right")(stem)
    added = keras.layers.Add(name="add")([left, right])
    joined = keras.layers.Concatenate(name="concat")([added, stem])
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(joined)
    outputs = keras.layers.Dense(3, name="head")(pooled)
    return keras.Model(inputs, outputs, name="branchy")


def multi_io(dict_inputs=False):
    """Two inputs (an image and a vector), two outputs. With `dict_inputs` the model is
    called on {"image": ..., "meta": ...}."""
    image = keras.Input((10, 10, 1), name="image")
    meta = keras.Input((5,), name="meta")
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(image)
    x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    m = keras.layers.Dense(3, activation="relu", name="meta_dense")(meta)
    joined = keras.layers.Concatenate(name="joined")([x, m])
    label = keras.layers.Dense(2, activation="softmax", name="label")(joined)
    score = keras.layers.Dense(1, name="score")(joined)
    inputs = {"image": image, "meta": meta} if dict_inputs else [image, meta]
    return keras.Model(inputs, [label, score], name="multi_io")


def multi_io_probe(batch=3, seed=0):
    generator = rng(seed)
    return (generator.normal(size=(batch, 10, 10, 1)).astype("float32"),
            generator.normal(size=(batch, 5)).astype("float32"))


def nested_mobilenet(input_shape=(96, 96, 3)):
    """A MobileNetV2 backbone (random weights, alpha 0.35) inside a Sequential."""
    backbone = keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=0.35, include_top=False, weights=None)
    return keras.Sequential([
        keras.Input(input_shape, name="photo"),
        backbone,
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(4, name="head"),
    ], name="classifier")


class Block(keras.layers.Layer):
    """A composite layer: its sublayers are only reachable through it."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(units, activation="relu", name="inner")
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        return self.norm(self.inner(x))


class Subclassed(keras.Model):
    """A subclassed model holding a composite sublayer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, activation="relu", name="conv")
        self.pool = keras.layers.GlobalAveragePooling2D(name="gap")
        self.block = Block(6, name="block")
        self.out = keras.layers.Dense(2, name="out")

    def call(self, x):
        return self.out(self.block(self.pool(self.conv(x))))


def subclassed(input_shape=(8, 8, 3)):
    model = Subclassed(name="subclassed")
    model(np.zeros((1,) + input_shape, "float32"))
    return model


def shared_layer():
    """One Dense called twice (on the input, then on its own relu'd output)."""
    inputs = keras.Input((6,), name="vector")
    shared = keras.layers.Dense(6, name="shared")
    first = shared(inputs)
    middle = keras.layers.Activation("relu", name="relu")(first)
    second = shared(middle)
    outputs = keras.layers.Dense(2, name="out")(second)
    return keras.Model(inputs, outputs, name="shared_layer")


def sequence_attention(vocabulary=50, steps=7):
    """Token ids -> Embedding -> LSTM -> self-attention (returning its scores) -> pooling."""
    tokens = keras.Input((steps,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary, 8, name="embed")(tokens)
    x = keras.layers.LSTM(6, return_sequences=True, name="lstm")(x)
    attended, scores = keras.layers.MultiHeadAttention(2, 4, name="attention")(
        x, x, return_attention_scores=True)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(attended)
    flat_scores = keras.layers.Flatten(name="flat_scores")(scores)
    x = keras.layers.Concatenate(name="joined")([x, flat_scores])
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(tokens, outputs, name="sequence_attention")


def sequence_probe(batch=3, vocabulary=50, steps=7, seed=0):
    return rng(seed).integers(0, vocabulary, size=(batch, steps)).astype("int32")


def conv3d(input_shape=(6, 10, 10, 2)):
    inputs = keras.Input(input_shape, name="volume")
    x = keras.layers.Conv3D(3, 3, padding="same", activation="relu", name="conv3d")(inputs)
    x = keras.layers.MaxPooling3D(2, name="pool3d")(x)
    x = keras.layers.GlobalAveragePooling3D(name="gap3d")(x)
    outputs = keras.layers.Dense(2, name="out")(x)
    return keras.Model(inputs, outputs, name="conv3d_model")


def digits(count=256, size=16, seed=0):
    """(images, labels): scikit-learn's bundled 8x8 digits, upscaled to size x size, in 0..1."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = rng(seed).permutation(len(data.images))[:count]
    scale = size // 8
    images = np.kron(data.images[order], np.ones((scale, scale))) / 16.0
    return images[..., None].astype("float32"), data.target[order].astype("int32")


@dataclasses.dataclass
class TrainedRun:
    """What train_and_log produced: where, with what, and which steps were logged."""

    log_dir: str
    model: keras.Model
    probe: np.ndarray
    steps: list
    layers: list
    history: dict
    initial: dict  # get_activations(model, probe) before fit (what step 0 shows)
    final: dict  # ... and after fit (what the last step shows)


def train_and_log(log_dir, epochs=2, batch_size=64, samples=256, update_freq="epoch",
                  tensorboard=True, save_model=False, probe_size=4, seed=0, **options):
    """Fits small_cnn on digits with ActivationsCallback (and keras' TensorBoard callback in
    the same log_dir). Returns a TrainedRun whose `steps` are the steps that must be logged."""
    keras.utils.set_random_seed(seed)
    images, labels = digits(samples, seed=seed)
    model = small_cnn(images.shape[1:])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    probe = images[:probe_size]
    initial = capture.get_activations(model, probe)
    callbacks = [callback_lib.ActivationsCallback(
        log_dir, probe, update_freq=update_freq, save_model=save_model, **options)]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(os.fspath(log_dir), update_freq="epoch"))
    history = model.fit(images, labels, epochs=epochs, batch_size=batch_size, verbose=0,
                        callbacks=callbacks)
    batches = -(-samples // batch_size)
    if update_freq == "epoch":
        steps = [0] + [batches * (epoch + 1) for epoch in range(epochs)]
    else:
        every = 1 if update_freq == "batch" else update_freq
        steps = [0] + list(range(every, batches * epochs + 1, every))
    return TrainedRun(os.fspath(log_dir), model, probe, steps, list(SMALL_CNN_DRAWN),
                      history.history, initial, capture.get_activations(model, probe))
