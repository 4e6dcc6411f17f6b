"""Live probe benchmark: request to response of `POST /live`, next to one forward pass.

For the seeds' MNIST CNN and MobileNetV2 (random weights, 224x224x3), each saved as a run's
model.keras with one logged step: the plugin is mounted in TensorBoard's own WSGI app over the
Python loader and driven with werkzeug's client, asking for gzip as a browser does.

  first request    model load (safe mode) + trace + answer, on a fresh plugin
  warm p50 / p95   a new random input per request, one layer drawn (`layer=`, what the tab
                   asks for: the largest grid of the model) and every layer summarised
  every layer      the same without `layer=`: every layer's grid and statistics (scripts)
  forward          a warm `tf.function(model)` on one sample, timed interleaved with the
                   requests (the ratio's 1x)
  answer bytes     the JSON as sent (gzip) and before compression

Usage:  python benchmarks/bench_live.py            (both models, ~2 min on 2 cores)
        python benchmarks/bench_live.py --quick    (MNIST CNN only, few requests)
Results: a table on stdout and JSON in benchmarks/results/live.json (live-quick.json).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.parse

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tensorboard import default  # noqa: E402
from tensorboard import program  # noqa: E402
from tensorboard.backend import application  # noqa: E402
from tensorboard.backend.event_processing import data_ingester  # noqa: E402
from tensorboard.plugins import base_plugin  # noqa: E402
from werkzeug import test as werkzeug_test  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tb_activations as tba  # noqa: E402
from tb_activations import demo, plugin  # noqa: E402
from tb_activations.format import model_file  # noqa: E402
from tb_activations.plugin import queries  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS_MS = {"mnist_cnn": 50.0, "mobilenet_v2": 500.0}


def mobilenet_v2():
    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


def write_run(root, name, model, sample_shape):
    run_dir = os.path.join(root, name)
    probe = np.random.default_rng(0).uniform(0, 1, (1,) + sample_shape).astype(np.float32)
    with tf.summary.create_file_writer(run_dir).as_default():
        tba.log_activations(model, probe, step=0)
    model_file.save_model(model, run_dir, {"step": 0})
    return probe


def client_for(root):
    board = program.TensorBoard(plugins=default.get_plugins())
    board.configure(argv=[None, "--logdir", root])
    ingester = data_ingester.LocalDataIngester(board.flags)
    ingester.start()
    context = base_plugin.TBContext(data_provider=ingester.data_provider, logdir=root,
                                    flags=board.flags,
                                    sampling_hints=board.flags.samples_per_plugin)
    client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    for _ in range(600):
        response = client.get("/data/plugin/activations/layers")
        if response.status_code == 200 and json.loads(response.get_data())["runs"]:
            return client
        time.sleep(0.1)
    raise RuntimeError("the loader listed no run")


def request(client, run, input_name, sample, layer=None, gzip=True):
    """(seconds, bytes sent, the response) of one live request."""
    headers = {queries.LIVE_HEADER: "1", "Content-Type": "application/json"}
    if gzip:
        headers["Accept-Encoding"] = "gzip"
    body = json.dumps({"inputs": {input_name: np.asarray(sample).tolist()}})
    route = "/data/plugin/activations/live?" + urllib.parse.urlencode(
        {"run": run} if layer is None else {"run": run, "layer": layer})
    started = time.perf_counter()
    response = client.post(route, data=body, headers=headers)
    data = response.get_data()
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError("live answered %d: %s" % (response.status_code, data[:300]))
    return elapsed, len(data), data


def bench_model(name, model, sample_shape, requests):
    root = tempfile.mkdtemp(prefix="bench-live-")
    write_run(root, name, model, sample_shape)
    client = client_for(root)
    info = json.loads(client.get("/data/plugin/activations/live_info?run=" + name).get_data())
    input_name = info["inputs"][0]["name"]
    rng = np.random.default_rng(1)
    first, _, _ = request(client, name, input_name, rng.uniform(0, 1, sample_shape))
    forward = tf.function(lambda x: model(x, training=False))
    one = rng.uniform(0, 1, (1,) + sample_shape).astype(np.float32)
    forward(one).numpy()
    _, _, data = request(client, name, input_name, one[0], gzip=False)
    layers = json.loads(data)["layers"]
    largest = max(layers, key=lambda entry: len(entry["grid"]))["layer"]
    warm, every, forwards = [], [], []
    for _ in range(requests):
        started = time.perf_counter()
        forward(one).numpy()
        forwards.append(time.perf_counter() - started)
        sample = rng.uniform(0, 1, sample_shape)
        elapsed, sent, _ = request(client, name, input_name, sample, layer=largest)
        warm.append(elapsed)
        every.append(request(client, name, input_name, sample)[0])
    _, raw, _ = request(client, name, input_name, one[0], layer=largest, gzip=False)
    _, every_sent, _ = request(client, name, input_name, one[0])
    p50 = statistics.median(warm)
    return {"model": name, "layers": len(layers), "drawn_layer": largest,
            "first_request_ms": 1000 * first, "warm_p50_ms": 1000 * p50,
            "warm_p95_ms": 1000 * float(np.percentile(warm, 95)),
            "every_layer_p50_ms": 1000 * statistics.median(every),
            "forward_ms": 1000 * statistics.median(forwards),
            "ratio_to_forward": p50 / statistics.median(forwards),
            "answer_gzip_bytes": sent, "answer_bytes": raw, "every_layer_gzip_bytes": every_sent,
            "target_ms": TARGETS_MS[name], "pass": 1000 * p50 < TARGETS_MS[name]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MNIST CNN only, few requests")
    args = parser.parse_args()
    cases = [("mnist_cnn", demo.mnist_cnn, (28, 28, 1), 10 if args.quick else 50)]
    if not args.quick:
        cases.append(("mobilenet_v2", mobilenet_v2, (224, 224, 3), 20))
    results = [bench_model(name, build(), shape, count) for name, build, shape, count in cases]
    table = Table(title="POST /live, request to response (Python loader, werkzeug client)")
    for column in ("model", "layers", "first request", "warm p50 / p95 (one layer drawn)",
                   "forward", "p50 / forward", "answer gzip / raw", "every layer drawn",
                   "target"):
        table.add_column(column)
    for r in results:
        table.add_row(r["model"], str(r["layers"]), "%.0f ms" % r["first_request_ms"],
                      "%.1f / %.1f ms" % (r["warm_p50_ms"], r["warm_p95_ms"]),
                      "%.1f ms" % r["forward_ms"], "%.1f×" % r["ratio_to_forward"],
                      "%.0f / %.0f KiB" % (r["answer_gzip_bytes"] / 1024,
                                           r["answer_bytes"] / 1024),
                      "%.0f ms, %.2f MiB gzip" % (r["every_layer_p50_ms"],
                                                  r["every_layer_gzip_bytes"] / 2**20),
                      "< %.0f ms: %s" % (r["target_ms"], "PASS" if r["pass"] else "FAIL"))
    Console(width=180).print(table)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "live-quick.json" if args.quick else "live.json"),
              "w") as handle:
        json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
