"""`ActivationsCallback`: log activations during `model.fit`, off the training thread.

The training thread pays for the probe's forward pass; the in-graph reduction, the copy to
numpy, tiling, PNG encoding and writing happen on a background thread behind a bounded
queue, into an event file of our own (`events`), each step handed to the OS whole, so
whatever was written survives a crash.
"""

import os
import warnings

import keras

from tb_activations.capture import token_grids
from tb_activations.capture.records import check_attention_flag
from tb_activations.format import model_file
from tb_activations.format import tokens as tokens_lib
from tb_activations.keras import capture as capture_lib
from tb_activations.keras import distribute
from tb_activations.keras import log as log_lib
from tb_activations.keras import reference as reference_lib
from tb_activations.rendering import steps as steps_lib
from tb_activations.writing import events
from tb_activations.writing import failures
from tb_activations.writing.background import BackgroundWriter


class ActivationsCallback(keras.callbacks.Callback):
    """Logs every selected layer's activations for a fixed probe batch during `fit`.

    Args:
      log_dir: the run directory, or a URL (gs://, s3://, hdfs://: see `events`). The same
        `log_dir` as `keras.callbacks.TensorBoard` is fine: that callback writes into its
        `train/` and `validation/` subfolders, this one into `log_dir` itself, so the two
        never share an event file.
      probe: the inputs to look at, batch first (a few samples, e.g. `x_val[:4]`); a list or
        dict for several inputs.
      layers: which layers (see `get_activations`); default every layer that computes a
        new value.
      update_freq: "epoch", "batch" (every batch), or an int N to log every N training
        batches, as keras.callbacks.TensorBoard spells it. Step 0 (the
        untrained model) is logged at train begin; steps are the optimizer's iterations,
        as the TensorBoard callback uses for batch-level logging.
      save_model: also save the model to `log_dir/model.keras` at train begin, at every
        epoch end and at train end, for the tab's live probe ("Try an input"). Each save
        replaces the file atomically and records its step, the class names and the probe's
        value range per input. A failed save warns and training goes on. Not with a URL
        log_dir: the live probe reads local run directories only.
      class_names: optional names of the model's output classes, shown by the live probe.
      max_queue: captures waiting to be written before training waits for the writer. With
        the default 1, a crash (even SIGKILL) loses at most the 2 latest logged steps: the
        one being written and the one waiting. A waiting capture holds the selected layers'
        outputs for the probe (up to 128 MiB; larger ones are reduced before they wait).
      on_error: "warn" (default): a failure to capture or write activations during training
        (a full disk, say) warns once and stops logging them for the rest of the run, and
        training goes on; "raise" ends `fit` with the error instead. Errors in the
        arguments (a probe the model cannot take, a selection that matches nothing) raise at
        train begin either way.
      token_grid: which token outputs (B, prefix + rows * columns, D) of a vision
        transformer are drawn over their patch grid: None (default: where a patch Conv2D,
        strides == kernel_size and padding "valid", showed one), False (never), (rows,
        columns), or {layer path or glob: (rows, columns), False or None}; checked here.
      attention: every MultiHeadAttention's probabilities drawn as one tile per head
        (`path:attention`), and over the patch grid (`path:attention_map`) where its keys
        lie on one (default True).
      token_labels: names of the sequence positions, stored once per run for the tab and
        export: a list (one per probe sample) of lists of strings, or a tokenizer
        (`convert_ids_to_tokens`, e.g. Hugging Face's) that names the probe's `input_ids`
        (or its first integer input). Checked here, and against the probe at train begin.
      reference: a reference set to find what each unit responds to (keras/reference.py):
        (x, y) with labels (class ids or one-hot), x alone, or a re-iterable of (x, y) or x
        batches (a tf.data.Dataset, a PyDataset). Per layer and kept unit (max_channels,
        channel_selection) its `reference_k` top inputs, zero fraction and per-class means
        are stored at each reference step, the inputs' thumbnails and labels once
        (`class_names` name the label ids).
      reference_every: when to pass over the reference set, besides at train begin: "epoch"
        (default, each epoch end), an int N (every N training batches), or "end" (train end).
      reference_k: top inputs kept per unit (default 9).
      reference_batch_size: batch size of the reference pass (default 64).
      **options: RenderOptions fields: max_channels, channel_selection, max_tile,
        max_depth_slices, max_image, columns.
    """

    def __init__(self, log_dir, probe, layers=None, update_freq="epoch", save_model=False,
                 class_names=None, max_queue=1, on_error="warn", token_grid=None,
                 attention=True, token_labels=None, reference=None, reference_every="epoch",
                 reference_k=9, reference_batch_size=reference_lib.DEFAULT_BATCH_SIZE,
                 **options):
        super().__init__()
        if reference_every not in ("epoch", "end") and (
                isinstance(reference_every, bool) or not isinstance(reference_every, int)
                or reference_every < 1):
            raise ValueError('reference_every must be "epoch", "end" or a positive number of '
                             'batches, got %r' % (reference_every,))
        if reference is not None:
            reference_lib.check_reference(reference, repeated=True)
        self.reference = reference
        self.reference_every = reference_every
        self.reference_k = reference_k
        self.reference_batch_size = reference_batch_size
        self._last_reference_step = None
        self.token_grid = token_grids.resolve_token_grid_option(token_grid)
        self.attention = check_attention_flag(attention)
        self.token_labels = tokens_lib.check_option(token_labels)
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool)
                                       or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError('update_freq must be "epoch", "batch" or a positive number of '
                             'batches, got %r' % (update_freq,))
        if not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError("max_queue must be a positive int, got %r" % (max_queue,))
        failures.check_on_error(on_error)
        if probe is None:
            raise ValueError("the probe is None: pass a batch of inputs, e.g. x_val[:4]")
        if class_names is not None:
            class_names = list(class_names)
            if not all(isinstance(name, str) for name in class_names):
                raise TypeError("class_names must be strings, got %r" % (class_names,))
        self.log_dir = os.fspath(log_dir)
        if save_model and events.is_url(self.log_dir):
            raise ValueError("save_model=True keeps log_dir/model.keras for the tab's live probe, "
                             "which reads local run directories only, and log_dir %r is a URL: "
                             "pass save_model=False or a local log_dir" % self.log_dir)
        self.probe = probe
        self.layers = layers
        self.update_freq = update_freq
        self.save_model = save_model
        self.class_names = class_names
        self.max_queue = max_queue
        self.on_error = on_error
        # Keras runs batch hooks off the training loop's thread only when every callback says
        # it may (or keeps the default hooks); logging per epoch, this one's do nothing.
        self.async_safe = update_freq == "epoch" and not (
            reference is not None and isinstance(reference_every, int))
        self.options = steps_lib.render_options(**options)
        self._arrays = None
        self._background = None
        self._last_step = None
        self._save_failed = False

    def _global_step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _log(self, step):
        """Captures and queues `step`; a failure stops logging ("warn") or ends fit ("raise")."""
        if self._background is None or step == self._last_step:
            return
        try:
            captured = log_lib.capture(self.model, self._arrays, self.layers, self.options,
                                       token_grid=self.token_grid, attention=self.attention)
            self._background.put(lambda: steps_lib.render_capture(captured), step)
        except Exception as error:
            self._fail(error)
        self._last_step = step

    def _log_reference(self, step, first=False):
        """Passes over the reference set at `step` and queues the step; `first` (train begin):
        with the reference inputs, and errors (a reference set the model cannot take) raise
        whatever on_error says."""
        if (self.reference is None or self._background is None
                or step == self._last_reference_step):
            return
        self._last_reference_step = step

        def rendered():
            return reference_lib.reference_step(
                self.model, self.reference, self.layers, self.options, self.reference_k,
                self.reference_batch_size, self.class_names, with_inputs=first, repeated=True)

        if first:
            self._background.put(rendered(), step)
            return
        try:
            self._background.put(rendered(), step)
        except Exception as error:
            self._fail(error)

    def _log_epoch_end(self, epoch):
        """Which step `epoch` ended at, so the tab can say "epoch E · step S"."""
        if self._background is None:
            return
        try:
            self._background.put(steps_lib.render_epoch_end(epoch), self._global_step())
        except Exception as error:
            self._fail(error)

    def _fail(self, error):
        background, self._background = self._background, None
        try:
            failures.fail(self.on_error, error, self.log_dir, stacklevel=2)
        finally:
            if background is not None:
                background.abandon()

    def _save_model(self):
        if not self.save_model or self._save_failed:
            return
        try:
            model_file.save_model(self.model, self.log_dir, model_record(
                self.model, self._arrays, self._global_step(), self.class_names))
        except Exception as error:  # a monitoring tool must not end the training run
            self._save_failed = True
            warnings.warn("tb-activations could not save %s, and stops saving it for this run: "
                          "%s" % (model_file.model_path(self.log_dir), error), stacklevel=2)

    def on_train_begin(self, logs=None):
        if not distribute.is_chief():
            return
        self._arrays = capture_lib.prepare_probe(self.model, self.probe)
        # Traced here, outside _log's guard, so a selection or probe the model cannot take
        # raises at train begin whatever on_error says.
        capture_lib.probe_for(self.model, self._arrays, self.layers, self.options,
                              token_grid=self.token_grid, attention=self.attention)
        labels = log_lib.probe_token_labels(self.model, self._arrays, self.token_labels)
        self._last_step = None
        self._save_failed = False
        step = self._global_step()
        try:
            self._background = BackgroundWriter(events.EventFileWriter(self.log_dir),
                                                self.max_queue)
            self._background.put(log_lib.probe_rendered(
                self.model, self._arrays, self.options.max_image, labels), step)
        except ValueError:  # a log_dir URL that no installed file system writes
            raise
        except Exception as error:
            self._fail(error)
        self._log(step)
        self._last_reference_step = None
        self._log_reference(step, first=True)
        self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        if self._background is None:
            return
        if self.update_freq != "epoch" or isinstance(self.reference_every, int):
            step = self._global_step()
            if self.update_freq != "epoch" and step % self.update_freq == 0:
                self._log(step)
            if isinstance(self.reference_every, int) and step % self.reference_every == 0:
                self._log_reference(step)

    def on_epoch_end(self, epoch, logs=None):
        if self._arrays is None:
            return
        if self.update_freq == "epoch":
            self._log(self._global_step())
        if self.reference_every == "epoch":
            self._log_reference(self._global_step())
        self._log_epoch_end(epoch)
        self._save_model()

    def on_train_end(self, logs=None):
        if self._arrays is None:
            return
        if self.reference_every == "end":
            self._log_reference(self._global_step())
        self._save_model()
        if self._background is not None:
            try:
                self._background.close()
                self._background = None
            except Exception as error:
                self._fail(error)


def model_record(model, arrays, step, class_names):
    """What the live probe needs besides the weights: the step, class names, and per input its
    shape and the probe's value range (a drawn picture is mapped into it)."""
    names = log_lib.input_names(model, arrays)
    inputs = [dict(model_file.value_range(array), name=name, shape=list(array.shape[1:]))
              for name, array in zip(names, keras.tree.flatten(arrays))]
    return {"step": step, "class_names": class_names, "inputs": inputs,
            "outputs": capture_lib.describe_outputs(model)}
