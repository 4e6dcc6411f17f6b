"""Writer benchmark: what logging every layer's activations costs, next to one forward pass.

For three models (the seeds' MNIST CNN, the 150x150 cats-vs-dogs CNN, MobileNetV2 with
random weights) and a 1-image probe (plus a 4-image probe for the tb-activations rows):

  forward          warm `tf.function(lambda x: model(x, training=False))` (the baseline;
                   `predict_on_batch` is shown too, for information)
  get_activations  every default layer as numpy (first call traces: shown apart)
  capture          `log_lib.capture`: the part of a logged step the callback blocks the
                   training thread for (the forward pass, layer outputs kept as tensors)
  render, write    `steps.render_capture` of a fresh capture (in-graph reduction,
                   copy to numpy, tiling, encoding); `destinations.write_rendered` to our own
                   event file writer, as the callback writes (handed to the OS, no buffer),
                   and to the default tf.summary writer + its flush, as log_activations
  log_activations  the whole public call, under a default file writer
  tf-explain       `ActivationsVisualizationCallback.on_epoch_end`, one callback per layer
                   (it raises with several layers, and draws only rank-4 outputs)
  per-layer model  the seeds' way: `keras.Model(model.inputs, layer.output).predict(x)`,
                   a new sub-model per layer each time

plus bytes added to the event file by one logged step, and the overhead of
`ActivationsCallback` on `fit` of an MNIST-size CNN, logging every epoch and every batch.

Every timed method is interleaved with forward passes, and its ratio is taken against the
forward passes timed next to it, so slow drifts of a shared machine cancel out.

Usage:  python benchmarks/bench_writer.py            (full, ~10 min on 2 cores)
        python benchmarks/bench_writer.py --quick    (MNIST CNN only, few repeats)
Results: a table on stdout and JSON in benchmarks/results/writer.json (writer-quick.json
with --quick).
"""

import argparse
import contextlib
import datetime
import gc
import io
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tb_activations as tba  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    event_bytes, git_commit, interleaved, loadavg, median, now, save_results, stat, timed)
from tb_activations.keras import capture as capture_lib  # noqa: E402
from tb_activations.keras import log as log_lib  # noqa: E402
from tb_activations.keras import selection  # noqa: E402
from tb_activations.rendering import steps  # noqa: E402
from tb_activations.writing import destinations  # noqa: E402
from tb_activations.writing import events  # noqa: E402

MIB = 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
console = Console(width=170)

TARGETS = {
    "get_activations_x": 4.0,    # x forward, MobileNetV2
    "capture_x": 1.5,            # x forward, MobileNetV2
    "log_total_x": 6.0,          # x forward, MobileNetV2, tf.summary writer + flush
    "log_dir_total_x": 5.0,      # x forward, MobileNetV2, log_dir=
    "bytes_per_step": 5 * MIB,   # MobileNetV2
    "callback_pct": 2.0,         # % of fit time
}


# ----------------------------------------------------------------------------- models

def mnist_cnn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ], name="mnist_cnn")


def cats_dogs_cnn():
    layers = [keras.Input((150, 150, 3))]
    for filters in (32, 64, 128, 128):
        layers += [keras.layers.Conv2D(filters, 3, activation="relu"),
                   keras.layers.MaxPooling2D()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(512, activation="relu"),
               keras.layers.Dense(1, activation="sigmoid")]
    return keras.Sequential(layers, name="cats_dogs_cnn")


def mobilenet_v2():
    return keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))


