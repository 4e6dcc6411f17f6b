"""Real parts for the browser tests: a trained logdir, a TensorBoard process, a Chromium page.

Also runnable by hand to get a logdir and a TensorBoard to look at:
`python tests/browser_helpers.py runs/demo` trains the same runs the tests use.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HOSTILE_RUN = "<img src=x onerror=alert(1)>\"'é"
HOSTILE_LAYER = "conv>1.a-b"
# exp1's classes: which corner its blob is in (see _data); exp1 saves its model for the live view.
CLASS_NAMES = ["top left", "top right", "bottom"]
# Run `dying`: its layer DYING_LAYER dies (every channel all zero in every probe sample) from
# step DYING_FROM on; its other layers live.
DYING_RUN = "dying"
DYING_LAYER = "doomed"
DYING_FROM = 6
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _cnn(keras, hostile):
    """A small CNN with a nested backbone, so the layer list has a tree to show."""
    backbone = keras.Sequential([
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="block_1_conv"),
        keras.layers.MaxPooling2D(name="block_1_pool"),
        keras.layers.Conv2D(8, 3, padding="same", name="block_2_conv"),
        keras.layers.ReLU(name="block_2_relu"),
    ], name="backbone")
    first = HOSTILE_LAYER if hostile else "stem"
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name=first),
        backbone,
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(12, activation="relu", name="hidden"),
        keras.layers.Dense(3, activation="softmax", name="classes"),
    ])


def _data(np, count=64):
    """Blobs in three corners: learnable in a few epochs, so activations change visibly."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, count)
    x = rng.normal(0, 0.2, (count, 16, 16, 1)).astype("float32")
    corners = [(2, 2), (2, 10), (10, 6)]
    for i, label in enumerate(labels):
        top, left = corners[label]
        x[i, top:top + 5, left:left + 5, 0] += 1.5
    return x, labels


def _vector_run(logdir, keras, np, tba):
    """Run `vectors`: a model on plain vectors (so no probe picture) whose `broken` layer puts
    NaN and Inf into two units, written with log_activations as a custom loop would, with
    statistics kept for 8 units a layer."""
    import tensorflow as tf

    class Broken(keras.layers.Layer):
        def call(self, x):
            units = keras.ops.arange(x.shape[-1])
            x = keras.ops.where(units == 3, float("nan"), x)
            return keras.ops.where(units == 5, float("inf"), x)

    model = keras.Sequential([keras.Input((20,)),
                              keras.layers.Dense(30, activation="relu", name="wide"),
                              Broken(name="broken"), keras.layers.Dense(4, name="logits")])
    inputs = np.random.default_rng(3).normal(size=(3, 20)).astype("float32")
    writer = tf.summary.create_file_writer(os.path.join(logdir, "vectors"))
    with writer.as_default():
        for step in range(3):
            tba.log_activations(model, inputs, step=step, max_channels=8)
            for weight in model.trainable_weights:
                weight.assign(weight * 1.5)
    writer.close()


def _dying_run(logdir, keras, x, y, tba, epochs):
    """Run `dying`: a ReLU conv whose bias a callback sets far below zero at the end of the
    first epoch (after step 4 is logged, 4 batches of 16 per epoch, logged every 2): from
    step 6 on its output is zero everywhere, and no gradient reaches it to bring it back."""

    class KillAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                bias = self.model.get_layer(DYING_LAYER).bias
                bias.assign(keras.ops.full(bias.shape, -100.0))

    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="stem"),
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", name=DYING_LAYER),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(3, activation="softmax", name="classes"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    callback = tba.ActivationsCallback(os.path.join(logdir, DYING_RUN), probe=x[:4], update_freq=2)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0,
              callbacks=[callback, KillAfterFirstEpoch()])


def train_runs(logdir, epochs=3):
    """Runs `exp1` (with its saved model and class names), one with a hostile name and a
    hostile layer name, `dying` (a layer dies during training) and `vectors`."""
    import keras
    import numpy as np
    import tb_activations as tba

    keras.utils.set_random_seed(1)
    x, y = _data(np)
    for run, hostile in (("exp1", False), (HOSTILE_RUN, True)):
        model = _cnn(keras, hostile)
        model.compile(optimizer=keras.optimizers.Adam(0.02),
                      loss="sparse_categorical_crossentropy")
        live = {} if hostile else {"save_model": True, "class_names": CLASS_NAMES}
        callback = tba.ActivationsCallback(os.path.join(logdir, run), probe=x[:4],
                                           update_freq=2, **live)
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[callback])
    _dying_run(logdir, keras, x, y, tba, epochs)
    _vector_run(logdir, keras, np, tba)


