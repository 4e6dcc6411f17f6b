"""Shared fixtures: quiet TensorFlow, bounded hypothesis runs, one real training run per session,
a tiny file system to fill."""

import contextlib
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# triton loaded after TensorFlow segfaults the process (torch 2.14.1 beside TensorFlow 2.21;
# see tb_activations.torch, which does the same for users): loaded here, before any test
# module loads TensorFlow.
with contextlib.suppress(ImportError):
    import triton  # noqa: E402,F401

import hypothesis  # noqa: E402
import pytest  # noqa: E402

# Property tests trace TensorFlow ops and encode PNGs: wall time per example varies too much
# for hypothesis' default deadline on a loaded two-core machine.
hypothesis.settings.register_profile(
    "tb_activations", deadline=None, max_examples=50,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile("tb_activations")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """small_cnn fitted for 2 epochs of 4 batches with ActivationsCallback(update_freq="epoch",
    save_model=True) and keras' TensorBoard callback sharing its log_dir (steps 0, 4, 8)."""
    from tests import models  # imports TensorFlow: only when a test needs the run

    return models.train_and_log(tmp_path_factory.mktemp("fit_epoch"), epochs=2,
                                update_freq="epoch", save_model=True)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo (tb_activations.demo) trained for real for 2 epochs: its MNIST CNN on the
    shipped digits, probe and reference set (the validation digits, labelled) logged by
    ActivationsCallback. The run's directory; its logdir is the parent."""
    from tb_activations import demo  # imports TensorFlow: only when a test needs the run

    run_dir, _ = demo.train_demo(str(tmp_path_factory.mktemp("demo")), epochs=2, probe_count=4)
    return run_dir


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB file system that a few dozen logged steps fill up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


_exit_status = []


def pytest_sessionfinish(session, exitstatus):
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without the interpreter's teardown, with pytest's own status.

    After every test has run and the summary is printed, TensorFlow's and gRPC's C++ threads
    (TensorBoard's data-server client, TensorFlow's pools) sometimes abort the process while
    Python finalizes ("terminate called after throwing an instance of ' ' / FATAL: exception
    not rethrown", exit 134), turning a green run red at random. Nothing is left to do then.
    """
    if _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])