MODELS = {
    "mnist_cnn": (mnist_cnn, (28, 28, 1)),
    "cats_dogs_cnn": (cats_dogs_cnn, (150, 150, 3)),
    "mobilenet_v2": (mobilenet_v2, (224, 224, 3)),
}


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def quiet_stdout():
    """Keras progress bars (tf-explain calls predict with the default verbose) go nowhere."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class Forward:
    """The baseline: a warm tf.function of model(x, training=False), output copied out."""

    def __init__(self, model, x):
        self.model, self.x = model, tf.constant(x)
        self.function = tf.function(lambda inputs: model(inputs, training=False))
        self.function(self.x)  # trace
        self.samples = []

    def __call__(self):
        start = now()
        self.function(self.x).numpy()
        elapsed = now() - start
        self.samples.append(elapsed)
        return elapsed


def evenly_picked(items, limit):
    if limit is None or len(items) <= limit:
        return list(items)
    indices = sorted({round(i * (len(items) - 1) / (limit - 1)) for i in range(limit)})
    return [items[i] for i in indices]


# ----------------------------------------------------------------------------- tf-explain

def load_tf_explain(mode):
    """(callback class or None, description, import error or None)."""
    if mode == "reimpl":
        return None, "re-implementation forced by --tf-explain reimpl", None
    try:
        import tf_explain  # noqa: F401
        from tf_explain.callbacks.activations_visualization import (
            ActivationsVisualizationCallback)
        return ActivationsVisualizationCallback, "tf-explain %s" % tf_explain.__version__, None
    except Exception as error:  # the finding is the error itself
        return None, None, "%s: %s" % (type(error).__name__, error)


def tf_explain_like_grid(predictions):
    """What tf-explain's filter_display + min-max scaling do: every channel of every sample
    as a tile of a near-square grid, one uint8 image (written without its source)."""
    maps = np.concatenate(np.moveaxis(predictions, 3, 1), axis=0)  # (B*C, H, W)
    count, height, width = maps.shape
    side = int(np.ceil(np.sqrt(count)))
    padded = np.zeros((side * side, height, width), maps.dtype)
    padded[:count] = maps
    grid = padded.reshape(side, side, height, width).transpose(0, 2, 1, 3).reshape(
        side * height, side * width)
    grid = (grid - grid.min()) / (grid.max() - grid.min())
    return (np.clip(grid, 0, 1) * 255).astype("uint8")


class ReimplementedTfExplainCallback(keras.callbacks.Callback):
    """tf-explain's per-epoch method, written from its documented behaviour: a new
    `tf.keras.Model(model.inputs, layer.output)` per epoch, compiled, `predict`, a numpy
    grid of all channels, one `tf.summary.image` on its own file writer."""

    def __init__(self, validation_data, layers_name, output_dir):
        super().__init__()
        self.validation_data = validation_data
        self.layers_name = layers_name
        self.file_writer = tf.summary.create_file_writer(str(output_dir))

    def on_epoch_end(self, epoch, logs=None):
        outputs = [layer.output for layer in self.model.layers if layer.name in self.layers_name]
        sub_model = tf.keras.models.Model(self.model.inputs, outputs=outputs)
        sub_model.compile(optimizer="sgd", loss="categorical_crossentropy")
        predictions = sub_model.predict(self.validation_data[0])
        if isinstance(predictions, list) or predictions.ndim != 4:
            raise ValueError("only one rank-4 layer output can be drawn")
        grid = tf_explain_like_grid(predictions)
        with self.file_writer.as_default():
            tf.summary.image("Activations Visualization", grid[None, :, :, None], step=epoch)


def run_tf_explain(model, x, chosen, callback_class, label, limit, workdir):
    """One logged epoch the tf-explain way, one callback per drawable (rank-4) layer."""
    drawable = [(path, layer) for path, layer in chosen if len(layer.output.shape) == 4]
    undrawable = [path for path, layer in chosen if len(layer.output.shape) != 4]
    picked = evenly_picked(drawable, limit)
    result = {"method": label, "layers_total": len(chosen), "layers_drawable": len(drawable),
              "layers_undrawable": undrawable, "layers_timed": len(picked),
              "extrapolated": len(picked) < len(drawable)}
    root = os.path.join(workdir, "tf_explain")
    per_layer, grown = [], 0
    for index, (path, layer) in enumerate(picked):
        callback = callback_class((x, None), [layer.name],
                                  output_dir=os.path.join(root, str(index)))
        callback.set_model(model)
        callback.file_writer.flush()
        before = event_bytes(root)
        with quiet_stdout():
            per_layer.append(timed(lambda: callback.on_epoch_end(0)))
        callback.file_writer.flush()
        grown += event_bytes(root) - before
        callback.file_writer.close()
    scale = len(drawable) / len(picked)
    result.update(per_layer_s=per_layer, seconds=sum(per_layer) * scale,
                  bytes_per_step=int(grown * scale))
    # The errors users meet: several layers in one callback, and a rank-2 (Dense) layer.
    errors = {}
    if len(drawable) >= 2:
        errors["two_layers"] = try_tf_explain(callback_class, model, x,
                                              [drawable[0][1].name, drawable[1][1].name],
                                              os.path.join(root, "two"))
    if undrawable:
        errors["rank2_layer"] = try_tf_explain(
            callback_class, model, x, [dict(chosen)[undrawable[-1]].name],
            os.path.join(root, "dense"))
    result["errors"] = errors
    return result


def try_tf_explain(callback_class, model, x, names, directory):
    callback = callback_class((x, None), names, output_dir=directory)
    callback.set_model(model)
    try:
        with quiet_stdout():
            callback.on_epoch_end(0)
        return None
    except Exception as error:
        return "%s: %s" % (type(error).__name__, str(error).splitlines()[0][:200])
    finally:
        callback.file_writer.close()


# ----------------------------------------------------------------------------- per-layer

def run_per_layer_models(model, x, chosen, limit):
    """The seeds' way: for each layer, keras.Model(model.inputs, layer.output).predict(x)."""
    picked = evenly_picked(chosen, limit)
    per_layer = []
    for _, layer in picked:
        def one(layer=layer):
            sub_model = keras.Model(model.inputs, layer.output)
            sub_model.predict(x, verbose=0)
        per_layer.append(timed(one))
    scale = len(chosen) / len(picked)
    return {"method": "per-layer keras.Model(...).predict, rebuilt each time",
            "layers_total": len(chosen), "layers_timed": len(picked),
            "extrapolated": len(picked) < len(chosen),
            "per_layer_s": per_layer, "seconds": sum(per_layer) * scale}


