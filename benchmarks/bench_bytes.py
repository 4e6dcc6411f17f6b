"""Bytes one logged step stores: a wide Dense(100000) with 64 probe samples, and the demo's
MNIST CNN with its 6-digit probe (docs/format.md states the bound per layer).

Usage:  PYTHONPATH=. python benchmarks/bench_bytes.py
Run it with another checkout first on PYTHONPATH to compare formats (it uses only the public
`log_activations`). Results: a table on stdout and JSON in benchmarks/results/bytes.json.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tensorboard.backend.event_processing import event_file_loader  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

import tb_activations as tba  # noqa: E402
from tb_activations import demo  # noqa: E402

MIB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


def wide_dense():
    inputs = keras.Input((8,), name="features")
    outputs = keras.layers.Dense(100_000, activation="relu", name="wide")(inputs)
    return keras.Model(inputs, outputs, name="wide_dense")


def step_bytes(model, probe):
    """{"event file": growth per step, layer tag: (PNG bytes, statistics bytes)} of the second
    of two logged steps (the first also stores the probe input)."""
    directory = tempfile.mkdtemp(prefix="tba-bytes-")
    writer = tf.summary.create_file_writer(directory)
    sizes = []
    with writer.as_default():
        for step in (0, 1):
            assert tba.log_activations(model, probe, step=step)
            writer.flush()
            sizes.append(sum(os.path.getsize(os.path.join(directory, name))
                             for name in os.listdir(directory)))
    writer.close()
    layers = {}
    for name in os.listdir(directory):
        for event in event_file_loader.EventFileLoader(os.path.join(directory, name)).Load():
            for value in event.summary.value:
                if event.step == 1 and value.tag.startswith("activations/"):
                    blobs = tensor_util.make_ndarray(value.tensor).tolist()
                    layers[value.tag] = (sum(len(b) for b in blobs[:-1]), len(blobs[-1]))
    return {"event_file": sizes[1] - sizes[0], "layers": layers}


def main():
    console = Console(width=150)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = demo.load_digits_28()
    cases = {
        "Dense(100000), 64 samples": (wide_dense(), rng.normal(size=(64, 8)).astype("float32")),
        "demo MNIST CNN, 6 samples": (demo.mnist_cnn(), demo.probe_digits(images, labels, 6)),
    }
    results = {name: step_bytes(model, probe) for name, (model, probe) in cases.items()}
    table = Table(title="bytes per logged step (tb_activations from %s)"
                  % os.path.dirname(os.path.dirname(tba.__file__)))
    for column in ("model", "layer", "grids (PNG)", "statistics", "event file growth"):
        table.add_column(column, justify="left" if column in ("model", "layer") else "right")
    for name, result in results.items():
        for tag, (png, statistics) in sorted(result["layers"].items()):
            table.add_row(name, tag, "%.3f MiB" % (png / MIB), "%.3f MiB" % (statistics / MIB),
                          "")
        table.add_row(name, "whole step", "", "", "%.3f MiB" % (result["event_file"] / MIB),
                      end_section=True)
    console.print(table)
    console.print("load average %s" % (os.getloadavg(),))
    output = os.path.join(HERE, "results", "bytes.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as handle:
        json.dump({"argv": sys.argv[1:], "tb_activations": tba.__file__, "results": results},
                  handle, indent=1)


if __name__ == "__main__":
    main()
