"""Writing: log_activations under a tf.summary writer, and ActivationsCallback in a real fit.

Event files are read back raw (TensorBoard's EventFileLoader: protos as stored, before any
data-class migration) so these tests check what is on disk, not what the reader makes of it.
"""

import collections
import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import warnings
import zipfile
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from tensorboard.context import RequestContext
from tensorboard.util import tensor_util

from tb_activations import ActivationsCallback
from tb_activations import log_activations
from tb_activations import read_activations
from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.format import model_file
from tb_activations.keras import callback as callback_lib
from tb_activations.keras import capture
from tb_activations.keras import log
from tb_activations.reading import reader
from tb_activations.rendering import grid_images
from tb_activations.rendering import overview
from tb_activations.rendering import steps as steps_lib
from tb_activations.writing import background
from tb_activations.writing import destinations
from tb_activations.writing import events
from tests import models
from tests.full_disk import fill

Value = collections.namedtuple("Value", "tag step metadata blobs")


def written(log_dir):
    """Every summary value in the event files directly inside `log_dir`, in write order."""
    values = []
    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                blobs = tensor_util.make_ndarray(value.tensor).tolist()
                values.append(Value(value.tag, event.step, value.metadata, blobs))
    return values


def steps_by_tag(values):
    """{tag: [steps]} of the layer and probe tags (the overview and epoch tags have tests of
    their own)."""
    steps = collections.defaultdict(list)
    for value in values:
        if value.tag not in (metadata.OVERVIEW_TAG, metadata.EPOCH_TAG):
            steps[value.tag].append(value.step)
    return dict(steps)


def first_metadata(values):
    found = {}
    for value in values:
        if value.metadata.plugin_data.plugin_name:
            found.setdefault(value.tag, value.metadata)
    return found


@pytest.fixture
def cnn():
    keras.utils.set_random_seed(0)
    return models.small_cnn(), models.digits(3)[0]


# ---------------------------------------------------------------- log_activations


def test_log_activations_writes_one_tag_per_layer(tmp_path, cnn):
    model, x = cnn
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert log_activations(model, x, step=7) is True
    values = written(tmp_path)
    layer_tags = ["activations/" + path for path in models.SMALL_CNN_DRAWN]
    assert sorted(steps_by_tag(values)) == sorted(layer_tags + ["activations_probe/image"])
    assert all(value.step == 7 for value in values)
    found = first_metadata(values)
    activations = capture.get_activations(model, x)
    for order, path in enumerate(models.SMALL_CNN_DRAWN):
        meta = found["activations/" + path]
        assert meta.plugin_data.plugin_name == "activations"
        assert meta.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
        content = json.loads(meta.plugin_data.content)
        plan = layout.plan_layout(activations[path].shape[1:])
        assert content == dict(plan.to_content(), version=metadata.PROTOCOL_VERSION,
                               kind="layer", layer=path,
                               layer_class=type(model.get_layer(path)).__name__,
                               order=order, samples=3,
                               caps=dataclasses.asdict(layout.RenderOptions()))
        assert content["output_shape"] == [None] + list(activations[path].shape[1:])
    conv = json.loads(found["activations/conv1"].plugin_data.content)
    assert (conv["layout"], conv["layer_class"]) == ("channels", "Conv2D")
    assert conv["channels_total"] == 8
    assert (conv["rows"], conv["columns"], conv["tile_height"]) == (3, 3, 16)
    by_tag = {value.tag: value for value in values}
    for path in models.SMALL_CNN_DRAWN:
        blobs = by_tag["activations/" + path].blobs
        assert len(blobs) == 4  # a PNG per probe sample, then the statistics
        content = json.loads(found["activations/" + path].plugin_data.content)
        for png in blobs[:-1]:
            assert grid_images.decode_png(png).shape == (
                content["rows"] * content["tile_height"] + content["rows"] - 1,
                content["columns"] * content["tile_width"] + content["columns"] - 1)
        stats = grid_images.decode_statistics(blobs[-1], content,
                                            reader.layer_layout(content))["stats"]
        assert stats.shape == (3, content["channels_kept"], 7)
        assert content["channels_kept"] == min(content["channels_total"], 64)
        channel_axes = tuple(range(1, activations[path].ndim - 1))
        np.testing.assert_allclose(stats[..., 1], activations[path].max(axis=channel_axes),
                                   rtol=1e-5, atol=1e-6)