# ----------------------------------------------------------------------------- tb-activations

def bench_tb_activations(model, x, forward, repeats, workdir):
    """get_activations, capture, render, write, log_activations and bytes per step."""
    out = {}
    arrays = capture_lib.prepare_probe(model, x)

    out["get_activations_first_s"] = timed(lambda: tba.get_activations(model, x))
    method, base = interleaved(forward, lambda: tba.get_activations(model, x), repeats)
    out["get_activations"] = stat(method, base)
    activations = tba.get_activations(model, x)
    out["get_activations_bytes"] = int(sum(a.nbytes for a in activations.values()))
    out["layers"] = len(activations)
    del activations

    out["capture_first_s"] = timed(lambda: log_lib.capture(model, arrays))
    method, base = interleaved(forward, lambda: log_lib.capture(model, arrays), repeats)
    out["capture"] = stat(method, base)

    captured = log_lib.capture(model, arrays)
    out["copied_bytes"] = int(sum(sum(np.asarray(v).nbytes for v in reduced.values())
                                  for reduced in captured.reduce().values()))
    renders = []
    for _ in range(max(3, repeats // 2)):
        fresh = log_lib.capture(model, arrays)  # its reduction is part of rendering
        renders.append(timed(lambda: steps.render_capture(fresh)))
    out["render"] = {"median_s": median(renders), "runs": len(renders),
                     "ratio": median(renders) / median(forward.samples)}
    rendered = steps.render_capture(captured)
    out["rendered_bytes"] = {
        "png": int(sum(len(b) for _, _, values in rendered for b in values[:-1])),
        "statistics": int(sum(len(values[-1]) for _, _, values in rendered)),
        "plugin_metadata": int(sum(len(m.SerializeToString()) for _, m, _ in rendered))}

    directory = os.path.join(workdir, "log_%d" % x.shape[0])
    writer = tf.summary.create_file_writer(directory)
    writer.flush()
    empty = event_bytes(directory)
    with writer.as_default():
        tba.log_activations(model, x, step=0)  # also stores the probe input once
        writer.flush()
        first = event_bytes(directory)
        tba.log_activations(model, x, step=1)
        writer.flush()
        second = event_bytes(directory)
        out["bytes_first_step"] = first - empty
        out["bytes_per_step"] = second - first

        step = [2]

        def write_tf():
            destinations.write_rendered(rendered, step[0])
            writer.flush()
            step[0] += 1

        with events.EventFileWriter(directory + "_events") as own_writer:
            def write():
                destinations.write_rendered(rendered, step[0], own_writer)
                step[0] += 1

            writes, tf_writes = [], []
            for _ in range(max(3, repeats // 2)):
                writes.append(timed(write))
                tf_writes.append(timed(write_tf))
        out["write"] = {"median_s": median(writes), "runs": len(writes),
                        "ratio": median(writes) / median(forward.samples),
                        "note": "write_rendered to an events.EventFileWriter"}
        out["write_tf"] = {"median_s": median(tf_writes), "runs": len(tf_writes),
                           "ratio": median(tf_writes) / median(forward.samples),
                           "note": "write_rendered to the default tf.summary writer + flush"}

        def log():
            tba.log_activations(model, x, step=step[0])
            writer.flush()
            step[0] += 1

        method, base = interleaved(forward, log, repeats)
        out["log_activations"] = stat(method, base, "public call, default writer, + flush")
    writer.close()

    def log_dir():
        tba.log_activations(model, x, step=step[0], log_dir=directory + "_log_dir")
        step[0] += 1

    method, base = interleaved(forward, log_dir, repeats)
    out["log_activations_log_dir"] = stat(method, base, "public call, log_dir= (our writer)")
    return out


def bench_model(name, args, tf_explain_class, tf_explain_label, workdir):
    build, shape = MODELS[name]
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(0)
    x1 = rng.random((1,) + shape, dtype=np.float32)
    x4 = rng.random((4,) + shape, dtype=np.float32)
    chosen = selection.select_layers(selection.walk_layers(model))
    quick = args.quick
    repeats = args.repeats or (5 if quick else {"mnist_cnn": 30, "cats_dogs_cnn": 15,
                                                "mobilenet_v2": 10}[name])
    slow_limit = args.slow_layers if name == "mobilenet_v2" else None
    result = {"model": name, "input_shape": list(shape), "params": int(model.count_params()),
              "default_layers": len(chosen), "repeats": repeats, "loadavg_start": loadavg()}
    console.log("[bold]%s[/]: %d default layers, %d repeats" % (name, len(chosen), repeats))

    forward = Forward(model, x1)
    for _ in range(3):
        forward()
    forward.samples.clear()
    for _ in range(repeats):
        forward()
    result["forward"] = {"median_s": median(forward.samples), "min_s": min(forward.samples),
                         "runs": len(forward.samples),
                         "method": "warm tf.function(model(x, training=False)), .numpy()"}
    model.predict_on_batch(x1)
    pob = [timed(lambda: model.predict_on_batch(x1)) for _ in range(repeats)]
    result["predict_on_batch"] = {"median_s": median(pob), "runs": len(pob),
                                  "ratio": median(pob) / median(forward.samples)}

    console.log("  tb-activations, probe of 1")
    result["tba_1"] = bench_tb_activations(model, x1, forward, repeats, workdir)

    console.log("  tb-activations, probe of 4")
    forward4 = Forward(model, x4)
    for _ in range(3):
        forward4()
    forward4.samples.clear()
    result["forward_4"] = {"median_s": median([forward4() for _ in range(repeats)])}
    result["tba_4"] = bench_tb_activations(model, x4, forward4,
                                           max(3, repeats // 2), workdir)
    result["forward_4"]["median_s"] = median(forward4.samples)

    console.log("  per-layer sub-models (seeds' way)%s"
                % ("" if slow_limit is None else ", %d evenly spread layers" % slow_limit))
    result["per_layer"] = run_per_layer_models(model, x1, chosen, slow_limit)
    result["per_layer"]["ratio"] = result["per_layer"]["seconds"] / median(forward.samples)

    console.log("  %s" % tf_explain_label)
    callback_class = tf_explain_class or ReimplementedTfExplainCallback
    try:
        result["tf_explain"] = run_tf_explain(model, x1, chosen, callback_class, tf_explain_label,
                                              slow_limit, workdir)
        result["tf_explain"]["ratio"] = (result["tf_explain"]["seconds"]
                                         / median(forward.samples))
    except Exception as error:
        result["tf_explain"] = {"method": tf_explain_label, "error": "%s: %s" % (
            type(error).__name__, error), "traceback": traceback.format_exc()}
    result["forward_all_median_s"] = median(forward.samples)
    result["loadavg_end"] = loadavg()
    return result


# ----------------------------------------------------------------------------- callback

class GcClock:
    """Total seconds Python's cyclic garbage collector has run (all generations)."""

    total = 0.0
    _started = None

    @classmethod
    def callback(cls, phase, info):
        if phase == "start":
            cls._started = now()
        elif cls._started is not None:
            cls.total += now() - cls._started
            cls._started = None


gc.callbacks.append(GcClock.callback)


class TimedActivationsCallback(tba.ActivationsCallback):
    """ActivationsCallback with the training thread's time in each hook recorded, and how
    much of it the garbage collector took (collections are triggered by whoever allocates)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hook_seconds = {}

    def _timed(self, hook, *args):
        start, gc_start = now(), GcClock.total
        getattr(super(), hook)(*args)
        self.hook_seconds[hook] = self.hook_seconds.get(hook, 0.0) + now() - start
        self.hook_seconds["gc_in_hooks"] = (self.hook_seconds.get("gc_in_hooks", 0.0)
                                            + GcClock.total - gc_start)

    def on_train_begin(self, logs=None):
        self._timed("on_train_begin", logs)

    def on_train_batch_end(self, batch, logs=None):
        self._timed("on_train_batch_end", batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed("on_epoch_end", epoch, logs)

    def on_train_end(self, logs=None):
        self._timed("on_train_end", logs)


def bench_callback(args, workdir):
    """fit with and without the callback, in two scenarios, arms interleaved:

    fresh:  a new model (and compile) per fit, as a user's single `fit` call: every arm pays
            Keras' own train-function trace, the callback arms also their probe trace.
    warm:   one model per arm reused across fits (traced by the warm-up fit), so only the
            per-epoch cost of logging remains (steady state of a long training).
    The `every_batch` arm logs at every training batch (update_freq=1, default max_queue=1).
    """
    samples, epochs, batch = 2048, 3, 64
    runs = args.callback_runs or (2 if args.quick else 7)
    rng = np.random.default_rng(1)
    x = rng.random((samples, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, samples)
    arms = ["fresh/none", "fresh/probe_1", "fresh/probe_4", "warm/none", "warm/probe_1",
            "warm/probe_1_every_batch"]
    console.log("[bold]callback overhead[/]: fit %d samples, batch %d, %d epochs, %d runs per arm"
                % (samples, batch, epochs, runs))
    wall = {arm: [] for arm in arms}
    cpu = {arm: [] for arm in arms}
    hooks = {arm: [] for arm in arms if not arm.endswith("none")}
    warm_models = {}
    counter = [0]

    # Seeded once: tf.random.set_seed in eager mode clears TensorFlow's function caches, which
    # would make the warm arms re-instantiate their functions at every fit.
    keras.utils.set_random_seed(0)

    def new_model():
        model = mnist_cnn()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    def fit(arm):
        scenario, kind = arm.split("/")
        if scenario == "warm":
            if arm not in warm_models:
                warm_models[arm] = new_model()
            model = warm_models[arm]
        else:
            model = new_model()
        callbacks = []
        if kind != "none":
            counter[0] += 1
            callbacks.append(TimedActivationsCallback(
                os.path.join(workdir, "cb_%d" % counter[0]),
                probe=x[:int(kind.split("_")[1])],
                update_freq="batch" if kind.endswith("every_batch") else "epoch"))
        start_wall, start_cpu = now(), time.process_time()
        model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=callbacks)
        return (now() - start_wall, time.process_time() - start_cpu,
                callbacks[0].hook_seconds if callbacks else None)

    for arm in arms:  # warm-up: kernels, data adapters, first-use imports, warm models' traces
        fit(arm)
    for run in range(runs):
        order = arms[run % len(arms):] + arms[:run % len(arms)]  # rotate who goes first
        for arm in order:
            seconds, cpu_seconds, hook = fit(arm)
            wall[arm].append(seconds)
            cpu[arm].append(cpu_seconds)
            if hook is not None:
                hooks[arm].append(hook)
    result = {"samples": samples, "batch_size": batch, "epochs": epochs, "runs_per_arm": runs,
              "model": "mnist_cnn", "scenarios": bench_callback.__doc__,
              "fit_wall_s": wall, "fit_cpu_s": cpu,
              "fit_wall_median_s": {arm: median(v) for arm, v in wall.items()},
              "fit_cpu_median_s": {arm: median(v) for arm, v in cpu.items()}}
    for arm in hooks:
        base = arm.split("/")[0] + "/none"
        result["overhead_pct_" + arm] = 100.0 * (median(wall[arm]) - median(wall[base])) \
            / median(wall[base])
        result["overhead_pct_min_" + arm] = 100.0 * (min(wall[arm]) - min(wall[base])) \
            / min(wall[base])
        result["cpu_overhead_pct_" + arm] = 100.0 * (median(cpu[arm]) - median(cpu[base])) \
            / median(cpu[base])
        result["hooks_median_s_" + arm] = {
            hook: median([h.get(hook, 0.0) for h in hooks[arm]])
            for hook in ("on_train_begin", "on_train_batch_end", "on_epoch_end", "on_train_end",
                         "gc_in_hooks")}
        result["hooks_s_" + arm] = hooks[arm]
        result["hooks_pct_" + arm] = 100.0 * sum(
            v for k, v in result["hooks_median_s_" + arm].items() if k != "gc_in_hooks") \
            / median(wall[base])
    return result


# ----------------------------------------------------------------------------- report

def ms(seconds):
    if seconds is None:
        return "-"
    return "%.1f ms" % (seconds * 1e3) if seconds < 10 else "%.1f s" % seconds


def times_forward(ratio):
    return "-" if ratio is None else ("%.1f×" % ratio if ratio < 100 else "%.0f×" % ratio)


def mib(count):
    return "-" if count is None else "%.2f MiB" % (count / MIB)


def print_model_table(results):
    table = Table(title="Writer benchmark (median; × = ratio to a warm forward pass timed "
                        "next to it)", show_lines=False)
    for column in ("model", "probe", "measurement", "time", "× forward", "bytes", "notes"):
        table.add_column(column, justify="right" if column in ("time", "× forward", "bytes")
                         else "left", overflow="fold")
    for name, r in results.items():
        forward = r["forward_all_median_s"]
        table.add_row(name, "1", "forward (warm tf.function)", ms(forward), "1.0×", "",
                      "%d params, %d default layers" % (r["params"], r["default_layers"]),
                      end_section=False)
        table.add_row("", "1", "predict_on_batch", ms(r["predict_on_batch"]["median_s"]),
                      times_forward(r["predict_on_batch"]["ratio"]), "", "for information")
        for probe in (1, 4):
            t = r["tba_%d" % probe]
            if probe == 4:
                table.add_row("", "4", "forward (warm tf.function)", ms(r["forward_4"]["median_s"]),
                              "1.0×", "", "baseline of the probe-4 rows")
            table.add_row("", str(probe), "get_activations", ms(t["get_activations"]["median_s"]),
                          times_forward(t["get_activations"]["ratio"]),
                          mib(t["get_activations_bytes"]),
                          "first call (trace) %s; bytes = arrays returned"
                          % ms(t["get_activations_first_s"]))
            table.add_row("", str(probe), "log_activations: capture (blocking)",
                          ms(t["capture"]["median_s"]), times_forward(t["capture"]["ratio"]),
                          mib(t["copied_bytes"]),
                          "first call (trace) %s; bytes = copied out of TF"
                          % ms(t["capture_first_s"]))
            table.add_row("", str(probe), "  render_capture", ms(t["render"]["median_s"]),
                          times_forward(t["render"]["ratio"]), "", "")
            table.add_row("", str(probe), "  write_rendered (events)", ms(t["write"]["median_s"]),
                          times_forward(t["write"]["ratio"]), "", "our event file writer")
            table.add_row("", str(probe), "  write_rendered (tf.summary) + flush",
                          ms(t["write_tf"]["median_s"]), times_forward(t["write_tf"]["ratio"]),
                          "", "the default tf.summary writer")
            table.add_row("", str(probe), "log_activations log_dir=: total",
                          ms(t["log_activations_log_dir"]["median_s"]),
                          times_forward(t["log_activations_log_dir"]["ratio"]), "",
                          "our event file writer")
            table.add_row("", str(probe), "log_activations tf.summary + flush: total",
                          ms(t["log_activations"]["median_s"]),
                          times_forward(t["log_activations"]["ratio"]),
                          mib(t["bytes_per_step"]),
                          "bytes = event file growth per step (first step %s, with probe); "
                          "of which PNGs %s, statistics blobs %s, plugin metadata %s"
                          % (mib(t["bytes_first_step"]), mib(t["rendered_bytes"]["png"]),
                             mib(t["rendered_bytes"]["statistics"]),
                             mib(t["rendered_bytes"]["plugin_metadata"])))
        p = r["per_layer"]
        table.add_row("", "1", "per-layer sub-models (seeds)", ms(p["seconds"]),
                      times_forward(p["ratio"]), "",
                      "1 run; %s" % ("%d of %d layers timed, extrapolated linearly"
                                     % (p["layers_timed"], p["layers_total"])
                                     if p["extrapolated"] else "all %d layers" % p["layers_total"]))
        e = r["tf_explain"]
        if "error" in e:
            table.add_row("", "1", e["method"] or "tf-explain", "-", "-", "", "ERROR " + e["error"])
        else:
            note = "1 run, one callback per layer; %s" % (
                "%d of %d rank-4 layers timed, extrapolated linearly"
                % (e["layers_timed"], e["layers_drawable"]) if e["extrapolated"]
                else "all %d rank-4 layers" % e["layers_drawable"])
            if e["layers_undrawable"]:
                note += "; cannot draw %d layer(s): %s" % (len(e["layers_undrawable"]),
                                                          ", ".join(e["layers_undrawable"]))
            table.add_row("", "1", e["method"], ms(e["seconds"]), times_forward(e["ratio"]),
                          mib(e["bytes_per_step"]), note, end_section=True)
    console.print(table)


def print_callback_table(c):
    table = Table(title="ActivationsCallback on fit: %d samples, batch %d, %d epochs, median of "
                        "%d runs per arm, arms interleaved"
                        % (c["samples"], c["batch_size"], c["epochs"], c["runs_per_arm"]))
    for column in ("scenario / arm", "fit wall", "overhead wall (median / min)", "fit CPU",
                   "overhead CPU", "on_train_begin", "on_train_batch_end (sum)",
                   "on_epoch_end (sum)", "on_train_end", "of which gc",
                   "hooks % of fit",
                   "wall runs (s)"):
        table.add_column(column, justify="left" if column in ("scenario / arm", "wall runs (s)")
                         else "right", overflow="fold")
    for arm, seconds in c["fit_wall_median_s"].items():
        hooks = c.get("hooks_median_s_" + arm, {})
        overhead = c.get("overhead_pct_" + arm)
        cpu_overhead = c.get("cpu_overhead_pct_" + arm)
        table.add_row(arm.replace("_", " "), ms(seconds),
                      "-" if overhead is None else "%+.1f%% / %+.1f%%"
                      % (overhead, c["overhead_pct_min_" + arm]),
                      ms(c["fit_cpu_median_s"][arm]),
                      "-" if cpu_overhead is None else "%+.1f%%" % cpu_overhead,
                      ms(hooks.get("on_train_begin")), ms(hooks.get("on_train_batch_end")),
                      ms(hooks.get("on_epoch_end")),
                      ms(hooks.get("on_train_end")), ms(hooks.get("gc_in_hooks")),
                      "%.1f%%" % c["hooks_pct_" + arm] if "hooks_pct_" + arm in c else "-",
                      " ".join("%.2f" % v for v in c["fit_wall_s"][arm]),
                      end_section=arm == "fresh/probe_4")
    console.print(table)
    console.print("fresh: new model per fit (one fit as a user runs it: includes the probe's "
                  "one-time trace in on_train_begin); warm: same model reused, traces cached "
                  "(per-epoch cost only); every batch: update_freq=1. CPU = this process's CPU "
                  "time (both cores), less sensitive to other load than wall time.")


def evaluate_targets(results, callback):
    checks = []
    m = results.get("mobilenet_v2")
    if m is not None:
        t = m["tba_1"]
        checks += [
            ("get_activations ≤ 4× forward (MobileNetV2)", t["get_activations"]["ratio"],
             TARGETS["get_activations_x"], times_forward),
            ("callback blocking (capture) ≤ 1.5× forward (MobileNetV2)",
             t["capture"]["ratio"], TARGETS["capture_x"], times_forward),
            ("log_activations + flush, tf.summary, total ≤ 6× forward (MobileNetV2)",
             t["log_activations"]["ratio"], TARGETS["log_total_x"], times_forward),
            ("log_activations log_dir= total ≤ 5× forward (MobileNetV2)",
             t["log_activations_log_dir"]["ratio"], TARGETS["log_dir_total_x"], times_forward),
            ("bytes per logged step ≤ 5 MiB (MobileNetV2, probe 1)", t["bytes_per_step"],
             TARGETS["bytes_per_step"], mib),
        ]
    if callback is not None:
        checks.append(("callback overhead ≤ 2% of fit (probe 1, fresh model per fit, wall)",
                       callback["overhead_pct_fresh/probe_1"], TARGETS["callback_pct"],
                       lambda v: "%+.1f%%" % v))
        checks.append(("callback overhead ≤ 2% of fit (probe 1, warm model, wall)",
                       callback["overhead_pct_warm/probe_1"], TARGETS["callback_pct"],
                       lambda v: "%+.1f%%" % v))
    table = Table(title="Targets")
    for column in ("target", "measured", "result"):
        table.add_column(column)
    out = []
    for label, value, limit, fmt in checks:
        passed = value <= limit
        table.add_row(label, fmt(value), "[green]PASS[/]" if passed else "[red]FAIL[/]")
        out.append({"target": label, "measured": value, "limit": limit, "pass": passed})
    if m is None:
        table.add_row("MobileNetV2 targets", "not run (--quick / --models)", "n/a")
    console.print(table)
    if callback is not None:
        console.print("note: logging every batch (update_freq=1) adds %+.0f%% to fit's wall time "
                      "and %+.0f%% to its CPU time (warm model, probe 1)"
                      % (callback["overhead_pct_warm/probe_1_every_batch"],
                         callback["cpu_overhead_pct_warm/probe_1_every_batch"]))
    # Informational: probe of 4 against the byte budget.
    if m is not None:
        console.print("note: MobileNetV2 with a 4-image probe writes %s per step"
                      % mib(m["tba_4"]["bytes_per_step"]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="MNIST CNN only, few repeats (smoke test)")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of %s" % ",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per fast method")
    parser.add_argument("--slow-layers", type=int, default=24,
                        help="MobileNetV2 layers timed for the per-layer and tf-explain methods "
                             "(evenly spread; the total is extrapolated linearly)")
    parser.add_argument("--callback-runs", type=int, default=None,
                        help="fits per arm for the callback overhead")
    parser.add_argument("--no-callback", action="store_true", help="skip the callback overhead")
    parser.add_argument("--tf-explain", choices=("auto", "reimpl"), default="auto",
                        help="reimpl: time the re-implementation even if tf-explain imports")
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args()

    names = (["mnist_cnn"] if args.quick else list(MODELS)) if args.models is None \
        else [name for name in args.models.split(",") if name]
    output = args.output or os.path.join(HERE, "results",
                                         "writer-quick.json" if args.quick else "writer.json")
    tf_explain_class, tf_explain_label, tf_explain_error = load_tf_explain(args.tf_explain)
    if tf_explain_class is None:
        tf_explain_label = "tf-explain method (re-implemented: %s)" % (
            "package broken on Keras 3" if tf_explain_error else tf_explain_label)
        if tf_explain_error:
            console.print("[red]tf-explain could not be imported:[/] " + tf_explain_error)
    else:
        tf_explain_label += " ActivationsVisualizationCallback"

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
            "cpus": os.cpu_count(), "machine": platform.machine(), "loadavg_start": loadavg(),
            "argv": sys.argv[1:], "tf_explain": tf_explain_label,
            "tf_explain_import_error": tf_explain_error, "targets": TARGETS}
    if meta["loadavg_start"] and meta["loadavg_start"][0] > (os.cpu_count() or 1):
        console.print("[yellow]warning: load average %s on %d CPUs: another process is busy, "
                      "timings will be noisy[/]" % (meta["loadavg_start"], os.cpu_count()))
    started = now()
    workdir = tempfile.mkdtemp(prefix="tba-bench-")
    results, callback = {}, None
    try:
        for name in names:
            results[name] = bench_model(name, args, tf_explain_class, tf_explain_label, workdir)
            keras.backend.clear_session()
        if not args.no_callback:
            callback = bench_callback(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = now() - started
    meta["loadavg_end"] = loadavg()

    print_model_table(results)
    if callback is not None:
        print_callback_table(callback)
    targets = evaluate_targets(results, callback)
    save_results(console, output,
                 {"meta": meta, "models": results, "callback": callback, "targets": targets},
                 meta["seconds"], meta["loadavg_start"], meta["loadavg_end"])


if __name__ == "__main__":
    main()
