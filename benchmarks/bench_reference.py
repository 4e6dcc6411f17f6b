"""Reference-set benchmark: what one reference pass costs next to the model's own inference over
the same inputs, and what it stores.

  predict            the baseline: Keras `model.predict(x, batch_size=B)` (TensorFlow
                     backend), or for torch `model(x_batch)` per batch in eval mode under
                     torch.no_grad()
  bare forward       for information (Keras): a warm `tf.function` of `model(x_batch)` per
                     batch, without predict's own overhead (torch: the same as predict)
  reference pass     `keras.reference.reference_step` / `torch.reference.reference_step` over
                     the same inputs and batch size, labels given (10 classes): the forward
                     pass, the on-device reductions, the host-side top-k and class sums, and
                     every layer's blob encoded (what log_reference does before writing)

Models: the seeds' MNIST CNN (benchmarks/bench_writer.mnist_cnn, 28x28x1) and MobileNetV2 at
128x128x3 (`weights=None`), Keras; the same MNIST CNN in torch and torchvision's MobileNetV2 at
128x128 (`weights=None`).
Bytes: per layer per reference step (largest and total over the layers), and the reference
inputs' thumbnails and labels, stored once per run.

Every timed pass is interleaved with baseline passes, and its ratio is taken against the
baseline passes timed next to it, so slow drifts of a shared machine cancel out.

Usage:  python benchmarks/bench_reference.py            (1024 inputs, 3 models, ~5 min on 2 cores)
        python benchmarks/bench_reference.py --quick    (MNIST CNN, 256 inputs, ~1 min)
Results: a table on stdout and JSON in benchmarks/results/reference.json
(reference-quick.json with --quick).
"""

import argparse
import datetime
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: loads triton before TensorFlow, the order that does not crash (tb_activations.torch).
import tb_activations.torch  # noqa: E402,F401
import numpy as np  # noqa: E402
import keras  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.bench_writer import mnist_cnn  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    HERE, git_commit, interleaved, loadavg, now, save_results, stat, timed)
from tb_activations.format import metadata  # noqa: E402
from tb_activations.keras import reference as keras_reference  # noqa: E402
from tb_activations.rendering import steps as steps_lib  # noqa: E402

console = Console(width=150)
TARGET_RATIO = 1.3
TARGET_LAYER_BYTES = 64 << 10
BATCH = 64


def keras_mobilenet():
    return keras.applications.MobileNetV2(weights=None, input_shape=(128, 128, 3))


def keras_case(build, shape):
    import tensorflow as tf

    model = build()
    forward = tf.function(lambda batch: model(batch, training=False), autograph=False)

    def baseline(x, y):
        start = now()
        model.predict(x, batch_size=BATCH, verbose=0)
        return now() - start

    def bare(x, y):
        start = now()
        for first in range(0, len(x), BATCH):
            forward(x[first:first + BATCH]).numpy()
        return now() - start

    def reference(x, y, with_inputs=False):
        return keras_reference.reference_step(model, (x, y), options=steps_lib.render_options(),
                                              batch_size=BATCH, with_inputs=with_inputs)
    return shape, baseline, bare, reference


def torch_mnist_cnn():
    """bench_writer.mnist_cnn's layers in torch."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128),
                         nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=1))


def torch_mobilenet():
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None)


def torch_case(build, shape):
    import torch

    from tb_activations.torch import reference as torch_reference

    model = build().eval()

    def baseline(x, y):
        start = now()
        with torch.no_grad():
            for first in range(0, len(x), BATCH):
                model(torch.from_numpy(x[first:first + BATCH]))
        return now() - start

    def reference(x, y, with_inputs=False):
        return torch_reference.reference_step(model, x, y, batch_size=BATCH,
                                              with_inputs=with_inputs)
    return shape, baseline, baseline, reference


CASES = {
    "keras_mnist_cnn": lambda: keras_case(mnist_cnn, (28, 28, 1)),
    "keras_mobilenet_v2_128": lambda: keras_case(keras_mobilenet, (128, 128, 3)),
    "torch_mnist_cnn": lambda: torch_case(torch_mnist_cnn, (1, 28, 28)),
    "torch_mobilenet_v2_128": lambda: torch_case(torch_mobilenet, (3, 128, 128)),
}


def cpu_timed(fn, sink):
    """fn()'s result, its process CPU seconds appended to `sink`."""
    start = time.process_time()
    result = fn()
    sink.append(time.process_time() - start)
    return result