def test_probe_is_stored_once_per_writer(tmp_path, cnn):
    model, x = cnn
    writer = tf.summary.create_file_writer(str(tmp_path / "a"))
    with writer.as_default():
        assert log_activations(model, x, step=0)
        assert log_activations(model, x, step=1)
    with writer.as_default():
        assert log_activations(model, x, step=2)
    writer.flush()
    with tf.summary.create_file_writer(str(tmp_path / "b")).as_default():
        assert log_activations(model, x, step=5)
    first = steps_by_tag(written(tmp_path / "a"))
    assert first["activations_probe/image"] == [0]
    assert first["activations/conv1"] == [0, 1, 2]
    assert steps_by_tag(written(tmp_path / "b"))["activations_probe/image"] == [5]
    probe = {value.tag: value for value in written(tmp_path / "a")}["activations_probe/image"]
    content = json.loads(first_metadata(written(tmp_path / "a"))[probe.tag].plugin_data.content)
    assert content == {"version": metadata.PROTOCOL_VERSION, "kind": "probe", "input": "image",
                       "shape": [None, 16, 16, 1], "samples": 3}
    for png, sample in zip(probe.blobs, x):
        np.testing.assert_array_equal(grid_images.decode_png(png), grid_images.probe_picture(sample))


def test_only_image_like_inputs_are_stored_as_probes(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path / "multi")).as_default():
        assert log_activations(models.multi_io(), list(models.multi_io_probe()), step=0)
    with tf.summary.create_file_writer(str(tmp_path / "tokens")).as_default():
        assert log_activations(models.sequence_attention(), models.sequence_probe(), step=0)
    multi = steps_by_tag(written(tmp_path / "multi"))
    assert [tag for tag in multi if tag.startswith("activations_probe/")] == [
        "activations_probe/image"]
    tokens = steps_by_tag(written(tmp_path / "tokens"))
    assert not [tag for tag in tokens if tag.startswith("activations_probe/")]
    assert {"activations/attention", "activations/attention:1", "activations/embed"} <= set(
        tokens)


def test_without_a_default_writer_nothing_is_written(tmp_path, cnn):
    model, x = cnn
    assert log_activations(model, x, step=0) is False
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(), tf.summary.record_if(False):
        assert log_activations(model, x, step=0) is False
    writer.flush()
    assert written(tmp_path) == []


def test_every_writer_writes_the_values_tf_summary_write_writes(tmp_path, cnn):
    """A step is one event (one record) of every tag's value, each value byte for byte the
    one tf.summary.write makes (which writes an event per tag)."""
    model, x = cnn
    captured = log.capture(model, capture.prepare_probe(model, x))
    rendered = steps_lib.render_capture(captured) + steps_lib.render_epoch_end(3)

    def summary_events(directory):
        found = []
        for path in sorted(glob.glob(os.path.join(str(directory), "events.out.tfevents.*"))):
            found += [event for event in event_file_loader.EventFileLoader(path).Load()
                      if event.HasField("summary")]
        return found

    def values(found):
        return [(event.step, value.SerializeToString(deterministic=True))
                for event in found for value in event.summary.value]

    with tf.summary.create_file_writer(str(tmp_path / "default")).as_default() as writer:
        assert destinations.write_rendered(rendered, 12) is True
        with tf.summary.record_if(False):
            assert destinations.write_rendered(rendered, 13) is False
        writer.flush()
    with events.EventFileWriter(tmp_path / "events") as writer:
        assert destinations.write_rendered(rendered, 12, writer) is True
    with tf.summary.create_file_writer(str(tmp_path / "tf")).as_default() as writer:
        for tag, summary_metadata, blobs in rendered:
            assert tf.summary.write(tag, tf.constant(blobs), step=12,
                                    metadata=summary_metadata)
        writer.flush()
    expected = values(summary_events(tmp_path / "tf"))
    assert len(expected) == len(rendered)
    for directory in ("default", "events"):
        assert len(summary_events(tmp_path / directory)) == 1
        assert values(summary_events(tmp_path / directory)) == expected
    assert destinations.write_rendered(rendered, 14) is False  # no default writer
    with tf.summary.create_noop_writer().as_default():
        assert destinations.write_rendered(rendered, 14) is False
    with pytest.raises(TypeError, match="EventFileWriter.*not a str"):
        destinations.write_rendered(rendered, 14, str(tmp_path))


