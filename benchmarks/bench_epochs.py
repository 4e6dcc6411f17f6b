"""What epoch records cost the tab: /layers?run= and /steps of a run with epoch records
against the same run without them, on a real TensorBoard with each loader.

Two runs of one Dense layer logged at S steps by `log_activations`; run `epochs` also holds E
epoch records (as ActivationsCallback writes them), run `plain` none. For each loader a fresh
TensorBoard is started; the first /layers?run= of each run is timed (that of `epochs` reads
every record: one blob each), then /layers?run= and /steps of both runs are timed again,
interleaved, so machine load falls on both alike (medians; the ratio is the figure).

    .venv/bin/python benchmarks/bench_epochs.py            # 2,000 steps, 200 epochs
    .venv/bin/python benchmarks/bench_epochs.py --quick    # 200 steps, 20 epochs

Results: a table on stdout and JSON in benchmarks/results/epochs.json (epochs-quick.json).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from tests import browser_helpers as helpers  # noqa: E402

RUNS = ("plain", "epochs")
LAYER = "dense"


def write_logdir(logdir, steps, epochs):
    import keras
    import tensorflow as tf

    import tb_activations as tba
    from tb_activations.rendering import steps as steps_lib

    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name=LAYER)])
    probe = np.ones((2, 6), np.float32)
    per_epoch = steps // epochs
    for run in RUNS:
        with tf.summary.create_file_writer(os.path.join(logdir, run)).as_default():
            for step in range(1, steps + 1):
                tba.log_activations(model, probe, step=step)
                if run == "epochs" and step % per_epoch == 0:
                    ((tag, metadata, values),) = steps_lib.render_epoch_end(
                        step // per_epoch - 1)
                    tf.summary.write(tag, tf.constant(values), step=step, metadata=metadata)


def timed(url):
    """(seconds, bytes) of one GET."""
    started = time.perf_counter()
    with urllib.request.urlopen(url) as response:
        body = response.read()
    return time.perf_counter() - started, body


def routes(url, run):
    base = url + "/data/plugin/activations/"
    return {"layers": base + "layers?" + urllib.parse.urlencode({"run": run}),
            "steps": base + "steps?" + urllib.parse.urlencode({"run": run, "layer": LAYER})}


def measure(logdir, load_fast, steps, epochs, repeats):
    process, url = helpers.start_tensorboard(logdir, load_fast)
    try:
        # Loaded, seen through /runs only (a listing: it reads no epoch record).
        while {run["run"]: run["max_step"] for run in json.loads(timed(
                url + "/data/plugin/activations/runs")[1])["runs"]} != dict.fromkeys(RUNS, steps):
            time.sleep(0.3)
        time.sleep(2.5)  # two more reloads: the records written after the last step are in
        first = {run: timed(routes(url, run)["layers"])[0] for run in RUNS}
        samples = {(run, route): [] for run in RUNS for route in ("layers", "steps")}
        sizes = {}
        for _ in range(repeats):
            for run in RUNS:
                for route, address in routes(url, run).items():
                    seconds, body = timed(address)
                    samples[(run, route)].append(seconds)
                    sizes[(run, route)] = len(body)
        steps_answer = json.loads(timed(routes(url, "epochs")["steps"])[1])["steps"]
        assert len(steps_answer) == steps and steps_answer[-1]["epoch"] == epochs - 1
    finally:
        helpers.stop(process)
    return {"loader": "rust" if load_fast else "python", "steps": steps, "epochs": epochs,
            "first_layers_ms": {run: 1000 * first[run] for run in RUNS},
            "median_ms": {"%s %s" % key: 1000 * statistics.median(value)
                          for key, value in samples.items()},
            "bytes": {"%s %s" % key: value for key, value in sizes.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, epochs, repeats = (200, 20, 10) if args.quick else (2000, 200, 40)
    console = Console()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-epochs-") as logdir:
        write_logdir(logdir, steps, epochs)
        for load_fast in (True, False):
            results.append(measure(logdir, load_fast, steps, epochs, repeats))
    table = Table(title="%d steps, %d epoch records; load %.1f" % (steps, epochs,
                                                                    os.getloadavg()[0]))
    for column in ("loader", "route", "first: plain / epochs ms", "median: plain / epochs ms",
                   "ratio", "bytes: plain / epochs"):
        table.add_column(column)
    for r in results:
        for route in ("layers", "steps"):
            plain, timed_epochs = (r["median_ms"]["%s %s" % (run, route)] for run in RUNS)
            table.add_row(r["loader"], route,
                          "%.0f / %.0f" % tuple(r["first_layers_ms"][run] for run in RUNS)
                          if route == "layers" else "",
                          "%.1f / %.1f" % (plain, timed_epochs), "%.2f" % (timed_epochs / plain),
                          "%d / %d" % tuple(r["bytes"]["%s %s" % (run, route)] for run in RUNS))
    console.print(table)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "epochs-quick.json" if args.quick else "epochs.json"
    with open(os.path.join(HERE, "results", name), "w") as handle:
        json.dump({"load": os.getloadavg(), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
