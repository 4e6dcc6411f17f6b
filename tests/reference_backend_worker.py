"""Reference steps on the Keras backend named by KERAS_BACKEND (a subprocess of
tests/test_reference_backends.py): log_reference of the hand-built detector and of a set with
NaN/Inf and ties through a model of fixed weights, and fit with the callback's
reference_every=N and "end". Writes into the directory given as its argument."""

import json
import os
import sys

import keras
import numpy as np

import tb_activations as tba
from tests import models
from tests.reference_data import CLASSES, DETECTOR_BIASES, SIDE, cross_digits, plus_kernel


def detector():
    inputs = keras.Input((SIDE, SIDE, 1), name="image")
    conv = keras.layers.Conv2D(3, 3, activation="relu", name="detector")
    outputs = keras.layers.Dense(CLASSES, name="head")(keras.layers.Flatten()(conv(inputs)))
    kernel = np.zeros((3, 3, 1, 3), np.float32)
    kernel[:, :, 0, 0] = plus_kernel()
    conv.set_weights([kernel, np.array(DETECTOR_BIASES, np.float32)])
    return keras.Model(inputs, outputs)


def hostile_values(count=37):
    """Values with many ties, NaN and Inf, as they are and through a fixed Dense (no pooling:
    how a max pooling treats NaN differs between backends)."""
    rng = np.random.default_rng(5)
    x = rng.choice(np.array([0.0, 1.0, 2.0, -1.0, np.nan, np.inf], np.float32),
                   size=(count, 6, 6, 2))
    inputs = keras.Input((6, 6, 2))
    same = keras.layers.Identity(name="same")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, name="mix", kernel_initializer="ones")(
        same)), x


def main(folder):
    x, y, _ = cross_digits(120)
    assert tba.log_reference(detector(), x, y, step=1, log_dir=os.path.join(folder, "detector"),
                             batch_size=50, layers=["detector"])
    model, values = hostile_values()
    assert tba.log_reference(model, values, step=0, log_dir=os.path.join(folder, "hostile"),
                             batch_size=8, layers=["same", "mix"], channel_selection="top",
                             max_channels=2)
    for every in (3, "end"):
        trained = models.small_cnn()
        trained.compile("adam", "sparse_categorical_crossentropy")
        images = models.rng(1).normal(size=(64, 16, 16, 1)).astype(np.float32)
        labels = np.arange(64) % 10
        trained.fit(images, labels, epochs=2, batch_size=16, verbose=0, callbacks=[
            tba.ActivationsCallback(os.path.join(folder, "fit_%s" % every), probe=images[:2],
                                    reference=(images[:20], labels[:20]),
                                    reference_every=every, reference_batch_size=8)])
    with open(os.path.join(folder, "result.json"), "w") as file:
        json.dump({"backend": keras.backend.backend(),
                   "tensorflow_imported": "tensorflow" in sys.modules}, file)


if __name__ == "__main__":
    main(sys.argv[1])