def stored_bytes(rendered):
    """({layer: bytes of its reference step}, bytes of the reference inputs tag or 0)."""
    layers, inputs = {}, 0
    for tag, _, values in rendered:
        size = sum(len(value) for value in values)
        if tag == metadata.REFERENCE_INPUTS_TAG:
            inputs = size
        else:
            layers[tag[len(metadata.REFERENCE_TAG_PREFIX):]] = size
    return layers, inputs


def bench_case(name, inputs, repeats):
    shape, baseline, bare, reference = CASES[name]()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(inputs,) + shape).astype(np.float32)
    y = rng.integers(0, 10, inputs)
    first = timed(lambda: reference(x, y, with_inputs=True))  # traces
    layers, thumbnails = stored_bytes(reference(x, y, with_inputs=True))
    cpu = {"baseline": [], "reference": []}
    method, base = interleaved(lambda: cpu_timed(lambda: baseline(x, y), cpu["baseline"]),
                               lambda: cpu_timed(lambda: reference(x, y), cpu["reference"]),
                               repeats)
    result = stat(method, base, "reference pass over %d inputs vs the model's inference" % inputs)
    # Process CPU time (every thread's), less swayed than wall time by other processes.
    result["cpu"] = stat(cpu["reference"][1:], cpu["baseline"], "process CPU time")
    bare_method, bare_base = interleaved(lambda: bare(x, y), lambda: reference(x, y), repeats)
    result["bare_forward"] = stat(bare_method, bare_base, "vs a warm traced forward per batch")
    result.update(first_call_s=first, layers=len(layers), largest_layer_bytes=max(layers.values()),
                  step_bytes=sum(layers.values()), inputs_bytes=thumbnails)
    console.log("%s: ratio %.2f (CPU time %.2f; %.2f to a bare forward), largest layer %d B, "
                "step %d B, inputs %d B, load %s"
                % (name, result["ratio"], result["cpu"]["ratio"], result["bare_forward"]["ratio"],
                   result["largest_layer_bytes"], result["step_bytes"],
                   thumbnails, loadavg()))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MNIST CNN, 256 inputs")
    parser.add_argument("--cases", default=None, help="comma-separated subset of %s"
                        % ",".join(CASES))
    parser.add_argument("--inputs", type=int, default=None, help="reference set size")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per case")
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args()
    names = (["keras_mnist_cnn"] if args.quick else list(CASES)) if args.cases is None \
        else args.cases.split(",")
    inputs = args.inputs or (256 if args.quick else 1024)
    repeats = args.repeats or (3 if args.quick else 5)
    output = args.output or os.path.join(HERE, "results", "reference-quick.json" if args.quick
                                         else "reference.json")
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "python": platform.python_version(),
            "keras": keras.__version__, "backend": keras.backend.backend(),
            "cpus": os.cpu_count(), "loadavg_start": loadavg(), "argv": sys.argv[1:],
            "inputs": inputs, "batch_size": BATCH, "repeats": repeats}
    started = now()
    results = {name: bench_case(name, inputs, repeats) for name in names}
    meta["seconds"] = now() - started
    meta["loadavg_end"] = loadavg()
    table = Table(title="Reference pass over %d inputs, batch %d (median; ratio to the model's "
                  "own inference timed next to it)" % (inputs, BATCH))
    for column in ("case", "inference s", "reference s", "ratio", "target <= %.1fx" % TARGET_RATIO,
                   "CPU time ratio",
                   "ratio to a bare forward",
                   "layers", "largest layer", "step (all layers)", "inputs once"):
        table.add_column(column)
    for name, result in results.items():
        table.add_row(name, "%.3f" % result["forward_median_s"], "%.3f" % result["median_s"],
                      "%.2fx" % result["ratio"],
                      "ok" if result["ratio"] <= TARGET_RATIO else "MISSED",
                      "%.2fx" % result["cpu"]["ratio"],
                      "%.2fx" % result["bare_forward"]["ratio"],
                      str(result["layers"]),
                      "%.1f KiB%s" % (result["largest_layer_bytes"] / 1024, "" if result[
                          "largest_layer_bytes"] <= TARGET_LAYER_BYTES else " (over 64 KiB)"),
                      "%.1f KiB" % (result["step_bytes"] / 1024),
                      "%.1f KiB" % (result["inputs_bytes"] / 1024))
    console.print(table)
    save_results(console, output, {"meta": meta, "cases": results}, meta["seconds"],
                 meta["loadavg_start"], meta["loadavg_end"])


if __name__ == "__main__":
    main()
