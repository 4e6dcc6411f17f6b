"""What a real fit wrote, read back through both of TensorBoard's loaders (the Python
multiplexer and the Rust data server) and through read_activations."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from tensorboard.context import RequestContext
from tensorboard.data import server_ingester
from tensorboard.util import grpc_util

from tb_activations import ActivationRecord
from tb_activations import log_activations
from tb_activations import read_activations
from tb_activations.format import metadata
from tb_activations.reading import reader
from tb_activations.rendering import grid_images
from tests import models

EXPERIMENT = ""


def expected_tags(trained_run):
    return {metadata.layer_tag(path) for path in trained_run.layers} | {
        metadata.probe_tag("image"), metadata.OVERVIEW_TAG, metadata.EPOCH_TAG}


def python_provider(log_dir):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(log_dir)
    multiplexer.Reload()
    return data_provider.MultiplexerDataProvider(multiplexer, log_dir), None


def rust_provider(log_dir):
    try:
        binary = server_ingester.get_server_binary()
    except server_ingester.NoDataServerError as error:
        pytest.skip("no TensorBoard data server for this platform: %s" % error)
    ingester = server_ingester.SubprocessServerDataIngester(
        binary, log_dir, reload_interval=0,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin={metadata.PLUGIN_NAME: 0})
    ingester.start()
    return ingester.data_provider, ingester


def fully_loaded(provider, trained_run):
    """True once every tag of the root run has every step (the Rust server loads in the
    background)."""
    listed = provider.list_blob_sequences(RequestContext(), experiment_id=EXPERIMENT,
                                          plugin_name=metadata.PLUGIN_NAME).get(".", {})
    last = trained_run.steps[-1]
    return set(listed) == expected_tags(trained_run) and all(
        series.max_step == last for tag, series in listed.items()
        if tag.startswith(metadata.LAYER_TAG_PREFIX))


@pytest.fixture(scope="module", params=["python", "rust"])
def provider(request, trained_run):
    provider, ingester = {"python": python_provider, "rust": rust_provider}[request.param](
        trained_run.log_dir)
    try:
        deadline = time.monotonic() + 60
        while not fully_loaded(provider, trained_run) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield provider
    finally:
        if ingester is not None:  # started with --die-after-stdin: closing stdin stops it
            ingester._stdin_handle.close()


@pytest.mark.slow
def test_every_layer_is_listed_as_a_blob_sequence(provider, trained_run):
    ctx = RequestContext()
    listed = provider.list_blob_sequences(ctx, experiment_id=EXPERIMENT,
                                          plugin_name=metadata.PLUGIN_NAME)
    assert list(listed) == ["."]  # keras' train/ run holds scalars only
    series = listed["."]
    assert set(series) == expected_tags(trained_run)
    samples = len(trained_run.probe)
    for tag, one in series.items():
        content = metadata.parse_plugin_content(one.plugin_content)
        if content["kind"] == metadata.KIND_PROBE:
            assert (tag, one.max_step, one.max_length) == ("activations_probe/image", 0, samples)
            continue
        if content["kind"] in (metadata.KIND_OVERVIEW, metadata.KIND_EPOCH):
            assert (one.max_step, one.max_length) == (trained_run.steps[-1], 1)
            continue
        assert tag == metadata.layer_tag(content["layer"])
        assert content["order"] == trained_run.layers.index(content["layer"])
        assert (one.max_step, one.max_length) == (trained_run.steps[-1], samples + 1)
    # Listed as blob sequences only: the data class is what the loaders go by.
    tensors = provider.list_tensors(ctx, experiment_id=EXPERIMENT,
                                    plugin_name=metadata.PLUGIN_NAME)
    assert not tensors.get(".")


@pytest.mark.slow
def test_every_step_of_every_layer_reads_back(provider, trained_run):
    ctx = RequestContext()
    read = provider.read_blob_sequences(ctx, experiment_id=EXPERIMENT,
                                        plugin_name=metadata.PLUGIN_NAME, downsample=1000)["."]
    listed = provider.list_blob_sequences(ctx, experiment_id=EXPERIMENT,
                                          plugin_name=metadata.PLUGIN_NAME)["."]
    assert set(read) == expected_tags(trained_run)
    records = {(record.layer, record.step, record.sample): record
               for record in read_activations(trained_run.log_dir, run=".")}
    samples = len(trained_run.probe)
    for path in trained_run.layers:
        tag = metadata.layer_tag(path)
        tiling = metadata.parse_plugin_content(listed[tag].plugin_content)
        data = read[tag]
        assert [datum.step for datum in data] == trained_run.steps
        for datum in data:
            assert len(datum.values) == samples + 1
            for sample in range(samples):
                png = provider.read_blob(ctx, blob_key=datum.values[sample].blob_key)
                grid = grid_images.decode_png(png)
                assert grid.shape == (
                    tiling["rows"] * (tiling["tile_height"] + 1) - 1,
                    tiling["columns"] * (tiling["tile_width"] + 1) - 1)
                np.testing.assert_array_equal(grid, records[path, datum.step, sample].image)
            stats = grid_images.decode_statistics(
                provider.read_blob(ctx, blob_key=datum.values[-1].blob_key), tiling,
                reader.layer_layout(tiling))
            assert stats["stats"].shape == (samples, tiling["channels_kept"], 7)
    probe = read[metadata.probe_tag("image")]
    assert [datum.step for datum in probe] == [0]
    for sample, reference in enumerate(probe[0].values):
        picture = grid_images.decode_png(provider.read_blob(ctx, blob_key=reference.blob_key))
        np.testing.assert_array_equal(picture,
                                      grid_images.probe_picture(trained_run.probe[sample]))


@pytest.mark.slow
def test_python_multiplexer_keeps_the_written_data_class(trained_run):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(trained_run.log_dir)
    multiplexer.Reload()
    for tag in expected_tags(trained_run):
        assert (multiplexer.SummaryMetadata(".", tag).data_class
                == summary_pb2.DATA_CLASS_BLOB_SEQUENCE)


# ---------------------------------------------------------------- read_activations


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Runs "cnn" (small_cnn, steps 0 and 5) and "tokens" (sequence_attention, step 2)."""
    root = tmp_path_factory.mktemp("two_runs")
    keras.utils.set_random_seed(5)
    cnn, images = models.small_cnn(), models.digits(2)[0]
    with tf.summary.create_file_writer(str(root / "cnn")).as_default():
        assert log_activations(cnn, images, step=0)
        assert log_activations(cnn, images, step=5)
    sequence, tokens = models.sequence_attention(), models.sequence_probe(3)
    with tf.summary.create_file_writer(str(root / "tokens")).as_default():
        assert log_activations(sequence, tokens, step=2)
    return root, cnn, sequence


