"""Where the writer's time and bytes go on MobileNetV2 (companion of bench_writer.py).

Sections (each prints its own table; JSON in benchmarks/results/profile_writer.json):

  trace     the first `summary.capture` (trace + first run): graph size, with the package's
            tf.function as is and with AutoGraph off (patched here, not in the package)
  capture   warm time of variants of the capture function, all traced without AutoGraph:
            forward only; + every layer output returned; + statistics only; + tiles only;
            the package's full reduction; and proposals: fast statistics (min/max/moments
            with the masked computation under a tf.cond, or run lazily), channels picked by
            slicing, avg_pool2d downscaling without a no-op MirrorPad, layers grouped by
            plan, and a split design (outputs function + one reduce function per plan).
            The proposals are checked against the package's reduced arrays.
  tiles     ablation of the tiles part (gather vs slice, reshape+mean vs avg_pool2d)
  callback  ActivationsCallback.on_train_begin on a fresh MNIST CNN, package vs AutoGraph off
  render    cProfile of `summary.render_capture`, grouped by stage, and cheaper variants
  bytes     bytes of one step for RenderOptions caps (max_channels x max_tile), probe 1 and 4,
            split into PNGs and statistics blobs

Nothing here changes tb_activations: variants are built from its pieces and patched in only
for the duration of a measurement.
Usage: python benchmarks/profile_writer.py [--model mobilenet_v2] [--sections trace,capture,...]
       [--variants "forward only,all proposals"] [--repeats 9]
"""

import argparse
import collections
import contextlib
import cProfile
import functools
import io
import json
import os
import pstats
import sys
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_writer import MODELS, Forward, interleaved, median, loadavg  # noqa: E402
from tb_activations import extraction, layout as layout_lib, reduction, rendering  # noqa: E402
from tb_activations import selection, summary  # noqa: E402
import tb_activations as tba  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_CHANNEL_STATISTICS = reduction.channel_statistics
console = Console(width=160)
MIB = 1024 * 1024


def no_autograph_tf():
    """A stand-in for the `tf` module whose tf.function has autograph=False."""
    shim = types.SimpleNamespace(**{k: getattr(tf, k) for k in dir(tf) if not k.startswith("__")})
    shim.function = functools.partial(tf.function, autograph=False)
    return shim


@contextlib.contextmanager
def patched(module, name, value):
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


# ----------------------------------------------------------------------------- variants

def fast_channel_statistics(x):
    """Same values as reduction.channel_statistics(x, finite_only=True), fewer passes when
    every value is finite (the in-graph tf.cond design the package measured, then dropped).

    min/max/moments/zero count straight on x; if any of min, max, mean is not finite
    (which any NaN or Inf forces), fall back to the masked computation.
    """
    batch, channels = tf.shape(x)[0], x.shape[-1]
    flat = tf.reshape(x, [batch, -1, channels])
    low = tf.reduce_min(flat, axis=1)
    high = tf.reduce_max(flat, axis=1)
    mean, variance = tf.nn.moments(flat, axes=[1])
    finite = tf.reduce_all(tf.math.is_finite(tf.stack([low, high, mean])))

    def fast():
        zero_fraction = tf.reduce_mean(tf.cast(tf.equal(flat, 0.0), tf.float32), axis=1)
        nothing = tf.zeros_like(low)
        return tf.stack([low, high, mean, tf.sqrt(variance), zero_fraction, nothing, nothing],
                        axis=-1)

    return tf.cond(finite, fast, lambda: PACKAGE_CHANNEL_STATISTICS(x, finite_only=True))


def unguarded_channel_statistics(x):
    """The fast path alone (no tf.cond): what the graph would hold if the masked path ran
    lazily, only for layers reporting a non-finite value. The flag rides in nan_count:
    NaN there means "recompute this layer with the masked statistics"."""
    batch, channels = tf.shape(x)[0], x.shape[-1]
    flat = tf.reshape(x, [batch, -1, channels])
    low = tf.reduce_min(flat, axis=1)
    high = tf.reduce_max(flat, axis=1)
    mean, variance = tf.nn.moments(flat, axes=[1])
    zero_fraction = tf.reduce_mean(tf.cast(tf.equal(flat, 0.0), tf.float32), axis=1)
    flag = tf.where(tf.math.is_finite(low + high + mean), 0.0, float("nan"))
    return tf.stack([low, high, mean, tf.sqrt(variance), zero_fraction, flag,
                     tf.zeros_like(low)], axis=-1)


