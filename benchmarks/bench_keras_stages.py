"""Where a Keras logged step's time goes: MobileNetV2 (weights=None, 224x224x3), one probe
image, TensorFlow backend, each stage in process CPU time and wall time, as a ratio to a
warm forward pass timed in the same rounds.

  forward     warm tf.function(model(x, training=False)), output copied out
  capture     keras.log.capture: what the callback's training thread waits for
  reduce      Capture.reduce() of that capture: the in-graph reduction and the copy out
  render      steps.render_capture of the reduced capture: tiles, PNGs, statistics, overview
  log_dir=    log_activations(log_dir=): a custom loop's whole logged step
  tf.summary  log_activations under a tf.summary file writer, then its flush()
  bg call     log_activations(log_dir=, background=True) with its run's thread idle: what a
              custom loop waits for (tba.flush() follows, untimed, before the next stage)

Each round runs every stage once, in this order, so drifts of a shared machine fall on all
of them alike; CPU time is the steadier figure there (both cores count). The load average
is printed with the figures.

Usage:  python benchmarks/bench_keras_stages.py [--repeats N] [--quick (2 rounds)]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tb_activations as tba  # noqa: E402
from benchmarks.timing import loadavg  # noqa: E402
from tb_activations.keras import capture as capture_lib  # noqa: E402
from tb_activations.keras import log as log_lib  # noqa: E402
from tb_activations.rendering import steps  # noqa: E402


def clocked(function):
    """(process CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    function()
    return time.process_time() - cpu, time.perf_counter() - wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10, help="rounds (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 rounds (CI: it still runs)")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 2
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    x = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    arrays = capture_lib.prepare_probe(model, x)
    forward_function = tf.function(lambda inputs: model(inputs, training=False))
    constant = tf.constant(x)
    directory = tempfile.mkdtemp(prefix="tba-bench-stages-")
    summary_writer = tf.summary.create_file_writer(os.path.join(directory, "tf_summary"))
    step = iter(range(10 ** 9))
    captures = []

    def log_dir():
        tba.log_activations(model, x, step=next(step), log_dir=os.path.join(directory, "own"))

    def tf_summary():
        with summary_writer.as_default():
            tba.log_activations(model, x, step=next(step))
        summary_writer.flush()

    stages = {
        "forward": lambda: forward_function(constant).numpy(),
        "capture": lambda: captures.append(log_lib.capture(model, arrays)),
        "reduce": lambda: captures[-1].reduce(),
        "render": lambda: steps.render_capture(captures.pop()),
        "log_dir=": log_dir,
        "tf.summary": tf_summary,
        "bg call": lambda: tba.log_activations(model, x, step=next(step), background=True,
                                               log_dir=os.path.join(directory, "background")),
    }
    for _ in range(2):  # traces, first writes
        for function in stages.values():
            function()
        tba.flush()
    times = {name: [] for name in stages}
    load_start = loadavg()
    for _ in range(args.repeats):
        for name, function in stages.items():
            times[name].append(clocked(function))
            tba.flush()
    forward_cpu = statistics.median(cpu for cpu, _ in times["forward"])
    forward_wall = statistics.median(wall for _, wall in times["forward"])
    print("MobileNetV2, probe 1, TensorFlow, %d rounds; load average %s -> %s"
          % (args.repeats, load_start, loadavg()))
    print("%-11s %9s %7s %10s %7s" % ("stage", "CPU ms", "x fwd", "wall ms", "x fwd"))
    for name, samples in times.items():
        cpu = statistics.median(value for value, _ in samples)
        wall = statistics.median(value for _, value in samples)
        print("%-11s %9.1f %6.2fx %10.1f %6.2fx" % (name, 1e3 * cpu, cpu / forward_cpu,
                                                   1e3 * wall, wall / forward_wall))


if __name__ == "__main__":
    main()
