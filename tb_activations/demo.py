"""The demo: the seed articles' MNIST CNN trained on real handwritten digits, offline.

The digits are scikit-learn's 1,797 8x8 scans (they ship inside the package), upscaled to
28x28 so the network has MNIST's shape.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from tb_activations.keras.callback import ActivationsCallback


def load_digits_28():
    """(images (N, 28, 28, 1) float32 in [0, 1], labels (N,) int) from scikit-learn."""
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    upscaled = tf.image.resize(images[..., None], (28, 28), method="bilinear").numpy()
    return np.clip(upscaled, 0.0, 1.0), digits.target.astype(np.int64)


def mnist_cnn():
    """Two conv blocks and a dense head, as in the seed articles."""
    return keras.Sequential([
        keras.Input((28, 28, 1), name="digit"),
        keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(name="pool1"),
        keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(name="pool2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(0.3, name="dropout"),
        keras.layers.Dense(128, activation="relu", name="dense"),
        keras.layers.Dense(10, activation="softmax", name="digit_class"),
    ], name="mnist_cnn")


def probe_digits(images, labels, count):
    """The first sample of each of the first `count` classes: a probe you can read at once."""
    picks = [int(np.flatnonzero(labels == digit)[0]) for digit in range(count)]
    return images[picks]


def train_demo(log_dir, epochs=6, batch_size=32, update_every=10, probe_count=6, console=None):
    """Trains the CNN with ActivationsCallback logging into `log_dir/mnist_cnn`, with the
    validation digits and their labels as the reference set (which digits each unit responds
    to, once per epoch); returns the run directory and the final validation accuracy."""
    keras.utils.set_random_seed(0)
    images, labels = load_digits_28()
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.85 * len(images))
    model = mnist_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    run_dir = os.path.join(log_dir, "mnist_cnn")
    callbacks = [
        keras.callbacks.TensorBoard(run_dir),
        ActivationsCallback(run_dir, probe=probe_digits(images[split:], labels[split:],
                                                        probe_count),
                            reference=(images[split:], labels[split:]), reference_every="epoch",
                            update_freq=update_every, save_model=True,
                            class_names=[str(digit) for digit in range(10)]),
    ]
    history = model.fit(images[:split], labels[:split], validation_data=(images[split:],
                                                                         labels[split:]),
                        epochs=epochs, batch_size=batch_size, callbacks=callbacks, verbose=2)
    return run_dir, history.history["val_accuracy"][-1]