def tiles_only(x, plan, options):
    """The drawing part of reduce_layer_output without the statistics."""
    x = reduction.canonical(x, plan)
    if plan.layout == "channels":
        picked = tf.gather(x, reduction.select_channels(x, plan, options), axis=-1)
        return tf.transpose(reduction.area_downscale(picked, *plan.downscale), [0, 3, 1, 2])
    return reduction.reduce_layer_output(x, plan, options)["tiles"]


def pooled_downscale(x, factor_rows, factor_columns):
    """reduction.area_downscale with the same values: mirror-pad only when a size does not
    divide, then one avg_pool2d (VALID, window = stride = factor) instead of reshape+mean."""
    if factor_rows == 1 and factor_columns == 1:
        return x
    _, height, width, _ = x.shape
    rows, columns = -(-height // factor_rows), -(-width // factor_columns)
    if rows * factor_rows != height or columns * factor_columns != width:
        x = tf.pad(x, [[0, 0], [0, rows * factor_rows - height],
                       [0, columns * factor_columns - width], [0, 0]], mode="SYMMETRIC")
    return tf.nn.avg_pool2d(x, (factor_rows, factor_columns), (factor_rows, factor_columns),
                            "VALID")


def proposed_reduce_layer_output(x, plan, options, statistics=None):
    """reduction.reduce_layer_output with the proposals: fast statistics, channels picked by
    slicing when channel_selection="first", pooled_downscale. Other layouts: the package's."""
    statistics = statistics or fast_channel_statistics
    x = reduction.canonical(x, plan)
    if plan.layout != "channels":
        with patched(reduction, "channel_statistics", statistics):
            return reduction.reduce_layer_output(x, plan, options)
    stats = statistics(x)
    shown = plan.channels_shown
    if options.channel_selection == "first":
        channels = tf.range(shown, dtype=tf.int32)
        picked = x if shown == plan.channels_total else x[..., :shown]
        ranges = stats[:, :shown, :2]
    else:
        channels = reduction.select_channels(x, plan, options)
        picked = tf.gather(x, channels, axis=-1)
        ranges = tf.gather(stats[..., :2], channels, axis=1)
    tiles = tf.transpose(pooled_downscale(picked, *plan.downscale), [0, 3, 1, 2])
    return {"stats": stats, "tiles": tiles, "ranges": ranges, "channels": channels}


def proposed_tiles_only(x, plan, options):
    if plan.layout != "channels":
        return tiles_only(x, plan, options)
    x = reduction.canonical(x, plan)
    picked = x if plan.channels_shown == plan.channels_total else x[..., :plan.channels_shown]
    return tf.transpose(pooled_downscale(picked, *plan.downscale), [0, 3, 1, 2])


def build_function(model, signature, per_output, options=layout_lib.RenderOptions()):
    """A concrete function: probe in, per_output(tensor, plan) of every default layer out."""
    candidates = selection.walk_layers(model)
    chosen = selection.select_layers(candidates)
    outputs = {}

    def run(inputs):
        outputs.clear()
        final = model(inputs, training=False)
        if per_output is None:
            return final
        result = {}
        for path, layer in chosen:
            if path not in outputs:
                continue
            for name, tensor in extraction.split_outputs(path, outputs[path]):
                plan = layout_lib.plan_layout(
                    tensor.shape[1:], options,
                    channels_first=getattr(layer, "data_format", None) == "channels_first")
                result[name] = per_output(tensor, plan, options)
        return result

    with extraction.recording_outputs(candidates, outputs):
        return tf.function(run, autograph=False).get_concrete_function(signature)


VARIANTS = collections.OrderedDict([
    ("forward only", None),
    ("+ return every layer output (no reduction)", lambda t, plan, o: t),
    ("+ statistics only (package)",
     lambda t, plan, o: reduction.channel_statistics(reduction.canonical(t, plan))),
    ("+ statistics only (fast path proposal)",
     lambda t, plan, o: fast_channel_statistics(reduction.canonical(t, plan))),
    ("+ tiles only (gather, area downscale)", tiles_only),
    ("+ tiles only, proposal (slice, avg_pool2d, pad only if needed)", proposed_tiles_only),
    ("+ full reduction (package)", lambda t, plan, o: reduction.reduce_layer_output(t, plan, o)),
    ("+ full reduction, fast statistics only (proposal)", "fast"),
    ("+ full reduction, all proposals (fast statistics, slice, avg_pool2d)",
     proposed_reduce_layer_output),
    ("+ full reduction, all proposals, masked path lazy (no tf.cond in the graph)",
     lambda t, plan, o: proposed_reduce_layer_output(t, plan, o, unguarded_channel_statistics)),
])


def graph_size(concrete):
    return len(concrete.graph.as_graph_def().node)


def to_numpy(result):
    return tf.nest.map_structure(lambda t: t.numpy(), result)


# ----------------------------------------------------------------------------- sections

def section_trace(model, arrays, out):
    """The package's first capture, then the same with AutoGraph off."""
    rows = []
    for label, context in (("package as is (AutoGraph on)", contextlib.nullcontext()),
                           ("AutoGraph off (tf.function(run, autograph=False))",
                            patched(extraction, "tf", no_autograph_tf()))):
        with context:
            start = time.perf_counter()
            probe = extraction.ActivationProbe(model, extraction.probe_signature(arrays), None,
                                               layout_lib.RenderOptions(), True)
            traced = time.perf_counter() - start
        start = time.perf_counter()
        probe(arrays)
        first = time.perf_counter() - start
        rows.append({"variant": label, "trace_s": traced, "first_run_s": first,
                     "graph_nodes": graph_size(probe._function), "loadavg": loadavg()})
        console.log("trace: %s: %.1f s + first run %.1f s" % (label, traced, first))
    forward_trace = time.perf_counter()
    concrete = tf.function(lambda t: model(t, training=False), autograph=False)
    concrete = concrete.get_concrete_function(extraction.probe_signature(arrays))
    rows.append({"variant": "plain forward, for scale", "graph_nodes": graph_size(concrete),
                 "trace_s": time.perf_counter() - forward_trace, "first_run_s": None})
    out["trace"] = rows
    table = Table(title="First capture on %s (trace = building the graph in Python; first run "
                        "includes Grappler)" % model.name)
    for column in ("variant", "graph nodes", "trace", "first run"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["variant"], str(row["graph_nodes"]), "%.1f s" % row["trace_s"],
                      "-" if row["first_run_s"] is None else "%.1f s" % row["first_run_s"])
    console.print(table)


def build_grouped_function(model, signature, reduce_fn, options=layout_lib.RenderOptions()):
    """Proposal: one graph, but layers whose outputs share a plan (same shape) are concatenated
    along the batch axis and reduced by one subgraph, then split back: the reduction part of
    the graph is per distinct plan (21 on MobileNetV2) instead of per layer (151)."""
    candidates = selection.walk_layers(model)
    chosen = selection.select_layers(candidates)
    outputs = {}

    def run(inputs):
        outputs.clear()
        model(inputs, training=False)
        groups = collections.OrderedDict()
        for path, layer in chosen:
            if path not in outputs:
                continue
            for name, tensor in extraction.split_outputs(path, outputs[path]):
                plan = layout_lib.plan_layout(tensor.shape[1:], options)
                groups.setdefault(plan, []).append((name, tensor))
        result = {}
        for plan, members in groups.items():
            stacked = members[0][1] if len(members) == 1 else tf.concat(
                [tensor for _, tensor in members], axis=0)
            reduced = reduce_fn(stacked, plan, options)
            batch = tf.shape(members[0][1])[0]
            for index, (name, _) in enumerate(members):
                result[name] = {key: value if key == "channels"
                                else value[index * batch:(index + 1) * batch]
                                for key, value in reduced.items()}
        return result

    with extraction.recording_outputs(candidates, outputs):
        return tf.function(run, autograph=False).get_concrete_function(signature)


class SplitCapture:
    """Proposal: one function returns every layer output (tensors stay in TensorFlow), then
    one small reduction function per distinct layer plan (layers of equal shape share it).
    No 13k-node graph: tracing and Grappler stay cheap."""

    def __init__(self, model, arrays, statistics=None, options=layout_lib.RenderOptions()):
        self.arrays = arrays
        self.outputs = build_function(model, extraction.probe_signature(arrays),
                                      lambda t, plan, o: t)
        self.plans = {name: layout_lib.plan_layout(spec.shape[1:], options)
                      for name, spec in self.outputs.structured_outputs.items()}
        self.statistics = statistics
        self.options = options
        self.functions = {}

    def reducer(self, plan):
        if plan not in self.functions:
            def reduce(tensor, plan=plan):
                if self.statistics is None:
                    return reduction.reduce_layer_output(tensor, plan, self.options)
                with patched(reduction, "channel_statistics", self.statistics):
                    return reduction.reduce_layer_output(tensor, plan, self.options)
            self.functions[plan] = tf.function(reduce, autograph=False)
        return self.functions[plan]

    def __call__(self):
        return {name: to_numpy(self.reducer(self.plans[name])(tensor))
                for name, tensor in self.outputs(self.arrays).items()}


def section_capture(model, arrays, x, repeats, out, only=None):
    forward = Forward(model, x)
    rows = []
    variants = list(VARIANTS.items()) + [
        ("grouped by plan in one graph + package reduction (proposal)", "grouped"),
        ("grouped by plan in one graph + all proposals, masked path lazy (proposal)",
         "grouped-proposals"),
        ("split: outputs fn + one reduce fn per distinct plan (proposal)", "split"),
        ("split + fast statistics (proposal)", "split-fast")]
    for label, per_output in variants:
        if only and not any(word in label for word in only):
            continue
        start = time.perf_counter()
        if per_output in ("split", "split-fast"):
            split = SplitCapture(model, arrays, fast_channel_statistics
                                 if per_output == "split-fast" else None)
            run, nodes = split, "%d + %d plans" % (graph_size(split.outputs),
                                                   len(set(split.plans.values())))
        elif per_output in ("grouped", "grouped-proposals"):
            reduce_fn = (reduction.reduce_layer_output if per_output == "grouped" else
                         lambda t, plan, o: proposed_reduce_layer_output(
                             t, plan, o, unguarded_channel_statistics))
            concrete = build_grouped_function(model, extraction.probe_signature(arrays),
                                              reduce_fn)
            run, nodes = (lambda c=concrete: to_numpy(c(arrays))), str(graph_size(concrete))
        else:
            if per_output == "fast":
                with patched(reduction, "channel_statistics", fast_channel_statistics):
                    concrete = build_function(model, extraction.probe_signature(arrays),
                                              VARIANTS["+ full reduction (package)"])
            else:
                concrete = build_function(model, extraction.probe_signature(arrays), per_output)
            run, nodes = (lambda c=concrete: to_numpy(c(arrays))), str(graph_size(concrete))
        traced = time.perf_counter() - start
        start = time.perf_counter()
        result = run()
        first = time.perf_counter() - start
        copy, base = interleaved(forward, run, repeats)
        copied = sum(np.asarray(t).nbytes for t in tf.nest.flatten(result))
        rows.append({"variant": label, "graph_nodes": nodes, "trace_s": traced,
                     "first_run_s": first, "run_and_copy_s": median(copy),
                     "forward_s": median(base), "ratio": median(copy) / median(base),
                     "copied_bytes": int(copied)})
        console.log("capture: %s: %.1f ms (%.1f×)" % (label, rows[-1]["run_and_copy_s"] * 1e3,
                                                      rows[-1]["ratio"]))
    # The fast statistics must agree with the package's on this model.
    package = to_numpy(build_function(model, extraction.probe_signature(arrays),
                                      VARIANTS["+ statistics only (package)"])(arrays))
    fast = to_numpy(build_function(model, extraction.probe_signature(arrays),
                                   VARIANTS["+ statistics only (fast path proposal)"])(arrays))
    worst = max(float(np.nanmax(np.abs(package[k] - fast[k]) / (1e-6 + np.abs(package[k]))))
                for k in package)
    # And the full proposal must give the package's reduced arrays.
    package = to_numpy(build_function(model, extraction.probe_signature(arrays),
                                      VARIANTS["+ full reduction (package)"])(arrays))
    proposal = to_numpy(build_function(model, extraction.probe_signature(arrays),
                                       proposed_reduce_layer_output)(arrays))
    proposal_worst = max(float(np.max(np.abs(package[k][f] - proposal[k][f])))
                         for k in package for f in package[k])
    grouped = to_numpy(build_grouped_function(model, extraction.probe_signature(arrays),
                                              reduction.reduce_layer_output)(arrays))
    grouped_worst = max(float(np.max(np.abs(package[k][f] - grouped[k][f])))
                        for k in package for f in package[k])
    console.print("all proposals vs package reduction: max absolute difference %.2e; grouped "
                  "vs per-layer: %.2e" % (proposal_worst, grouped_worst))
    out["capture"] = {"rows": rows, "fast_stats_max_relative_difference": worst,
                      "proposal_max_absolute_difference": proposal_worst,
                      "grouped_max_absolute_difference": grouped_worst,
                      "forward_s": median(forward.samples), "loadavg": loadavg()}
    table = Table(title="Warm capture variants on %s, probe %d (all traced without AutoGraph); "
                        "forward %.1f ms; medians of %d, interleaved with forward passes"
                        % (model.name, x.shape[0], median(forward.samples) * 1e3, repeats))
    for column in ("variant", "graph nodes", "trace", "first run", "run + .numpy()",
                   "× forward", "copied"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(row["variant"], row["graph_nodes"], "%.1f s" % row["trace_s"],
                      "%.1f s" % row["first_run_s"], "%.1f ms" % (row["run_and_copy_s"] * 1e3),
                      "%.1f×" % row["ratio"], "%.2f MiB" % (row["copied_bytes"] / MIB))
    console.print(table)
    console.print("fast statistics vs package: max relative difference %.2e (random probe; "
                  "the NaN/Inf fallback is the package's own code)" % worst)


def section_tiles(model, arrays, x, repeats, out):
    """Ablation of the tiles part: which op costs what (3 rounds of interleaved runs)."""

    def tiles(pick, downscale, transpose=True):
        def per_output(t, plan, options):
            canonical = reduction.canonical(t, plan)
            if plan.layout != "channels":
                return reduction.reduce_layer_output(canonical, plan, options)["tiles"]
            if pick == "gather":
                picked = tf.gather(canonical, reduction.select_channels(canonical, plan, options),
                                   axis=-1)
            elif pick == "slice":
                picked = (canonical if plan.channels_shown == plan.channels_total
                          else canonical[..., :plan.channels_shown])
            else:
                picked = canonical
            small = downscale(picked, *plan.downscale) if downscale else picked
            return tf.transpose(small, [0, 3, 1, 2]) if transpose else small
        return per_output

    variants = collections.OrderedDict([
        ("every layer output returned and copied out", lambda t, plan, o: t),
        ("package tiles: gather + area_downscale + transpose",
         tiles("gather", reduction.area_downscale)),
        ("gather only (no downscale)", tiles("gather", None, False)),
        ("all channels (no pick) + area_downscale + transpose",
         tiles(None, reduction.area_downscale)),
        ("slice + area_downscale + transpose", tiles("slice", reduction.area_downscale)),
        ("slice + avg_pool2d + transpose", tiles("slice", pooled_downscale)),
        ("slice + avg_pool2d, no transpose", tiles("slice", pooled_downscale, False)),
    ])
    forward = Forward(model, x)
    built = {}
    for label, per_output in variants.items():
        built[label] = build_function(model, extraction.probe_signature(arrays), per_output)
        to_numpy(built[label](arrays))
    samples = {label: ([], []) for label in built}
    for _ in range(3):
        for label, concrete in built.items():
            run, base = interleaved(forward, lambda c=concrete: to_numpy(c(arrays)), repeats)
            samples[label][0].extend(run)
            samples[label][1].extend(base)
    rows = [{"variant": label, "median_s": median(run),
             "ratio": median([a / b for a, b in zip(run, base)])}
            for label, (run, base) in samples.items()]
    out["tiles"] = rows
    table = Table(title="Tiles ablation on %s (forward + every layer consumed; 3 rounds of %d, "
                        "ratio = median of paired run/forward)" % (model.name, repeats))
    for column in ("variant", "median", "× forward"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for row in rows:
        table.add_row(row["variant"], "%.1f ms" % (row["median_s"] * 1e3), "%.2f×" % row["ratio"])
    console.print(table)


def section_callback(out):
    """on_train_begin of a fresh model's fit: the probe trace, package vs AutoGraph off."""
    rng = np.random.default_rng(1)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    rows = {}
    for label, context_factory in (
            ("package as is", contextlib.nullcontext),
            ("AutoGraph off (patched)", lambda: patched(extraction, "tf", no_autograph_tf()))):
        samples = []
        for _ in range(5):
            model = MODELS["mnist_cnn"][0]()
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            callback = TimedCallback(os.path.join("/tmp", "tba-profile-cb"), probe=x[:1])
            with context_factory():
                model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback])
            samples.append(callback.begin)
        rows[label] = {"on_train_begin_s": samples, "median_s": median(samples[1:])}
        console.log("callback: %s: on_train_begin %s" % (label, " ".join(
            "%.0f ms" % (v * 1e3) for v in samples)))
    out["callback"] = rows
    table = Table(title="ActivationsCallback.on_train_begin on a fresh MNIST CNN (median of "
                        "4 after one warm-up)")
    table.add_column("variant")
    table.add_column("on_train_begin", justify="right")
    for label, row in rows.items():
        table.add_row(label, "%.0f ms" % (row["median_s"] * 1e3))
    console.print(table)


class TimedCallback(tba.ActivationsCallback):
    begin = None

    def on_train_begin(self, logs=None):
        start = time.perf_counter()
        super().on_train_begin(logs)
        self.begin = time.perf_counter() - start


def stage_of(function_name):
    for stage in ("quantize", "tile_feature_maps", "encode_png", "encode_statistics",
                  "create_summary_metadata", "layer_content"):
        if function_name == stage:
            return stage
    return None


def section_render(model, arrays, repeats, out):
    with patched(extraction, "tf", no_autograph_tf()):  # same capture, traced faster
        captured = summary.capture(model, arrays)
    times = [timed_call(lambda: summary.render_capture(captured)) for _ in range(repeats)]
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(3):
        summary.render_capture(captured)
    profile.disable()
    stats = pstats.Stats(profile).stats
    stages = collections.Counter()
    for (filename, _, name), (_, _, _, cumulative, _) in stats.items():
        if "tb_activations" in filename and stage_of(name):
            stages[name] += cumulative / 3
    leaves = collections.Counter()
    for (filename, _, name), (_, _, total, _, _) in stats.items():
        leaves["%s:%s" % (os.path.basename(filename), name)] += total / 3
    zlib_s = sum(v for k, v in leaves.items() if "compress" in k)

    # Cheaper variants of the same work, timed on the same capture.
    def quantize32(tiles, ranges):
        tiles = np.asarray(tiles, np.float32)
        low = np.asarray(ranges, np.float32)[..., 0, None, None]
        span = np.asarray(ranges, np.float32)[..., 1, None, None] - low
        usable = np.isfinite(span) & (span > 0)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            scaled = (tiles - low) * np.where(usable, 253.0 / np.where(usable, span, 1), 0)
        codes = np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 253)).astype(np.uint8)
        codes[~np.isfinite(tiles)] = 254
        return codes

    def stats_uncompressed(reduced):
        buffer = io.BytesIO()
        np.savez(buffer, stats=np.asarray(reduced["stats"], np.float32),
                 ranges=np.asarray(reduced["ranges"], np.float32),
                 channels=np.asarray(reduced["channels"], np.int32))
        return buffer.getvalue()

    variants = {}
    records = [(r, captured.reduced[r.path]) for r in captured.records]
    for label, fn in (
            ("quantize (package, float64)",
             lambda: [rendering.quantize(d["tiles"], d["ranges"]) for _, d in records]),
            ("quantize in float32",
             lambda: [quantize32(d["tiles"], d["ranges"]) for _, d in records]),
            ("encode_statistics (package, savez_compressed)",
             lambda: [rendering.encode_statistics(d) for _, d in records]),
            ("statistics with np.savez (no zlib)",
             lambda: [stats_uncompressed(d) for _, d in records])):
        variants[label] = median([timed_call(fn) for _ in range(repeats)])
    variants["statistics blobs savez_compressed bytes"] = sum(
        len(rendering.encode_statistics(d)) for _, d in records)
    variants["statistics blobs savez (no zlib) bytes"] = sum(
        len(stats_uncompressed(d)) for _, d in records)
    codes = [(r, rendering.tile_feature_maps(rendering.quantize(d["tiles"], d["ranges"]),
                                             r.layout)) for r, d in records]
    for level in (1, 6):
        grids = [g for _, gs in codes for g in gs]
        variants["encode_png zlib level %d" % level] = median(
            [timed_call(lambda: [rendering.encode_png(g, level) for g in grids])
             for _ in range(repeats)])
        variants["encode_png zlib level %d bytes" % level] = sum(
            len(rendering.encode_png(g, level)) for g in grids)
    out["render"] = {"median_s": median(times), "stages_s": dict(stages), "zlib_s": zlib_s,
                     "top_leaves_s": dict(leaves.most_common(12)), "variants": variants}
    table = Table(title="render_capture on %s: %.1f ms median (cProfile, per call)"
                        % (model.name, median(times) * 1e3))
    table.add_column("stage / variant")
    table.add_column("time", justify="right")
    for name, seconds in stages.most_common():
        table.add_row(name, "%.1f ms" % (seconds * 1e3))
    table.add_row("  of which zlib/zip compress (leaf)", "%.1f ms" % (zlib_s * 1e3),
                  end_section=True)
    for name, seconds in leaves.most_common(8):
        table.add_row("leaf " + name, "%.1f ms" % (seconds * 1e3))
    table.add_row("", "", end_section=True)
    for name, value in variants.items():
        table.add_row(name, ("%.2f MiB" % (value / MIB)) if name.endswith("bytes")
                      else "%.1f ms" % (value * 1e3))
    console.print(table)


