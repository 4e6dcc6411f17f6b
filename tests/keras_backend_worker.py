"""Runs the writer test models on the Keras backend named by KERAS_BACKEND (fixed at
`import keras`, hence a subprocess of tests/test_keras_backends.py).

Writes into the directory given as its argument: per model, its weights and its
get_activations, predict and log_activations(log_dir=) results; a `fit` run with the
callback logging every 2 batches; and `result.json` saying whether our calls imported TensorFlow.
"""

import json
import os
import sys

import keras
import numpy as np

import tb_activations as tba
from tests import models

# name -> (builder, probe): the models of the writer tests.
MODELS = {
    "nested": (lambda: models.nested_mobilenet((32, 32, 3)),
               lambda: models.rng(1).normal(size=(2, 32, 32, 3)).astype("float32")),
    "subclassed": (models.subclassed,
                   lambda: models.rng(2).normal(size=(3, 8, 8, 3)).astype("float32")),
    "multi_io": (models.multi_io, lambda: list(models.multi_io_probe())),
    "multi_io_dict": (lambda: models.multi_io(dict_inputs=True),
                      lambda: dict(zip(["image", "meta"], models.multi_io_probe()))),
    "sequence_attention": (models.sequence_attention, models.sequence_probe),
    "conv3d": (models.conv3d,
               lambda: models.rng(3).normal(size=(2, 6, 10, 10, 2)).astype("float32")),
}


def run_model(name, folder):
    """Returns whether TensorFlow was imported by then, before Keras's own predict (whose
    data adapters may import it)."""
    build, probe = MODELS[name]
    model, x = build(), probe()  # no keras.utils.set_random_seed: it imports TensorFlow
    activations = tba.get_activations(model, x)
    assert tba.log_activations(model, x, step=7, log_dir=os.path.join(folder, "logs", name))
    tensorflow_imported = "tensorflow" in sys.modules
    predicted = keras.tree.flatten(model.predict(x, verbose=0))
    np.savez(os.path.join(folder, name + "_weights.npz"), *model.get_weights())
    np.savez(os.path.join(folder, name + "_activations.npz"), **activations)
    np.savez(os.path.join(folder, name + "_predicted.npz"), *predicted)
    return tensorflow_imported


def main(folder):
    tensorflow_imported = [run_model(name, folder) for name in MODELS][0]
    run = models.train_and_log(os.path.join(folder, "fit"), epochs=2, update_freq=2,
                               tensorboard=False)
    np.savez(os.path.join(folder, "fit_initial.npz"), **run.initial)
    np.savez(os.path.join(folder, "fit_final.npz"), **run.final)
    with open(os.path.join(folder, "result.json"), "w") as file:
        json.dump({"backend": keras.backend.backend(), "steps": run.steps,
                   "tensorflow_imported": tensorflow_imported}, file)


if __name__ == "__main__":
    main(sys.argv[1])
