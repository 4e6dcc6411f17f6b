"""Running a test worker module in a subprocess on another Keras backend (fixed at `import
keras`, hence a process of its own), shared by the backend test suites."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_worker(module, backend, folder, timeout=900):
    """Runs `python -m module folder` with KERAS_BACKEND=backend; its result.json."""
    environment = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", module, str(folder)], env=environment,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(os.path.join(folder, "result.json")) as file:
        return json.load(file)


@contextlib.contextmanager
def started_workers(module, backends, make_folder, timeout=900):
    """Starts `python -m module folder` on each backend at once, so they overlap the tests of
    this process (`make_folder(backend)`: its folder); yields wait(backend) -> (folder,
    result.json); kills the ones still running on exit."""
    runs = {}
    for backend in backends:
        folder = make_folder(backend)
        environment = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
        runs[backend] = folder, subprocess.Popen(
            [sys.executable, "-m", module, str(folder)], env=environment, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(backend):
        folder, process = runs[backend]
        _, errors = process.communicate(timeout=timeout)
        assert process.returncode == 0, errors[-4000:]
        with open(os.path.join(folder, "result.json")) as file:
            return folder, json.load(file)

    try:
        yield wait
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()


def other_backends_fixture(module, folder_prefix):
    """A module-scoped fixture, used by every test of the module (so the subprocesses start
    before its first test): started_workers of `module` on JAX and torch, folders named
    `folder_prefix` + backend; tests take its wait(backend) by the fixture's name."""
    @pytest.fixture(scope="module", autouse=True)
    def other_backends(tmp_path_factory):
        with started_workers(module, ("jax", "torch"),
                             lambda backend: tmp_path_factory.mktemp(folder_prefix + backend)
                             ) as wait:
            yield wait
    return other_backends

