"""Reference steps on Keras's JAX and torch backends (tests/reference_backend_worker.py, one
subprocess per backend), read back here and checked against the same calls on TensorFlow."""

import numpy as np
import pytest

import tb_activations as tba
from tests import backend_runs
from tests import reference_backend_worker as worker


@pytest.fixture(scope="module")
def tensorflow_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference_tensorflow")
    model, values = worker.hostile_values()
    assert tba.log_reference(model, values, step=0, log_dir=folder / "hostile", batch_size=8,
                             layers=["same", "mix"], channel_selection="top", max_channels=2)
    return folder


@pytest.fixture(scope="module", params=["jax", "torch"])
def backend_run(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference_" + request.param)
    return folder, backend_runs.run_worker("tests.reference_backend_worker", request.param,
                                           folder)


def test_the_detector_is_selective_on_every_backend(backend_run):
    folder, result = backend_run
    assert not result["tensorflow_imported"]
    x, y, centres = worker.cross_digits(120)
    (step,) = tba.read_reference(folder / "detector")["."].layers["detector"]
    assert abs(step.selectivity[0] - 1) < 1e-6 and np.all(y[step.top_index[0]] == 0)
    assert np.array_equal(step.top_position[0], centres[step.top_index[0]] - 1)
    assert list(step.dead) == [False, True, False]
    assert step.content["receptive_field"]["exact"]


def test_nan_inf_and_ties_rank_alike_on_every_backend(backend_run, tensorflow_run):
    folder, _ = backend_run
    theirs = tba.read_reference(folder / "hostile")["."].layers
    ours = tba.read_reference(tensorflow_run / "hostile")["."].layers
    assert list(theirs) == list(ours) == ["same", "mix"]
    for path in ours:
        mine, other = ours[path][0], theirs[path][0]
        for name in ("units", "top_index", "top_position", "zero_fraction"):
            assert np.array_equal(getattr(mine, name), getattr(other, name)), (path, name)
        np.testing.assert_allclose(other.top_value, mine.top_value, rtol=1e-6)


@pytest.mark.parametrize("every, steps", [(3, [0, 3, 6]), ("end", [0, 8])])
def test_the_callback_passes_when_asked(backend_run, every, steps):
    folder, _ = backend_run
    run = tba.read_reference(folder / ("fit_%s" % every))["."]
    assert [s.step for s in run.layers["conv2"]] == steps
    assert run.inputs["inputs"] == 20 and len(run.labels) == 20
