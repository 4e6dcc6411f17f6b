"""Keras 3 on its JAX and torch backends: the writer test models and a `fit` with the
callback, run in one subprocess per backend (tests/keras_backend_worker.py), checked here
against the TensorFlow backend for the same weights and against what the reader reads
back."""

import keras
import numpy as np
import pytest

from tb_activations import read_activations
from tb_activations.keras import capture
from tests import backend_runs
from tests import keras_backend_worker


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend_run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_" + request.param)
    return folder, backend_runs.run_worker("tests.keras_backend_worker", request.param, folder)


def load(folder, name):
    with np.load(folder / name) as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_the_other_backends_import_no_tensorflow(backend_run):
    _, result = backend_run
    assert result["backend"] in ("jax", "torch")
    assert not result["tensorflow_imported"]


@pytest.mark.parametrize("name", sorted(keras_backend_worker.MODELS))
def test_activations_equal_tensorflow_ones_for_the_same_weights(backend_run, name):
    folder, _ = backend_run
    build, probe = keras_backend_worker.MODELS[name]
    model, x = build(), probe()
    weights = load(folder, name + "_weights.npz")
    model.set_weights([weights["arr_%d" % i] for i in range(len(weights))])
    expected = capture.get_activations(model, x)
    activations = load(folder, name + "_activations.npz")
    # In call order: names Keras makes up (softmax_3) depend on what the process built before.
    assert len(activations) == len(expected)
    for (path, value), (expected_path, expected_value) in zip(activations.items(),
                                                              expected.items()):
        np.testing.assert_allclose(value, expected_value, rtol=1e-4, atol=1e-5,
                                   err_msg="%s (%s on TensorFlow)" % (path, expected_path))
    predicted = load(folder, name + "_predicted.npz")
    outputs = keras.tree.flatten(model(x, training=False))
    for i, output in enumerate(outputs):  # the last layers' outputs are the model's
        np.testing.assert_allclose(predicted["arr_%d" % i], np.asarray(output), rtol=1e-4,
                                   atol=1e-5)
    records = list(read_activations(folder / "logs" / name))
    assert {record.step for record in records} == {7}
    assert {record.layer for record in records} <= set(activations)
    for record in records:
        sample = activations[record.layer][record.sample].astype(np.float64)
        np.testing.assert_allclose(record.layer_statistics["mean"], sample.mean(), rtol=1e-4,
                                   atol=1e-5, err_msg=record.layer)


def test_fit_logs_every_second_batch_with_the_weights_of_that_step(backend_run):
    folder, result = backend_run
    records = list(read_activations(folder / "fit"))
    assert sorted({record.step for record in records}) == result["steps"] == [0, 2, 4, 6, 8]
    initial, final = load(folder, "fit_initial.npz"), load(folder, "fit_final.npz")
    means = {}
    for record in records:
        means.setdefault(record.step, []).append(record.layer_statistics["mean"])
        if record.step in (0, 8):
            value = (initial if record.step == 0 else final)[record.layer][record.sample]
            np.testing.assert_allclose(record.layer_statistics["mean"],
                                       value.astype(np.float64).mean(), rtol=1e-4, atol=1e-5)
    # Mid-epoch steps see the trainer's current weights, not those of the epoch's start
    # (JAX's trainer holds them in its own state until synced).
    assert means[2] != means[0] and means[2] != means[4] and means[6] != means[8]
