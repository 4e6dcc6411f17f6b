"""The live probe: a run's saved model answers one drawn or uploaded input.

The plugin imports this module on the first live request only: it is the one part of the
plugin that imports TensorFlow and Keras. An answer goes through the same capture, reduction
and rendering as a logged step (log.capture, steps.render_layers), so a live
grid and a logged one can never differ for the same input.

Safety on a shared TensorBoard: models are loaded with Keras's safe mode (a `Lambda` layer or
any class Keras does not ship is refused, never run) and without compiling; a file is read
once through one descriptor, so a save landing meanwhile is seen whole or not at all.
"""

import collections
import concurrent.futures
import io
import os
import tempfile
import threading
import time
import zipfile

import keras
import numpy as np
import tensorflow as tf

from tb_activations.format import model_file
from tb_activations.keras import capture as capture_lib
from tb_activations.keras import log
from tb_activations.rendering import steps


class LiveError(Exception):
    """A live request that cannot be answered; `code` is its HTTP status."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class LoadedModel:
    """A loaded model, the file it came from (`stamp`), and the lock of its one inference."""

    def __init__(self, model, record, stamp):
        self.model = model
        self.record = record
        self.stamp = stamp
        self.lock = threading.Lock()


def _stamp(status):
    return (status.st_ino, status.st_mtime_ns, status.st_size)


def _read_whole(path):
    """(bytes, stamp) of one version of the file, however often it is replaced meanwhile."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), _stamp(os.fstat(handle.fileno()))
    except FileNotFoundError:
        raise LiveError(404, "this run has no %s" % model_file.MODEL_FILE) from None
    except OSError as error:
        raise LiveError(404, "cannot read %s: %s" % (model_file.MODEL_FILE, error)) from None


def load_model(data, stamp):
    """A LoadedModel from the bytes of a `.keras` file; LiveError saying why it is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            record = model_file.read_record(archive)
    except (zipfile.BadZipFile, ValueError) as error:
        raise LiveError(422, "%s is not a readable Keras model file: %s"
                        % (model_file.MODEL_FILE, error)) from None
    # Keras loads `.keras` files by path only; the copy is private to this process.
    with tempfile.TemporaryDirectory(prefix="tb-activations-live-") as folder:
        copy = os.path.join(folder, model_file.MODEL_FILE)
        with open(copy, "wb") as handle:
            handle.write(data)
        try:
            model = keras.saving.load_model(copy, compile=False, safe_mode=True)
        except Exception as error:
            raise LiveError(422, "the saved model cannot be loaded safely, so it is not run: %s "
                                 "(Lambda layers and custom classes are refused)"
                            % capture_lib.trace_error_text(error)) from None
    if not isinstance(model, keras.Model):
        raise LiveError(422, "%s holds a %s, not a model"
                        % (model_file.MODEL_FILE, type(model).__name__))
    return LoadedModel(model, record, stamp)


def input_specs(model):
    """[(name, shape without batch, dtype)] of a loaded model's inputs, in call order."""
    inputs = capture_lib.model_inputs(model)
    if inputs is None:
        raise LiveError(422, "model %r does not say what inputs it takes (a subclassed model "
                             "saved without a build): the live probe needs a Functional or "
                             "Sequential model" % model.name)
    specs = tf.nest.flatten(inputs)
    names = log.input_names(model, inputs)
    return [(name, list(spec.shape[1:]), keras.backend.standardize_dtype(spec.dtype))
            for name, spec in zip(names, specs)]


def describe(loaded):
    """The live_info fields of a loaded model whose record does not describe its inputs (a
    model the user saved there): the input range is assumed to be 0..1 for float inputs
    and 0..255 for integer ones, and said to be assumed."""
    inputs = [{"name": name, "shape": shape, "dtype": dtype, "low": 0.0,
               "high": 255.0 if np.dtype(dtype).kind in "iub" else 1.0, "range_known": False}
              for name, shape, dtype in input_specs(loaded.model)]
    return dict(model_file.record_facts(loaded.record), inputs=inputs,
                outputs=capture_lib.describe_outputs(loaded.model))


