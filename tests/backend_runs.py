"""Running a test worker module in a subprocess on another Keras backend (fixed at `import
keras`, hence a process of its own), shared by the backend test suites."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_worker(module, backend, folder, timeout=900):
    """Runs `python -m module folder` with KERAS_BACKEND=backend; its result.json."""
    environment = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", module, str(folder)], env=environment,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(os.path.join(folder, "result.json")) as file:
        return json.load(file)
