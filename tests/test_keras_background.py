"""Keras's log_activations(background=True): the custom loop waits for the probe's forward
pass only; the run's own thread (writing.destination_threads, shared with PyTorch's
log_activations) writes the steps in order, drained by tba.flush()/close() and at exit;
failures are reported later, as on_error says."""

import glob
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.keras import log as log_lib
from tests import models
from tests.full_disk import fill
from tests.test_torch_background import steps_in_file_order, stops_reported_by, values_at

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV_TAG = "conv1"


def probe(seed=1):
    return models.rng(seed).normal(size=(2, 16, 16, 1)).astype("float32")


def conv_steps(log_dir):
    return steps_in_file_order(log_dir, metadata.layer_tag(CONV_TAG))


def test_a_step_shows_the_model_and_probe_as_they_were_at_the_call(tmp_path, monkeypatch):
    """Weights and the probe array changed in place right after the call do not reach the
    step written later on the run's thread: it equals a step written in the foreground,
    probe pictures included. The run's thread renders only once they have changed."""
    model, x = models.small_cnn(), probe()
    assert tba.log_activations(model, x, step=0, log_dir=str(tmp_path / "foreground"))
    changed = threading.Event()
    render = log_lib.probe_rendered
    monkeypatch.setattr(log_lib, "probe_rendered",
                        lambda *args: changed.wait(60) and render(*args))
    assert tba.log_activations(model, x, step=0, log_dir=str(tmp_path / "background"),
                               background=True)
    for variable in model.trainable_variables:
        variable.assign(-3.0 * variable.numpy())
    x[...] = np.flip(x, axis=1)  # probe pictures are scaled per picture: flip, not scale
    changed.set()
    tba.flush()
    expected = values_at(tmp_path / "foreground", 0)
    logged = values_at(tmp_path / "background", 0)
    assert sorted(logged) == sorted(expected)
    assert len(logged) == len(models.SMALL_CNN_DRAWN) * 2
    for key, value in expected.items():
        np.testing.assert_array_equal(logged[key], value)
    pictures = [probe_pictures(tmp_path / name) for name in ("foreground", "background")]
    assert pictures[0] and pictures[1] == pictures[0]


def probe_pictures(log_dir):
    """The probe pictures' PNG bytes in the run, read by TensorBoard's own loader."""
    found = []
    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            found += [tensor_util.make_ndarray(value.tensor).tolist()
                      for value in event.summary.value
                      if value.tag.startswith(metadata.PROBE_TAG_PREFIX)]
    return found


def test_steps_are_written_in_order_also_when_the_foreground_joins_in(tmp_path):
    model, x = models.small_cnn(), probe()
    for step in range(6):
        assert tba.log_activations(model, x, step=step, log_dir=str(tmp_path),
                                   background=step not in (3, 4))
    tba.flush()
    assert conv_steps(tmp_path) == list(range(6))


def test_background_needs_log_dir_and_a_bool(tmp_path):
    model = models.small_cnn()
    with pytest.raises(ValueError, match="background=True writes into log_dir="):
        tba.log_activations(model, probe(), step=0, background=True)
    with pytest.raises(TypeError, match="background must be True .* or False .*, got 'yes'"):
        tba.log_activations(model, probe(), step=0, log_dir=str(tmp_path / "x"),
                            background="yes")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("on_error", ["warn", "raise"])
def test_a_failure_on_the_runs_thread_is_reported_by_flush(tiny_disk, on_error):
    model, x = models.small_cnn(), probe()
    log_dir = str(tiny_disk / "run")
    assert tba.log_activations(model, x, step=0, log_dir=log_dir, on_error=on_error,
                               background=True)
    tba.flush()
    fill(tiny_disk, leaving=0)
    assert tba.log_activations(model, x, step=1, log_dir=log_dir, on_error=on_error,
                               background=True)
    assert len(stops_reported_by(tba.flush, on_error)) == (on_error == "warn")
    if on_error == "raise":
        tba.close()
    assert conv_steps(log_dir) == [0]


_LOOP = r"""
import sys
sys.path.insert(0, %(root)r)
import tb_activations as tba
from tests import models
from tests.test_keras_background import probe

model, x = models.small_cnn(), probe()
for step in range(%(steps)d):
    assert tba.log_activations(model, x, step=step, log_dir=%(log_dir)r, background=True)
"""


def test_a_loop_that_ends_without_flush_has_every_step_written(tmp_path):
    script = _LOOP % {"root": REPO, "log_dir": str(tmp_path), "steps": 4}
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                             cwd=REPO)
    assert process.returncode == 0, process.stderr.decode()[-2000:]
    assert conv_steps(tmp_path) == list(range(4))