def test_non_chief_worker_writes_nothing(tmp_path, cnn, monkeypatch):
    model, x = cnn
    monkeypatch.setenv("TF_CONFIG", json.dumps({
        "cluster": {"chief": ["localhost:1"], "worker": ["localhost:2"]},
        "task": {"type": "worker", "index": 0}}))
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        assert log_activations(model, x, step=0) is False
    writer.flush()
    assert written(tmp_path) == []


def test_step_from_the_default_step(tmp_path, cnn):
    model, x = cnn
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        with pytest.raises(ValueError, match="no step"):
            log_activations(model, x)
        tf.summary.experimental.set_step(12)
        try:
            assert log_activations(model, x)
        finally:
            tf.summary.experimental.set_step(None)
        assert log_activations(model, x, step=np.int64(13))
        assert log_activations(model, x, step=tf.constant(14, tf.int64))
        for step, error in ((2.5, TypeError), (True, TypeError), (-1, ValueError)):
            with pytest.raises(error, match="step must be"):
                log_activations(model, x, step=step)
    assert steps_by_tag(written(tmp_path))["activations/logits"] == [12, 13, 14]


def test_render_options_reach_the_stored_tiling(tmp_path, cnn):
    model, x = cnn
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert log_activations(model, x, step=0, layers="conv2", max_channels=5, max_tile=6,
                               columns=5, channel_selection="top")
        with pytest.raises(TypeError, match="max_chanels"):
            log_activations(model, x, step=1, max_chanels=3)
    values = written(tmp_path)
    assert sorted(steps_by_tag(values)) == ["activations/conv2", "activations_probe/image"]
    content = json.loads(first_metadata(values)["activations/conv2"].plugin_data.content)
    assert (content["channels_total"], content["channels_shown"]) == (12, 5)
    assert (content["rows"], content["columns"], content["tile_height"]) == (1, 5, 6)
    assert (content["downscale"], content["channel_selection"]) == ([3, 3], "top")
    assert content["caps"] == {"max_channels": 5, "channel_selection": "top", "max_tile": 6,
                               "max_depth_slices": 8, "max_image": 256, "columns": 5}
    blob = {value.tag: value for value in values}["activations/conv2"].blobs[-1]
    chosen = grid_images.decode_statistics(blob, content, reader.layer_layout(content))["channels"]
    scores = np.abs(capture.get_activations(model, x)["conv2"]).mean(axis=(0, 1, 2))
    np.testing.assert_array_equal(chosen, np.argsort(-scores, kind="stable")[:5])


class Thin(keras.layers.Layer):
    """Keeps batch - 3 of its features: a batch of 3 leaves an empty axis, which can't be
    drawn."""

    def call(self, x):
        return x[:, :x.shape[0] - 3]


class DenseThen(keras.Model):
    """Subclassed: Dense, then `inner` on its output, which the model returns unless
    `side_branch` (an output that can't be the model's own, such as text)."""

    def __init__(self, inner, side_branch=False, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4, name="dense")
        self.inner = inner
        self.side_branch = side_branch

    def call(self, x):
        hidden = self.dense(x)
        output = self.inner(hidden)
        return hidden if self.side_branch else output