def parse_sample(body, specs):
    """The model's input structure (a batch of one) from a request's {"inputs": {...}}."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise LiveError(400, 'the body must be {"inputs": {"<input name>": <one sample as '
                             'nested lists>}}')
    given = body["inputs"]
    names = [name for name, _, _ in specs]
    if sorted(given) != sorted(names):
        raise LiveError(400, "inputs %s were sent, the model takes %s"
                        % (sorted(given), sorted(names)))
    arrays = []
    for name, shape, dtype in specs:
        try:
            array = np.array(given[name])
        except ValueError:
            raise LiveError(400, "input %r is not a rectangular nested list of numbers of shape "
                                 "%s" % (name, shape)) from None
        if array.dtype.kind not in "iuf":
            raise LiveError(400, "input %r must hold only numbers (%s), got %s values"
                            % (name, dtype, array.dtype.kind == "b" and "true/false"
                               or "non-numeric"))
        if array.ndim != len(shape) or any(e is not None and e != a
                                           for e, a in zip(shape, array.shape)):
            raise LiveError(400, "input %r has shape %s, the model expects one sample of shape %s"
                            % (name, list(array.shape), shape))
        if not np.all(np.isfinite(array)):
            raise LiveError(400, "input %r holds NaN or infinite values" % name)
        if np.dtype(dtype).kind in "iub" and np.any(array != np.round(array)):
            raise LiveError(400, "input %r must hold integers (%s)" % (name, dtype))
        with np.errstate(over="ignore", invalid="ignore"):
            converted = array.astype(dtype)
        if converted.dtype.kind == "f" and not np.all(np.isfinite(converted)):
            raise LiveError(400, "input %r holds values too large for %s" % (name, dtype))
        arrays.append(converted[None])
    return arrays


def answer_sample(loaded, sample, options, drawn=None, logged=None):
    """(layers [(content, grid PNG or None, reduced arrays)], model outputs as numpy) for
    `sample`, the arrays of parse_sample. Only the layers whose paths are in `drawn` (every
    layer if None) are rendered; the others carry their statistics only. `logged`: the
    layer paths the run logged; when the model has some of them, the answer keeps only
    those (a batch of one cannot tell an output with no batch axis, like a position table
    (1, T, D), from one that has, so the probe pass alone would answer with more)."""
    inputs = capture_lib.model_inputs(loaded.model)
    if isinstance(inputs, dict):
        sample = dict(zip(log.input_names(loaded.model, inputs), sample))
    elif len(sample) == 1:
        sample = sample[0]
    arrays = capture_lib.prepare_probe(loaded.model, sample)
    captured = log.capture(loaded.model, arrays, None, options, model_outputs=True)
    records = captured.records
    if logged and any(record.path in logged for record in records):
        records = [record for record in records if record.path in logged]
    known = {record.path for record in records}
    unknown = sorted(set(drawn or ()) - known)
    if unknown:
        raise LiveError(400, "the model has no layer %s; its layers are %s"
                        % (", ".join(map(repr, unknown)), ", ".join(sorted(known))))
    rendered = {content["layer"]: pictures[0] for content, pictures
                in steps.render_layers(captured, statistics=False, only=drawn or known)}
    layers = [(steps.layer_content(record, 1, captured.options), rendered.get(record.path),
               captured.reduce()[record.path]) for record in records]
    return layers, [output[0] for output in captured.model_outputs]


class LiveModels:
    """The few models live requests were last answered with, each reloaded when its file
    changes, each running one inference at a time, each request bounded in time."""

    def __init__(self, capacity=3, time_limit=60.0):
        self._capacity = capacity
        self._time_limit = time_limit
        self._models = collections.OrderedDict()
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="tba-live")

    def get(self, path):
        """The LoadedModel of `path`'s current version."""
        try:
            stamp = _stamp(os.stat(path))
        except FileNotFoundError:
            raise LiveError(404, "this run has no %s" % model_file.MODEL_FILE) from None
        with self._lock:
            loaded = self._models.get(path)
            if loaded is not None and loaded.stamp == stamp:
                self._models.move_to_end(path)
                return loaded
        loaded = load_model(*_read_whole(path))
        with self._lock:
            self._models[path] = loaded
            self._models.move_to_end(path)
            while len(self._models) > self._capacity:
                self._models.popitem(last=False)
        return loaded

    def answer(self, path, body, options, drawn=None, logged=None):
        """(loaded model, layers, outputs) of answer_sample for one request's body;
        LiveError 503 past the time limit."""
        deadline = time.monotonic() + self._time_limit
        loaded = self.get(path)
        sample = parse_sample(body, input_specs(loaded.model))

        def run():
            if not loaded.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise LiveError(503, "the model is busy answering another input; try again")
            try:
                return answer_sample(loaded, sample, options, drawn, logged)
            finally:
                loaded.lock.release()

        future = self._pool.submit(run)
        try:
            layers, outputs = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            raise LiveError(503, "the model took longer than %g s to answer" % self._time_limit)
        except LiveError:
            raise
        except ValueError as error:  # the model's own refusal of this input
            raise LiveError(400, capture_lib.trace_error_text(error)) from None
        except Exception as error:  # whatever the model does, TensorBoard keeps serving
            raise LiveError(500, "the model failed on this input: %s"
                            % capture_lib.trace_error_text(error)) from None
        return loaded, layers, outputs