def timed_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def section_bytes(model, x1, x4, out):
    """Exact rendered bytes per step for several caps, reducing eagerly from full outputs."""
    rows = []
    full = {1: extraction.get_activations(model, x1), 4: extraction.get_activations(model, x4)}
    for max_channels, max_tile in ((64, 32), (64, 24), (64, 16), (32, 32), (32, 16), (16, 32),
                                   (16, 16)):
        options = layout_lib.RenderOptions(max_channels=max_channels, max_tile=max_tile)
        for probe, activations in full.items():
            png = blobs = 0
            for path, value in activations.items():
                plan = layout_lib.plan_layout(value.shape[1:], options)
                reduced = {k: v.numpy() for k, v in reduction.reduce_layer_output(
                    tf.constant(value), plan, options).items()}
                rendered = rendering.render_layer(reduced, plan)
                png += sum(len(b) for b in rendered[:-1])
                blobs += len(rendered[-1])
            rows.append({"max_channels": max_channels, "max_tile": max_tile, "probe": probe,
                         "png_bytes": png, "statistics_bytes": blobs, "total": png + blobs})
        console.log("bytes: max_channels=%d max_tile=%d done" % (max_channels, max_tile))
    out["bytes"] = rows
    table = Table(title="Rendered bytes per step on %s (all default layers; event-file overhead "
                        "excluded)" % model.name)
    for column in ("max_channels", "max_tile", "probe", "PNGs", "statistics blobs", "total",
                   "≤ 5 MiB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["max_channels"]), str(row["max_tile"]), str(row["probe"]),
                      "%.2f MiB" % (row["png_bytes"] / MIB),
                      "%.2f MiB" % (row["statistics_bytes"] / MIB),
                      "%.2f MiB" % (row["total"] / MIB),
                      "yes" if row["total"] <= 5 * MIB else "no")
    console.print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=list(MODELS))
    parser.add_argument("--sections", default="trace,capture,tiles,callback,render,bytes")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--variants", default=None,
                        help="capture section: only variants whose label contains one of "
                             "these comma-separated words")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "profile_writer.json"))
    args = parser.parse_args()
    build, shape = MODELS[args.model]
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(0)
    x1 = rng.random((1,) + shape, dtype=np.float32)
    x4 = rng.random((4,) + shape, dtype=np.float32)
    arrays = extraction.prepare_probe(model, x1)
    out = {"model": args.model, "loadavg_start": loadavg(), "tensorflow": tf.__version__,
           "keras": keras.__version__}
    sections = args.sections.split(",")
    if "trace" in sections:
        section_trace(model, arrays, out)
    if "capture" in sections:
        section_capture(model, arrays, x1, args.repeats, out,
                        args.variants.split(",") if args.variants else None)
    if "tiles" in sections:
        section_tiles(model, arrays, x1, max(3, args.repeats // 3), out)
    if "callback" in sections:
        section_callback(out)
    if "render" in sections:
        section_render(model, arrays, args.repeats, out)
    if "bytes" in sections:
        section_bytes(model, x1, x4, out)
    out["loadavg_end"] = loadavg()
    console.print("load average at start %s, at end %s" % (out["loadavg_start"],
                                                          out["loadavg_end"]))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as handle:
        json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