def test_an_undrawable_layer_is_skipped_with_a_warning_naming_it(tmp_path):
    model = DenseThen(Thin(name="thin"), name="thin_model")
    model(np.zeros((4, 6), "float32"))
    good, bad = np.ones((4, 6), "float32"), np.ones((3, 6), "float32")
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        assert log_activations(model, good, step=0)
        with pytest.warns(UserWarning, match=r"thin \(Thin\): cannot draw .* empty or unknown"):
            assert log_activations(model, bad, step=1)
        assert log_activations(model, good, step=2)
    steps = steps_by_tag(written(tmp_path))
    assert steps == {"activations/dense": [0, 1, 2], "activations/thin": [0, 2]}


class Positive(keras.layers.Layer):
    """Keeps as many features as the first sample has positive ones: an axis of unknown size."""

    def call(self, x):
        return x[:, :tf.reduce_sum(tf.cast(x[0] > 0, tf.int32))]


class AsText(keras.layers.Layer):
    def call(self, x):
        return tf.strings.as_string(x)


def test_a_layer_of_unknown_size_is_named_as_such(tmp_path):
    inputs = keras.Input((5,), name="vector")
    model = keras.Model(inputs, Positive(name="positive")(keras.layers.Dense(5, name="d")(inputs)))
    x = np.ones((2, 5), "float32")
    assert capture.get_activations(model, x)["positive"].shape[0] == 2  # drawable or not
    with tf.summary.create_file_writer(str(tmp_path / "asked")).as_default():
        with pytest.raises(capture.UndrawableLayerError,
                           match=r"cannot be drawn: positive \(Positive\): .*unknown axis"):
            log_activations(model, x, step=0, layers=["d", "positive"])
    assert written(tmp_path / "asked") == []
    with tf.summary.create_file_writer(str(tmp_path / "default")).as_default():
        with pytest.warns(UserWarning, match=r"positive \(Positive\).*unknown axis: \(None,\)"):
            assert log_activations(model, x, step=0)
    assert set(steps_by_tag(written(tmp_path / "default"))) == {"activations/d"}


def test_a_layer_with_text_output_is_skipped(tmp_path):
    model = DenseThen(AsText(name="text"), side_branch=True, name="with_text")
    x = np.ones((2, 4), "float32")
    model(x)
    assert capture.get_activations(model, x)["text"].dtype == object
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        with pytest.warns(UserWarning, match=r"text \(AsText\): its dtype string is not real"):
            assert log_activations(model, x, step=0)
        with pytest.raises(capture.UndrawableLayerError,
                           match=r"cannot be drawn: text \(AsText\): its dtype"):
            log_activations(model, x, step=1, layers=[AsText])
    assert steps_by_tag(written(tmp_path)) == {"activations/dense": [0]}


def test_a_capture_reduced_later_shows_the_model_as_it_was_when_captured(cnn):
    model, x = cnn
    arrays = capture.prepare_probe(model, x)
    deferred = log.capture(model, arrays)
    assert deferred._reduced is None  # the callback's writer thread reduces it, later
    at_capture = log.capture(model, arrays).reduce()
    model.set_weights([weight * 0.5 for weight in model.get_weights()])  # training goes on
    after = log.capture(model, arrays).reduce()
    assert any(not np.array_equal(after[path]["stats"], at_capture[path]["stats"])
               for path in at_capture)
    assert list(deferred.reduce()) == list(at_capture)
    for path, expected in at_capture.items():
        for key, value in expected.items():
            np.testing.assert_array_equal(deferred.reduce()[path][key], value, err_msg=path)


def test_a_capture_larger_than_the_deferral_limit_is_reduced_at_once(cnn, monkeypatch):
    model, x = cnn
    arrays = capture.prepare_probe(model, x)
    deferred = log.capture(model, arrays).reduce()
    monkeypatch.setattr(log, "MAX_DEFERRED_BYTES", 0)
    captured = log.capture(model, arrays)
    assert captured._layers is None and captured._reduced is not None
    for path, expected in deferred.items():
        np.testing.assert_array_equal(captured.reduce()[path]["tiles"], expected["tiles"])


