"""What `tba.export` costs: 50 layers x 100 steps x 2 probe samples, every format.

The logdir is written in the real format by `log_activations` (a 50-layer CNN whose weights
change a little every step), once with 25 steps and once with 100. Each export runs in a
fresh process, twice: once timed, once under tracemalloc (Python and numpy allocations),
each reporting its peak resident set size too. Memory must not grow with the steps.

    .venv/bin/python benchmarks/bench_export.py            # 50 layers, 25 and 100 steps
    .venv/bin/python benchmarks/bench_export.py --quick    # 10 layers, 5 and 20 steps

Results: a table on stdout and JSON in benchmarks/results/export.json (export-quick.json).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = 2


def write_logdir(logdir, layers, steps):
    """A run of `layers` drawn layers (convolutions, then pooling and a dense head) logged at
    `steps` steps for a probe of SAMPLES images."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    import tb_activations as tba

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16, 16, 1))]
        + [keras.layers.Conv2D(8, 3, padding="same", activation="tanh", name="conv%d" % i)
           for i in range(layers - 2)]
        + [keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(10, name="head")])
    probe = np.random.default_rng(0).normal(size=(SAMPLES, 16, 16, 1)).astype("float32")
    with tf.summary.create_file_writer(logdir).as_default():
        for step in range(steps):
            tba.log_activations(model, probe, step=step)
            for weight in model.trainable_weights:
                weight.assign(weight * 1.01)


def export_once(logdir, out, traced):
    """Runs one export in this process; its figures as JSON on stdout."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from tb_activations.exporting import run_export
    from tb_activations.reading import reader

    reader.run_directories(logdir)  # imports TensorBoard's loader (and TensorFlow) first
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    result = run_export.export(logdir, out, progress=False)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else None
    print(json.dumps({"seconds": seconds, "files": result.files, "traced_peak": peak,
                      "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "bytes_written": sum(os.path.getsize(os.path.join(folder, name))
                                           for folder, _, names in os.walk(out)
                                           for name in names)}))


def measure(logdir, traced):
    with tempfile.TemporaryDirectory() as out:
        answer = subprocess.run([sys.executable, __file__, "--export-once", logdir, out]
                                + (["--traced"] if traced else []),
                                capture_output=True, text=True)
    if answer.returncode:
        raise RuntimeError("the export failed:\n" + answer.stderr[-3000:])
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 layers, 5 and 20 steps")
    parser.add_argument("--export-once", nargs=2, metavar=("LOGDIR", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_once:
        export_once(*args.export_once, args.traced)
        return
    layers, step_counts = (10, (5, 20)) if args.quick else (50, (25, 100))
    results = []
    with tempfile.TemporaryDirectory() as root:
        for steps in step_counts:
            logdir = os.path.join(root, "steps%d" % steps)
            write_logdir(os.path.join(logdir, "run"), layers, steps)
            timed, traced = measure(logdir, False), measure(logdir, True)
            results.append({"layers": layers, "steps": steps, "samples": SAMPLES,
                            "seconds": timed["seconds"], "files": timed["files"],
                            "bytes_written": timed["bytes_written"],
                            "ms_per_layer_step": 1000 * timed["seconds"] / (layers * steps),
                            "traced_peak_mib": traced["traced_peak"] / 2**20,
                            "rss_peak_mib": timed["rss_peak"] / 2**20})
    print("%6s %6s %9s %8s %12s %14s %14s" % (
        "layers", "steps", "seconds", "files", "MiB written", "traced peak", "RSS peak"))
    for r in results:
        print("%6d %6d %9.1f %8d %12.1f %10.1f MiB %10.1f MiB" % (
            r["layers"], r["steps"], r["seconds"], r["files"], r["bytes_written"] / 2**20,
            r["traced_peak_mib"], r["rss_peak_mib"]))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "export-quick.json" if args.quick else "export.json"
    with open(os.path.join(HERE, "results", name), "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