def sweep_run(index):
    """The name of the index-th run of a crafted sweep (a learning rate, a batch size and a
    seed, as a hyperparameter search names its runs)."""
    return "lr%.0e-bs%d-seed%03d" % (10.0 ** -(1 + index % 4), 16 << (index // 4 % 3), index)


def write_sweep(logdir, runs, layers, steps=3, samples=2, unreadable=()):
    """A hyperparameter sweep in the real stored format, fast (no model is trained): `runs`
    runs of `layers` small layers (8x8x4 ReLU-like maps) with their probe and overview, every
    value written by `destinations.write_rendered` to our own event file writer. Runs whose index
    is in `unreadable` also hold two tags of a future format version, which the tab must
    report without failing."""
    import json
    import types

    import numpy as np
    from tensorboard.compat.proto import summary_pb2

    import tensorflow as tf

    from tb_activations.writing import events
    from tb_activations.format import layout
    from tb_activations.format import metadata
    from tb_activations.rendering import overview
    from tb_activations.rendering import grid_images
    from tb_activations.rendering import steps as steps_lib
    from tb_activations.writing import destinations
    from tb_activations.tensorflow import reduction

    rng = np.random.default_rng(7)
    options = layout.RenderOptions()
    plan = layout.plan_layout((8, 8, 4), options)

    def rendered():
        maps = np.maximum(rng.normal(size=(samples, 8, 8, 4)), 0).astype(np.float32)
        reduced = reduction.reduce_layer_output(tf.constant(maps), plan, options)
        return grid_images.render_layer({key: value.numpy() for key, value in reduced.items()},
                                      plan)

    variants = [rendered() for _ in range(steps)]
    per_step = [[] for _ in range(steps)]
    for index in range(layers):
        record = types.SimpleNamespace(layout=plan, path="block%02d/conv%03d" % (index // 3, index),
                                       layer_class="Conv2D", order=index)
        summary_metadata = metadata.create_summary_metadata(
            steps_lib.layer_content(record, samples, options))
        for step in range(steps):
            per_step[step].append((metadata.layer_tag(record.path), summary_metadata,
                                   variants[(index + step) % steps]))
    quiet = {"layer": np.zeros((samples, 7)), "silent": np.zeros((samples, 1), np.uint8),
             "ranges": np.zeros((samples, 4, 2))}
    summaries = {"block%02d/conv%03d" % (index // 3, index): overview.layer_summary(quiet)
                 for index in range(layers)}
    overview_entry = (metadata.OVERVIEW_TAG, metadata.create_summary_metadata(
        {"kind": metadata.KIND_OVERVIEW}), [overview.encode_overview(summaries)])
    probe = steps_lib.render_probe(
        rng.uniform(0, 1, (samples, 8, 8, 1)).astype(np.float32), ["input_layer"])
    future = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME,
            content=json.dumps({"version": 99, "kind": "layer", "layer": "x"}).encode()),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
    for run in range(runs):
        with events.EventFileWriter(os.path.join(str(logdir), sweep_run(run))) as writer:
            for step in range(steps):
                extra = [(metadata.layer_tag(name), future, [b"?"]) for name in
                         ("from_the_future", "also_new")] if run in unreadable else []
                first = probe + extra if step == 0 else []
                assert destinations.write_rendered(first + per_step[step] + [overview_entry],
                                              10 * step, writer)


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_tensorboard(logdir, load_fast, port=None, timeout=60, command=None, env=None):
    """A running TensorBoard on 127.0.0.1 whose Activations data is loaded: (process, url).
    `command`: what starts TensorBoard, before its flags (default: the venv's `tensorboard`);
    `env`: its environment (default: ours)."""
    port = port or free_port()
    command = command or [os.path.join(os.path.dirname(sys.executable), "tensorboard")]
    process = subprocess.Popen(
        [*command, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast=%s" % ("true" if load_fast else "false"), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("tensorboard exited: %s" % process.stderr.read().decode())
        try:
            with urllib.request.urlopen(url + "/data/plugin/activations/runs", timeout=2) as r:
                if b'"run":' in r.read():
                    return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    stop(process)
    raise RuntimeError("tensorboard did not serve activations within %ds" % timeout)


def wait_loaded(url, logdir, timeout=60):
    """Waits until TensorBoard serves every layer of every run of `logdir` up to its last
    logged step: its loaders read event files in the background, and a page opened before
    they finish sees the steps grow (and, at the last step, follows them)."""
    from tb_activations.reading import reader

    logged = {}
    for name, directory in reader.run_directories(logdir):
        for value in reader.read_run(directory, name):
            if isinstance(value, reader.LayerStep):
                layers = logged.setdefault(name, {})
                layers[value.content["layer"]] = max(layers.get(value.content["layer"], -1),
                                                     value.step)
    deadline = time.monotonic() + timeout
    while True:
        served = {name: _served_max_steps(url, name) for name in logged}
        if served == logged:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("TensorBoard still serves %s after %ds; the logdir holds %s"
                               % (served, timeout, logged))
        time.sleep(0.3)


def _served_max_steps(url, run):
    """{layer path: max step} of `run` as /layers lists it ({} while it is not listed)."""
    layers = {}
    while True:
        query = urllib.parse.urlencode({"run": run, "offset": len(layers)})
        try:
            with urllib.request.urlopen("%s/data/plugin/activations/layers?%s" % (url, query),
                                        timeout=5) as answer:
                entry = json.load(answer)["runs"][0]
        except urllib.error.HTTPError:
            return {}
        layers.update((layer["layer"], layer["max_step"]) for layer in entry["layers"])
        if not entry["more"] or not entry["layers"]:
            return layers


def serve(request, logdir):
    """For a pytest fixture parametrised by load_fast: a TensorBoard over `logdir`, stopped
    when the fixture ends; {url, load_fast, name}."""
    process, url = start_tensorboard(logdir, load_fast=request.param)
    request.addfinalizer(lambda: stop(process))
    return {"url": url, "load_fast": request.param,
            "name": "rust_loader" if request.param else "python_loader"}


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def chromium_page(width=1366, height=900):
    """(page, errors): a page of Debian's Chromium, headless, closed after. `errors` collects
    the page's uncaught errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            browser.close()


@contextlib.contextmanager
def served_page(logdir, width=1366, height=900):
    """(page, url, errors): a Chromium page (chromium_page) beside a TensorBoard serving
    `logdir` with every logged step loaded (the Python loader); both stopped after."""
    process, url = start_tensorboard(logdir, load_fast=False)
    try:
        wait_loaded(url, logdir)
        with chromium_page(width, height) as (page, errors):
            yield page, url, errors
    finally:
        stop(process)


def open_layer(page, url, run, layer, **state):
    """The tab's frame showing `layer` of `run` (more URL state, e.g. sample=1, as keywords)."""
    query = "".join("&p.activations.%s=%s" % (key, urllib.parse.quote(str(value), safe=""))
                    for key, value in dict(run=run, layer=layer, **state).items())
    page.goto(url + "/#activations" + query)
    frame = activations_frame(page)
    frame.wait_for_function("path => document.querySelector('.layer-path')?.title === path",
                            arg=layer)
    return frame


def activations_frame(page, timeout=30):
    """The tab's iframe, once its app has drawn a grid, the overview, or a message other
    than "Loading activation runs…" (class info), which a page under load can still show."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for frame in page.frames:
            if "/data/plugin_entry.html" in frame.url and frame.query_selector(
                    ".grid-canvas, .grid-message:not([hidden]):not(.info), .overview-open"):
                return frame
        page.wait_for_timeout(100)  # lets Playwright process events, unlike time.sleep
    raise AssertionError("the Activations iframe never drew anything")


# Distinct colours and a fingerprint of a canvas's pixels, read in the page.
CANVAS_PIXELS = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  let hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    const colour = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2] | (data[i + 3] ? 0 : 1 << 24);
    colours.add(colour);
    hash = (hash * 31 + colour) >>> 0;
  }
  return {colours: colours.size, hash, width: canvas.width, height: canvas.height};
}"""


if __name__ == "__main__":
    train_runs(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