def test_non_finite_activations_get_statistics_over_their_finite_values(cnn):
    model, x = cnn
    x = x.copy()
    x[1, 9, 9, 0] = np.inf
    reduced = log.capture(model, capture.prepare_probe(model, x)).reduce()
    field = {name: i for i, name in enumerate(metadata.STAT_FIELDS)}
    stats = reduced["conv1"]["stats"]
    assert stats[1, :, field["inf_count"]].sum() > 0  # around the Inf pixel
    assert np.isfinite(stats[..., field["mean"]]).all()  # over the finite values only
    assert not stats[[0, 2]][..., [field["nan_count"], field["inf_count"]]].any()
    assert reduced["logits"]["stats"][1, :, field["nan_count"]].sum() > 0  # Inf - Inf


def test_a_render_failure_in_the_background_writes_nothing_for_that_step(tmp_path, cnn):
    model, x = cnn
    arrays = capture.prepare_probe(model, x)
    good = log.capture(model, arrays)
    broken = log.capture(model, arrays)
    last = broken.records[-1].path
    broken.reduce()[last] = dict(broken.reduce()[last],
                                tiles=broken.reduce()[last]["tiles"][..., :-1])  # misfit tiles
    with pytest.raises(ValueError, match="do not fit"):
        steps_lib.render_capture(broken)
    writer = background.BackgroundWriter(events.EventFileWriter(tmp_path), 4)
    writer.put(lambda: steps_lib.render_capture(good), 0)
    writer.put(lambda: steps_lib.render_capture(broken), 1)
    with pytest.raises(RuntimeError, match="failed to write activations"):
        writer.close()
    steps = steps_by_tag(written(tmp_path))
    assert sorted(steps) == ["activations/" + path for path in sorted(models.SMALL_CNN_DRAWN)]
    assert all(value == [0] for value in steps.values())


# ---------------------------------------------------------------- ActivationsCallback


@pytest.mark.slow
def test_callback_logs_step_zero_then_every_epoch(trained_run):
    values = written(trained_run.log_dir)
    steps = steps_by_tag(values)
    assert trained_run.steps == [0, 4, 8]
    assert {tag: sorted(found) for tag, found in steps.items()} == dict(
        {"activations/" + path: [0, 4, 8] for path in trained_run.layers},
        **{"activations_probe/image": [0]})
    # Step 0 shows the untrained model, the last step the trained one.
    records = [record for record in read_activations(trained_run.log_dir, run=".")
               if record.layer == "conv1"]
    for step, expected in ((0, trained_run.initial), (8, trained_run.final)):
        for record in (r for r in records if r.step == step):
            np.testing.assert_allclose(record.statistics["max"],
                                       expected["conv1"][record.sample].max(axis=(0, 1)),
                                       rtol=1e-5, atol=1e-6)
    assert not np.allclose(trained_run.initial["conv1"], trained_run.final["conv1"])


@pytest.mark.slow
def test_callback_is_flushed_and_its_thread_gone_at_train_end(trained_run):
    assert not [thread for thread in threading.enumerate()
                if thread.name == "tb-activations-writer"]
    # The probe; every layer and the overview at 3 steps; the 2 epoch ends.
    assert len(written(trained_run.log_dir)) == 1 + 3 * (len(trained_run.layers) + 1) + 2


@pytest.mark.slow
def test_callback_shares_log_dir_with_keras_tensorboard(trained_run):
    log_dir = trained_run.log_dir
    assert os.path.isdir(os.path.join(log_dir, "train"))
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={"activations": 0})
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, log_dir)
    ctx = RequestContext()
    scalars = provider.list_scalars(ctx, experiment_id="", plugin_name="scalars")
    assert {"epoch_loss", "epoch_accuracy"} <= set(scalars["train"])
    losses = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars",
                                   downsample=100)["train"]["epoch_loss"]
    np.testing.assert_allclose([point.value for point in losses], trained_run.history["loss"],
                               rtol=1e-5)
    blobs = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="activations")
    assert list(blobs) == ["."]  # activations live in the root run only, scalars in train/
    assert len(blobs["."]) == len(trained_run.layers) + 3  # + the probe, overview and epochs


