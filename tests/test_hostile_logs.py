"""Event files are untrusted: foreign or crafted activation tags never take the tab down.

One crafted logdir (written by `write_crafted_runs`, next to one good run) is served through
both loaders; every bad tag becomes a reason in `/layers` or a JSON error, and the good run is
served as usual.
"""

import io
import json
import time
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend import application
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin
from werkzeug import test as werkzeug_test

import tb_activations as tba
from tb_activations import plugin
from tb_activations.format import metadata
from tb_activations.rendering import grid_images
from tests import models
from tests.test_epochs import write_hostile_epochs
from tests.test_plugin import get, get_json, python_provider, query, rust_provider
from tests.test_plugin import tensorboard_flags


def _good_content(**changes):
    content = {"kind": "layer", "layer": "dense", "layer_class": "Dense", "order": 0,
               "samples": 1, "output_shape": [None, 4], "channels_first": False,
               "layout": "vector", "rows": 1, "columns": 1, "tile_height": 2, "tile_width": 2,
               "gutter": 1, "downscale": [1], "channels_total": 4, "channels_shown": 4,
               "channel_selection": "first", "depth_slices": []}
    content.update(changes)
    return content


def _statistics_blob(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _bomb():
    """A valid-looking .npz whose `stats` member inflates to 200 MB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("stats.npy", "w", force_zip64=True) as member:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": (1, 50_000_000, 1)})
            member.write(header.getvalue())
            for _ in range(200):
                member.write(bytes(1_000_000))
    return buffer.getvalue()


def _write(tag, content, values, dtype=tf.string):
    summary_metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME,
            content=json.dumps(dict({"version": 1}, **content)).encode()),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
    tf.summary.write(tag, tf.constant(values, dtype=dtype), step=0, metadata=summary_metadata)


GOOD_PNG = grid_images.encode_png(np.zeros((2, 2), np.uint8))
GOOD_STATS = dict(stats=np.zeros((1, 4, 7), np.float32), ranges=np.zeros((1, 1, 2), np.float32),
                  channels=np.arange(4, dtype=np.int32))
V2 = {"version": 2, "channels_kept": 2}
GOOD_V2 = dict(stats=np.zeros((1, 2, 7), np.float32), ranges=np.zeros((1, 1, 2), np.float32),
               channels=np.array([3, 0], np.int32), layer=np.zeros((1, 7), np.float32),
               silent=np.array([[0b10010000]], np.uint8))
CRAFTED = {
    # tag: (content changes, the step's values, what /stats must say)
    "order_text": ({"order": "zzz"}, None, None),
    "rows_float": ({"rows": 1.5}, None, None),
    "huge_tiles": ({"tile_width": 10**9}, None, None),
    "no_layer": ({"layer": ""}, None, None),
    "ranges_rank": ({}, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_STATS, ranges=np.zeros((1, 2), np.float32)))], "tile ranges"),
    "channels_out_of_range": ({}, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_STATS, channels=np.array([0, 99], np.int32)))], "drawn channels"),
    "pickled": ({}, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_STATS, stats=np.array([None], dtype=object)))], "unreadable"),
    "bomb": ({}, [GOOD_PNG, _bomb()], "decompress"),
    "not_npz": ({}, [GOOD_PNG, b"PK\x03\x04 not really"], "unreadable"),
    # Format version 2: 2 of the 4 units kept; sizes, dtypes and bits are exact.
    "v2_padding_bit": (V2, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_V2, silent=np.array([[0b00001000]], np.uint8)))], "set past unit 3"),
    "v2_every_unit": (V2, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_V2, stats=np.zeros((1, 4, 7), np.float32)))], "statistics (stats) of shape"),
    "v2_float64": (V2, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_V2, layer=np.zeros((1, 7))))], "dtype float64"),
    "v2_inflated": (V2, [GOOD_PNG, _statistics_blob(**dict(
        GOOD_V2, silent=np.zeros((1, 10_000), np.uint8)))], "decompress to"),
}


def write_crafted_runs(root):
    """Run `good` (a real model), run `crafted` (every case of CRAFTED, each as its own layer
    tag), run `numbers` (float tensors under our plugin name, a layer and an epoch record),
    `matrix` (a rank-2 string tensor) and `epochs` (bad epoch records beside a good one)."""
    model, x = models.small_cnn((8, 8, 1)), np.ones((1, 8, 8, 1), np.float32)
    with tf.summary.create_file_writer(str(root / "good")).as_default():
        assert tba.log_activations(model, x, step=0)
    with tf.summary.create_file_writer(str(root / "crafted")).as_default():
        for name, (changes, values, _) in CRAFTED.items():
            _write("activations/" + name, _good_content(**dict({"layer": name}, **changes)),
                   values or [GOOD_PNG, _statistics_blob(**GOOD_STATS)])
        _write("activations/v2_good", _good_content(layer="v2_good", **V2),
               [GOOD_PNG, _statistics_blob(**GOOD_V2)])
        _write(metadata.OVERVIEW_TAG, {"kind": "overview"}, [1.0], tf.float32)  # not a blob
    with tf.summary.create_file_writer(str(root / "numbers")).as_default():
        _write("activations/numbers", _good_content(layer="numbers"), [1.0, 2.0], tf.float32)
        _write(metadata.EPOCH_TAG, {"kind": "epoch"}, [1.0], tf.float32)
    write_hostile_epochs(root / "epochs")
    with tf.summary.create_file_writer(str(root / "matrix")).as_default():
        _write("activations/matrix", _good_content(layer="matrix"),
               [[GOOD_PNG, GOOD_PNG]], tf.string)


@pytest.fixture(scope="module", params=["python", "rust"])
def client(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    write_crafted_runs(root)
    flags = tensorboard_flags(root)
    provider = (python_provider if request.param == "python" else rust_provider)(flags)
    context = base_plugin.TBContext(data_provider=provider, logdir=str(root), flags=flags,
                                    sampling_hints=flags.samples_per_plugin)
    test_client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = {run["run"] for run in get_json(test_client, "/layers")["runs"]}
        if {"good", "crafted", "epochs"} <= runs:
            return test_client
        time.sleep(0.5)
    raise AssertionError("the crafted runs were never listed")


def test_layers_lists_every_run_and_says_which_tags_could_not_be_read(client):
    runs = {run["run"]: run for run in get_json(client, "/layers")["runs"]}
    assert [layer["layer"] for layer in runs["good"]["layers"]] == list(models.SMALL_CNN_DRAWN)
    assert runs["good"]["problems"] == []
    crafted = runs["crafted"]
    problems = "\n".join(crafted["problems"])
    for name, expected in (("order_text", "'order' is \"zzz\""), ("rows_float", "'rows' is 1.5"),
                           ("huge_tiles", "'tile_width'"), ("no_layer", "'layer'")):
        assert "activations/%s: " % name in problems and expected in problems, name
    assert sorted(layer["layer"] for layer in crafted["layers"]) == sorted(
        [name for name, (_, values, _) in CRAFTED.items() if values is not None] + ["v2_good"])


@pytest.mark.parametrize("name", [name for name, (_, v, _) in CRAFTED.items() if v is not None])
def test_a_bad_statistics_blob_is_a_json_error_naming_it(client, name):
    reason = CRAFTED[name][2]
    body = get_json(client, "/stats?" + query(run="crafted", layer=name, step=0), code=404)
    assert "no readable statistics" in body["error"] and reason in body["error"]
    series = get_json(client, "/stats_series?" + query(run="crafted", layer=name))
    assert series["steps"] == []  # the unreadable step is left out, the chart still answers
    assert get(client, "/grid?" + query(run="crafted", layer=name, step=0)).status_code == 200


def test_a_good_version_2_blob_beside_the_crafted_ones_is_served(client):
    body = get_json(client, "/stats?" + query(run="crafted", layer="v2_good", step=0))
    assert (body["units"], body["dead_channels"]) == ([3, 0], 2)
    assert body["samples"][0]["silent_channels"] == 2


@pytest.mark.parametrize("run", ["numbers", "matrix"])
def test_a_tensor_of_another_shape_or_type_never_breaks_a_route(client, run):
    for route in ("/layers", "/steps?" + query(run=run, layer=run),
                  "/grid?" + query(run=run, layer=run, step=0),
                  "/stats?" + query(run=run, layer=run, step=0)):
        response = get(client, route)
        assert response.status_code in (200, 404), (route, response.get_data(as_text=True))
        if response.status_code == 404:
            assert json.loads(response.get_data())["error"]
    assert get(client, "/grid?" + query(run="good", layer="conv1", step=0)).status_code == 200


def test_an_unreadable_overview_step_leaves_its_values_out(client):
    response = get(client, "/overview?" + query(run="crafted"))
    body = json.loads(response.get_data())
    if response.status_code == 404:  # the Rust loader drops a float tensor without listing it
        assert "has no overview" in body["error"]
        return
    assert response.status_code == 200, body
    assert body["steps"] == [0]
    assert body["layers"] and all(layer["zero_fraction"] == [None] for layer in body["layers"])


def test_bad_epoch_records_are_left_out_with_their_reasons(client):
    steps = get_json(client, "/steps?" + query(run="epochs", layer="conv1"))["steps"]
    assert [(entry["step"], entry["epoch"]) for entry in steps] == [(1, 3)]  # the good record
    (run,) = get_json(client, "/layers?" + query(run="epochs"))["runs"]
    problems = "\n".join(run["problems"])
    assert "activations_epochs_foreign: " in problems and "belong under tag" in problems
    for step, reason in ((10, "not JSON"), (11, "expected {\"epoch\": E}"), (15, "2 values"),
                         (16, "more than the 256")):
        assert "activations_epochs: step %d: " % step in problems and reason in problems, step
    assert get_json(client, "/runs")["runs"]  # the listing is unharmed
