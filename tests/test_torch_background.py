"""PyTorch's log_activations in the background (writing.destination_threads): the loop
waits for the capture only; steps are written in order by one thread per destination, one
queued at most, drained by flush()/close() and at exit; failures are reported later, as
on_error says; a killed process loses at most the two latest steps."""

import glob
import os
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_file_loader

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.format import metadata
from tb_activations.writing import destinations
from tb_activations.writing import events
from tests.full_disk import fill

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV_TAG = metadata.layer_tag("0")


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 4, 3, padding=1))


def probe(seed=1):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 3, 12, 12))
                            .astype("float32"))


def steps_in_file_order(log_dir, tag=CONV_TAG):
    """The steps of `tag`'s events, in the order they lie in the run's event files, read by
    TensorBoard's own loader."""
    found = []
    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            if any(value.tag == tag for value in event.summary.value):
                found.append(event.step)
    return found


def values_at(log_dir, step):
    return {(record.layer, record.sample): record.values()
            for record in tba.read_activations(str(log_dir)) if record.step == step}


def test_a_step_shows_the_model_as_it_was_at_the_call(tmp_path):
    """Weights and the probe changed in place right after the call do not reach the step
    written later in the background: it equals a step written in the foreground."""
    model, x = small_cnn(), probe()
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "foreground",
                                background=False)
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "background")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(-3.0)
        x.mul_(5.0)
    tbat.flush()
    expected, logged = values_at(tmp_path / "foreground", 0), values_at(tmp_path / "background", 0)
    assert sorted(logged) == sorted(expected) and len(logged) == 3 * 2
    for key, value in expected.items():
        np.testing.assert_array_equal(logged[key], value)


def test_steps_are_written_in_order_also_when_the_foreground_joins_in(tmp_path):
    model, x = small_cnn(), probe()
    for step in range(6):
        assert tbat.log_activations(model, x, step=step, log_dir=tmp_path,
                                    background=step not in (3, 4))
    tbat.flush()
    assert steps_in_file_order(tmp_path) == list(range(6))


def test_a_call_waits_while_a_step_is_queued(tmp_path, monkeypatch):
    """Step 0 held by the writer thread, step 1 queued: the call for step 2 waits until the
    writer takes step 1 (one step queued at most)."""
    gate, real_write = threading.Event(), destinations.write_rendered

    def gated_write(*args, **kwargs):
        assert gate.wait(timeout=60)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(destinations, "write_rendered", gated_write)
    model, x = small_cnn(), probe()
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path)
    assert tbat.log_activations(model, x, step=1, log_dir=tmp_path)
    third = threading.Thread(target=tbat.log_activations,
                             args=(model, x), kwargs={"step": 2, "log_dir": tmp_path})
    third.start()
    third.join(timeout=2.0)
    assert third.is_alive()  # waiting for room in the queue
    gate.set()
    third.join(timeout=60)
    assert not third.is_alive()
    tbat.flush()
    assert steps_in_file_order(tmp_path) == [0, 1, 2]


def test_close_ends_the_writer_threads_and_a_later_call_starts_one(tmp_path):
    def writer_threads():
        return [thread for thread in threading.enumerate()
                if thread.name == "tb-activations-log-writer"]

    model, x = small_cnn(), probe()
    tbat.close()
    before = len(writer_threads())
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "a")
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "b")
    assert len(writer_threads()) == before + 2  # one per destination
    tbat.close()
    assert len(writer_threads()) == before
    assert tbat.log_activations(model, x, step=1, log_dir=tmp_path / "a")
    tbat.close()
    assert steps_in_file_order(tmp_path / "a") == [0, 1]


def test_the_background_flag_is_checked(tmp_path):
    with pytest.raises(TypeError, match="background must be True .* or False .*, got 'yes'"):
        tbat.log_activations(small_cnn(), probe(), step=0, log_dir=tmp_path / "x",
                             background="yes")
    assert not (tmp_path / "x").exists()


def stops_reported_by(flush, on_error):
    """The "stops logging" warnings of `flush()`, which must raise the full disk's
    EventFileError instead where `on_error` is "raise"."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if on_error == "raise":
            with pytest.raises(events.EventFileError, match="No space left on device"):
                flush()
        else:
            flush()
    return [w for w in caught if "stops logging activations" in str(w.message)]


@pytest.mark.parametrize("on_error", ["warn", "raise"])
def test_a_failure_in_the_background_is_reported_by_flush(tiny_disk, on_error):
    """The disk fills while the last step is written: flush reports it (a warning, or the
    EventFileError raised), and the run goes on being readable up to the step before."""
    model, x = small_cnn(), probe()
    log_dir = tiny_disk / "run"
    assert tbat.log_activations(model, x, step=0, log_dir=log_dir, on_error=on_error)
    tbat.flush()
    fill(tiny_disk, leaving=0)
    assert tbat.log_activations(model, x, step=1, log_dir=log_dir, on_error=on_error)
    assert len(stops_reported_by(tbat.flush, on_error)) == (on_error == "warn")
    assert tbat.log_activations(model, x, step=2, log_dir=log_dir, on_error=on_error) is (
        on_error == "raise")  # "warn" stopped logging there; "raise" tries again
    if on_error == "raise":  # step 2 failed too, which close reports
        with pytest.raises(events.EventFileError, match="an earlier write failed"):
            tbat.close()
    assert steps_in_file_order(log_dir) == [0]


_LOOP = r"""
import os, signal, sys
sys.path.insert(0, %(root)r)
import torch
import tb_activations.torch as tbat
from tests.test_torch_background import small_cnn, probe

model, x = small_cnn(), probe()
if %(summary_writer)r:
    from torch.utils.tensorboard import SummaryWriter
    destination = {"writer": SummaryWriter(%(log_dir)r)}
else:
    destination = {"log_dir": %(log_dir)r}
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(%(steps)d):
    loss = model(torch.randn(8, 3, 12, 12)).square().mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    assert tbat.log_activations(model, x, step=step, **destination)
    if step == %(kill_at)d:
        os.kill(os.getpid(), signal.SIGKILL)
"""


def run_loop(log_dir, steps, kill_at=-1, summary_writer=False):
    script = _LOOP % {"root": REPO, "log_dir": str(log_dir), "steps": steps,
                      "kill_at": kill_at, "summary_writer": summary_writer}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                          cwd=REPO)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_two_latest_steps(tmp_path):
    process = run_loop(tmp_path, steps=60, kill_at=30)
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    logged = steps_in_file_order(tmp_path)
    assert logged == list(range(len(logged))) and logged[-1] >= 28, logged


@pytest.mark.parametrize("summary_writer", [False, True])
def test_a_loop_that_ends_without_flush_has_every_step_written(tmp_path, summary_writer):
    process = run_loop(tmp_path, steps=5, summary_writer=summary_writer)
    assert process.returncode == 0, process.stderr.decode()[-2000:]
    assert steps_in_file_order(tmp_path) == list(range(5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_is_reduced_on_its_own_stream_to_the_cpu_values(tmp_path):
    from tb_activations.torch import streams

    model, x = small_cnn(), probe()
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "cpu", background=False)
    device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    training = torch.cuda.current_stream(device)
    assert tbat.log_activations(model, x.to(device), step=0, log_dir=tmp_path / "cuda")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    tbat.flush()
    assert torch.cuda.current_stream(device) == training  # the loop's stream is untouched
    assert streams.reduction_stream(device) != training
    expected, logged = values_at(tmp_path / "cpu", 0), values_at(tmp_path / "cuda", 0)
    assert sorted(logged) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(logged[key], value, atol=2 / 255)