def test_read_activations_yields_every_record_in_order(two_runs):
    root, cnn, sequence = two_runs
    records = list(read_activations(root))
    assert all(isinstance(record, ActivationRecord) for record in records)
    cnn_records = [record for record in records if record.run == "cnn"]
    token_records = [record for record in records if record.run == "tokens"]
    assert [record.run for record in records] == ["cnn"] * len(cnn_records) + ["tokens"] * len(
        token_records)
    assert len(cnn_records) == len(models.SMALL_CNN_DRAWN) * 2 * 2  # layers x steps x samples
    assert [(record.layer, record.step, record.sample) for record in cnn_records] == [
        (layer, step, sample) for layer in models.SMALL_CNN_DRAWN for step in (0, 5)
        for sample in (0, 1)]
    assert {record.step for record in token_records} == {2}
    assert {"attention", "attention:1", "embed"} <= {record.layer for record in token_records}
    orders = [record.tiling["order"] for record in token_records]
    assert orders == sorted(orders)


def test_record_contents(two_runs):
    root, cnn, _ = two_runs
    record = next(iter(read_activations(root, run="cnn", layer="conv2")))
    tiling = record.tiling
    assert (tiling["layer"], tiling["layer_class"], tiling["layout"]) == ("conv2", "Conv2D",
                                                                         "channels")
    assert tiling["output_shape"] == [None, 16, 16, 12]
    assert record.image.dtype == np.uint8
    assert record.image.shape == (tiling["rows"] * 17 - 1, tiling["columns"] * 17 - 1)
    assert set(record.statistics) == set(metadata.STAT_FIELDS)
    assert all(values.shape == (12,) for values in record.statistics.values())
    assert record.ranges.shape == (12, 2)
    np.testing.assert_array_equal(record.channels, np.arange(12))
    np.testing.assert_allclose(record.ranges, np.stack(
        [record.statistics["min"], record.statistics["max"]], axis=-1))
    assert record.wall_time > 0 and record.sample == 0 and record.step == 0
    values = record.values()
    assert values.shape == record.image.shape
    assert np.isnan(values[record.image == metadata.GUTTER_CODE]).all()


@pytest.mark.parametrize("run, layer, expected", [
    ("cnn", None, {("cnn", path) for path in models.SMALL_CNN_DRAWN}),
    (None, "conv1", {("cnn", "conv1")}),
    ("tokens", "attention:1", {("tokens", "attention:1")}),
    ("cnn", "attention", set()),
    ("nope", None, set()),
    (None, "nope", set()),
])
def test_read_activations_filters_by_run_and_layer(two_runs, run, layer, expected):
    root = two_runs[0]
    found = {(record.run, record.layer) for record in read_activations(root, run=run,
                                                                        layer=layer)}
    assert found == expected


@pytest.mark.slow
def test_read_activations_after_the_fit(trained_run):
    records = list(read_activations(trained_run.log_dir))
    assert {record.run for record in records} == {"."}
    assert len(records) == len(trained_run.layers) * len(trained_run.steps) * len(
        trained_run.probe)
    assert {record.step for record in records} == set(trained_run.steps)
