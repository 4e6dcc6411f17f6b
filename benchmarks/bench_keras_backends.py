"""Keras on JAX and on torch against Keras on TensorFlow: what tb-activations costs on each backend, for
the same model (the tests' small CNN at 28x28x1, MobileNetV2 at 224x224x3, a
4-image probe), as ratios to that backend's own compiled forward pass.

Each backend runs in a subprocess of its own (Keras fixes its backend at `import keras`):

  forward          the baseline: a warm compiled forward pass, output copied to numpy
                   (TensorFlow: tf.function of model(x, training=False); JAX: jax.jit of
                   model.stateless_call with the variable values passed in; torch: the
                   model called eagerly under torch.no_grad())
  first call       the first get_activations of a fresh model (trace/compile + one pass)
  get_activations  warm: every default layer as numpy
  capture          log.capture, what the callback's training thread waits for (on JAX
                   until the layer outputs are ready, as async dispatch would hide the pass)
  render           steps.render_capture of a fresh capture: the reduction, the copy
                   to numpy, tiling and PNG encoding (the callback's writer thread)
  total            log_activations(log_dir=): all of the above and the write, on the
                   calling thread (a custom training loop's logged step)

Methods are interleaved with forward passes and their ratio is taken against the forward
passes timed next to them, so slow drifts of a shared machine cancel out.

Usage:  python benchmarks/bench_keras_backends.py [--quick] [--probe N]
Results: a table on stdout and JSON in benchmarks/results/keras_backends.json.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")


def build(name):
    import keras

    from tests import models

    if name == "small_cnn":
        return models.small_cnn((28, 28, 1))
    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


def compiled_forward(model):
    """A warm compiled forward pass of the backend in use, returning numpy."""
    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda inputs: model(inputs, training=False))
        return lambda x: function(x).numpy()
    if keras.backend.backend() == "torch":
        import torch

        def eager(x):
            with torch.no_grad():
                return keras.ops.convert_to_numpy(model(x, training=False))

        return eager
    import jax

    function = jax.jit(lambda trainable, non_trainable, inputs: model.stateless_call(
        trainable, non_trainable, inputs, training=False)[0])

    def forward(x):
        return np.asarray(function([v.value for v in model.trainable_variables],
                                   [v.value for v in model.non_trainable_variables], x))

    return forward


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(forward, fn, repeats):
    """Ratio of fn's median to the median of the forward passes timed between its runs."""
    fn()
    method, base = [], []
    for _ in range(repeats):
        base.append(timed(forward))
        method.append(timed(fn))
    return {"median_ms": 1e3 * statistics.median(method),
            "forward_ms": 1e3 * statistics.median(base),
            "ratio": statistics.median(method) / statistics.median(base)}


def measure(model_name, repeats, probe):
    """This process's backend, one model, a probe of `probe` images."""
    import keras
    import numpy as np

    import tb_activations as tba
    from tb_activations.keras import capture as capture_lib
    from tb_activations.rendering import steps
    from tb_activations.keras import log

    keras.utils.set_random_seed(0)
    model = build(model_name)
    x = np.random.default_rng(0).normal(size=(probe,) + model.input_shape[1:]).astype("float32")
    forward_fn = compiled_forward(model)
    run = lambda: forward_fn(x)  # noqa: E731
    first = timed(lambda: tba.get_activations(model, x))
    arrays = capture_lib.prepare_probe(model, x)

    def capture():
        captured = log.capture(model, arrays)
        keras.tree.map_structure(
            lambda t: t.block_until_ready() if hasattr(t, "block_until_ready") else t,
            captured._layers)
        return captured

    captures = []
    result = {"first_call_ms": 1e3 * first,
              "get_activations": interleaved(run, lambda: tba.get_activations(model, x),
                                             repeats),
              "capture": interleaved(run, capture, repeats)}
    for _ in range(repeats + 1):
        captures.append(capture())
    result["render"] = interleaved(
        run, lambda: steps.render_capture(captures.pop()), repeats)
    log_dir = tempfile.mkdtemp(prefix="tba-bench-backends-")
    step = iter(range(10 ** 6))
    try:
        result["total"] = interleaved(
            run, lambda: log.log_activations(model, x, step=next(step), log_dir=log_dir),
            repeats)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small CNN only, few repeats")
    parser.add_argument("--probe", type=int, default=4, help="probe images (default 4)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = ["small_cnn"] if args.quick else ["small_cnn", "mobilenet_v2"]
    repeats = 5 if args.quick else 15
    if args.worker:
        json.dump({name: measure(name, repeats, args.probe) for name in models}, sys.stdout)
        return
    results = {}
    for backend in BACKENDS:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", backend]
            + ["--probe", str(args.probe)] + (["--quick"] if args.quick else []),
            env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                     PYTHONPATH=ROOT), capture_output=True, text=True, check=True)
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    print("probe of %d; load average %.2f %.2f %.2f" % ((args.probe,) + os.getloadavg()))
    print("%-14s %-11s %10s %12s %12s %12s %12s %12s" % (
        "model", "backend", "forward", "first call", "get_acts", "capture", "render", "total"))
    for name in models:
        for backend in BACKENDS:
            row = results[backend][name]
            print("%-14s %-11s %8.2fms %10.0fms %11.2fx %11.2fx %11.2fx %11.2fx" % (
                name, backend, row["capture"]["forward_ms"], row["first_call_ms"],
                row["get_activations"]["ratio"], row["capture"]["ratio"],
                row["render"]["ratio"], row["total"]["ratio"]))
    os.makedirs(os.path.join(ROOT, "benchmarks", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "benchmarks", "results", "keras_backends.json"), "w") as file:
        json.dump({"quick": args.quick, "probe": args.probe, "loadavg": os.getloadavg(),
                   "results": results}, file,
                  indent=1)


if __name__ == "__main__":
    main()