@pytest.mark.slow
def test_callback_saves_a_loadable_model(trained_run):
    path = os.path.join(trained_run.log_dir, "model.keras")
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(trained_run.probe, verbose=0),
                               trained_run.model.predict(trained_run.probe, verbose=0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_update_freq_batch_logs_every_batch_as_keras_spells_it(tmp_path):
    run = models.train_and_log(tmp_path, epochs=1, batch_size=64, samples=256,
                               update_freq="batch", tensorboard=False, max_channels=2)
    assert steps_by_tag(written(tmp_path))["activations/conv1"] == [0, 1, 2, 3, 4] == run.steps


@pytest.mark.slow
def test_callback_with_an_integer_update_freq(tmp_path):
    run = models.train_and_log(tmp_path, epochs=2, batch_size=64, samples=256, update_freq=3,
                               tensorboard=False, max_channels=4)
    assert run.steps == [0, 3, 6]
    steps = steps_by_tag(written(tmp_path))
    assert steps.pop("activations_probe/image") == [0]
    assert steps == {"activations/" + path: [0, 3, 6] for path in run.layers}
    assert not os.path.exists(os.path.join(tmp_path, "model.keras"))
    assert not os.path.exists(os.path.join(tmp_path, "train"))
    content = json.loads(first_metadata(written(tmp_path))["activations/conv2"]
                         .plugin_data.content)
    assert content["channels_shown"] == 4


@pytest.mark.parametrize("kwargs, error, word", [
    ({"update_freq": 0}, ValueError, "update_freq"),
    ({"update_freq": "every"}, ValueError, "update_freq"),
    ({"on_error": "ignore"}, ValueError, "on_error"),
    ({"update_freq": True}, ValueError, "update_freq"),
    ({"max_queue": 0}, ValueError, "max_queue"),
    ({"probe": None}, ValueError, "probe"),
    ({"max_tiles": 3}, TypeError, "max_tiles"),
])
def test_callback_rejects_bad_arguments(tmp_path, kwargs, error, word):
    arguments = dict(log_dir=tmp_path, probe=np.zeros((1, 16, 16, 1), "float32"))
    arguments.update(kwargs)
    with pytest.raises(error, match=word):
        ActivationsCallback(**arguments)


@pytest.mark.slow
def test_callback_rejects_a_probe_that_does_not_fit_before_training(tmp_path):
    model = models.small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    images, labels = models.digits(8)
    callback = ActivationsCallback(tmp_path, np.zeros((2, 8, 8, 1), "float32"))
    with pytest.raises(ValueError, match=r"\(None, 16, 16, 1\)"):
        model.fit(images, labels, epochs=1, verbose=0, callbacks=[callback])
    assert model.optimizer.iterations.numpy() == 0


@pytest.mark.slow
def test_callback_saves_the_model_at_train_begin_every_epoch_and_train_end(tmp_path):
    saves = []
    real_save = model_file.save_model

    def recording_save(model, run_dir, record):
        saves.append(record["step"])
        real_save(model, run_dir, record)

    with mock.patch.object(model_file, "save_model", recording_save):
        run = models.train_and_log(tmp_path, epochs=2, batch_size=64, samples=128,
                                   save_model=True, tensorboard=False,
                                   class_names=list("abcdefghij"))
    assert saves == [0, 2, 4, 4]  # train begin, two epoch ends, train end
    others = [name for name in os.listdir(tmp_path) if not name.startswith("events.out")]
    assert others == ["model.keras"]  # no partial file left beside it
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        record = model_file.read_record(archive)
    assert record["step"] == 4 and record["class_names"] == list("abcdefghij")
    (image,) = record["inputs"]
    assert image["name"] == "image" and image["shape"] == [16, 16, 1]
    assert (image["low"], image["high"]) == (float(run.probe.min()), float(run.probe.max()))
    assert record["outputs"] == [{"name": "logits", "shape": [10]}]


def test_a_failed_model_save_warns_once_and_training_goes_on(tmp_path):
    os.mkdir(tmp_path / "model.keras")  # a folder where the file should go: every save fails
    with pytest.warns(UserWarning, match="could not save .*model.keras.*stops saving"):
        run = models.train_and_log(tmp_path, epochs=2, batch_size=64, samples=128,
                                   save_model=True, tensorboard=False)
    assert len(run.history["loss"]) == 2
    assert os.path.isdir(tmp_path / "model.keras")
    assert [name for name in os.listdir(tmp_path) if "partial" in name] == []


def test_class_names_must_be_strings():
    with pytest.raises(TypeError, match="class_names must be strings"):
        callback_lib.ActivationsCallback("runs", np.zeros((1, 4)), class_names=[0, 1])


def test_every_logged_step_has_an_overview_of_its_layers(tmp_path, cnn):
    model, x = cnn
    with tf.summary.create_file_writer(str(tmp_path)).as_default():
        for step in (0, 3):
            assert log_activations(model, x, step=step)
    values = written(tmp_path)
    overviews = [value for value in values if value.tag == metadata.OVERVIEW_TAG]
    assert [value.step for value in overviews] == [0, 3]
    content = json.loads(overviews[0].metadata.plugin_data.content)
    assert content == {"kind": "overview", "version": metadata.PROTOCOL_VERSION}
    records = list(read_activations(str(tmp_path)))
    activations = capture.get_activations(model, x)
    for value in overviews:
        (blob,) = value.blobs
        layers = overview.decode_overview(blob)
        assert list(layers) == list(models.SMALL_CNN_DRAWN)
        for path, summary_ in layers.items():
            full = activations[path].reshape(len(x), -1, activations[path].shape[-1])
            all_zero = np.all(full == 0, axis=1)
            assert summary_["silent_channels"] == all_zero.sum(axis=1).tolist()
            assert summary_["dead_channels"] == int(np.all(all_zero, axis=0).sum())
            assert summary_["zero_fraction"] == pytest.approx(float(np.mean(full == 0)))
            ranges = np.stack([r.ranges for r in records
                               if r.layer == path and r.step == value.step])
            assert (summary_["low"], summary_["high"]) == pytest.approx(
                (ranges[..., 0].min(), ranges[..., 1].max()))


def test_a_custom_loop_on_a_filling_disk_warns_once_and_goes_on(tiny_disk, cnn):
    model, x = cnn
    log_dir = tiny_disk / "run"
    fill(tiny_disk, leaving=150_000)  # room for a few steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = [log_activations(model, x, step=step, log_dir=log_dir) for step in range(50)]
    failed = logged.index(False)
    assert 1 < failed and logged == [True] * failed + [False] * (50 - failed)
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1, [str(w.message) for w in caught]
    assert "No space left on device" in str(stops[0].message)
    assert "later calls return False at once" in str(stops[0].message)
    assert stops[0].filename == __file__  # points at the call in the loop
    # TensorBoard's loader reads the file to its end: whole steps only, the failed one cut off.
    steps = steps_by_tag(written(log_dir))
    assert steps["activations/conv1"] == list(range(failed))


def test_a_custom_loop_on_a_full_disk_raises_when_asked_to(tiny_disk, cnn):
    model, x = cnn
    fill(tiny_disk, leaving=0)
    with pytest.raises(events.EventFileError,
                       match=r"No space left on device: .*run/events.out.tfevents"):
        log_activations(model, x, step=0, log_dir=tiny_disk / "run", on_error="raise")
    with pytest.raises(ValueError, match='on_error must be "warn" or "raise", got \'ignore\''):
        log_activations(model, x, step=0, log_dir=tiny_disk / "run", on_error="ignore")


def test_log_activations_and_the_callback_write_to_a_url(tmp_path, cnn):
    model, x = cnn
    for step in (0, 3):
        assert log_activations(model, x, step=step, log_dir="ram://writer_test/direct")
        assert log_activations(model, x, step=step, log_dir=tmp_path)
    assert logged_grids("ram://writer_test/direct") == logged_grids(tmp_path)
    run = models.train_and_log("ram://writer_test/fit", epochs=1, batch_size=32, samples=64,
                               update_freq="batch", tensorboard=False)
    records = list(read_activations("ram://writer_test/fit", layer="conv1"))
    assert sorted({record.step for record in records}) == run.steps == [0, 1, 2]
    for record in (r for r in records if r.step == 2):
        np.testing.assert_allclose(record.statistics["max"],
                                   run.final["conv1"][record.sample].max(axis=(0, 1)),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="save_model=True .* 'ram://writer_test/fit' is a URL"):
        ActivationsCallback("ram://writer_test/fit", x, save_model=True)


def logged_grids(log_dir):
    """[(tag, step, grids as bytes)] of the layer steps in `log_dir`'s event files."""
    return [(value.tag, value.step, [grid.tobytes() for grid in value.grids])
            for value in reader.read_run(os.fspath(log_dir))
            if isinstance(value, reader.LayerStep)]


@pytest.mark.slow
def test_a_full_disk_warns_once_and_training_finishes(tiny_disk):
    fill(tiny_disk, leaving=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = models.train_and_log(tiny_disk / "run", epochs=2, batch_size=32, samples=128,
                                   update_freq="batch", tensorboard=False)
    assert len(run.history["loss"]) == 2  # every epoch trained
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1, [str(w.message) for w in caught]
    assert "No space left on device" in str(stops[0].message)


@pytest.mark.slow
def test_a_full_disk_ends_fit_when_asked_to(tiny_disk):
    fill(tiny_disk, leaving=0)
    with pytest.raises(events.EventFileError, match="No space left on device: .*events.out"):
        models.train_and_log(tiny_disk / "run", epochs=2, batch_size=32, samples=128,
                             update_freq="batch", tensorboard=False, on_error="raise")


@pytest.mark.slow
def test_a_disk_filling_up_during_training_does_not_end_it(tiny_disk):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = models.train_and_log(tiny_disk / "run", epochs=3, batch_size=8, samples=256,
                                   update_freq="batch", tensorboard=False)
    assert len(run.history["loss"]) == 3
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1 and "No space left on device" in str(stops[0].message)
    assert steps_by_tag(written(tiny_disk / "run"))["activations/conv1"][:3] == [0, 1, 2]


_KILLED_AT_STEP = r"""
import os, signal, sys
sys.path.insert(0, %(root)r)
import keras
from tests import models
from tests.full_disk import fill
import tb_activations as tba

class KillAt(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == %(step)d:
            os.kill(os.getpid(), signal.SIGKILL)

images, labels = models.digits(512)
model = models.small_cnn(images.shape[1:])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(images, labels, batch_size=8, epochs=1, verbose=0, callbacks=[
    tba.ActivationsCallback(%(log_dir)r, images[:4], update_freq="batch"), KillAt()])
"""


@pytest.mark.slow
def test_sigkill_loses_at_most_two_logged_steps(tmp_path):
    script = _KILLED_AT_STEP % {"root": os.path.dirname(os.path.dirname(__file__)),
                                "log_dir": str(tmp_path), "step": 40}
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    logged = steps_by_tag(written(tmp_path))["activations/conv1"]
    assert logged == list(range(len(logged))) and logged[-1] >= 38, logged


@pytest.mark.slow
def test_the_step_each_epoch_ended_at_is_recorded_whatever_update_freq_is(tmp_path):
    models.train_and_log(tmp_path, epochs=3, batch_size=64, samples=128, update_freq=3,
                         tensorboard=False, max_channels=2)
    epochs = [(value.step, json.loads(value.blobs[0])) for value in written(tmp_path)
              if value.tag == metadata.EPOCH_TAG]
    # Two batches an epoch: epochs 0, 1, 2 (Keras's own numbering, the step its TensorBoard
    # callback logs epoch scalars at) end at steps 2, 4, 6.
    assert epochs == [(2, {"epoch": 0}), (4, {"epoch": 1}), (6, {"epoch": 2})]
