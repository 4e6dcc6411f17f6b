"""Format version 2 is bounded by the caps: a wide layer trained for real stores at most what
docs/format.md's formula says per step and is served in answers under 1 MiB on both loaders,
with dead and silent counts exact for every unit; version 1 logs already on disk are still
read, served and exported."""

import json
import os
import time

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util

import tb_activations as tba
from tb_activations.format import metadata
from tb_activations.keras import capture
from tb_activations.reading import reader
from tb_activations.rendering import grid_images
from tests import format_v1
from tests import models
from tests.test_plugin import get, get_json, plugin_client, query

WIDE_UNITS = 100_000
PROBE_SAMPLES = 64
V1_STEPS = [0, 5]


def wide_model():
    """Dense(100000) whose every third unit has a bias of -100: dead (ReLU) whatever the input;
    the rest are silent in some samples only."""
    inputs = keras.Input((8,), name="features")
    wide = keras.layers.Dense(WIDE_UNITS, activation="relu", name="wide")
    outputs = keras.layers.Dense(3, name="head")(wide(inputs))
    model = keras.Model(inputs, outputs, name="wide_model")
    kernel, bias = wide.get_weights()
    bias[::3] = -100.0
    wide.set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Run `wide` (wide_model fitted for 2 epochs of 2 batches, 64 probe samples logged each
    epoch) and run `v1` (small_cnn written in format version 1 at V1_STEPS)."""
    root = tmp_path_factory.mktemp("bounds")
    keras.utils.set_random_seed(3)
    x = models.rng(3).normal(size=(128, 8)).astype("float32")
    y = models.rng(4).integers(0, 3, size=128)
    model = wide_model()
    model.compile(optimizer=keras.optimizers.SGD(1e-3),
                  loss="sparse_categorical_crossentropy")
    probe = x[:PROBE_SAMPLES]
    model.fit(x, y, epochs=2, batch_size=64, verbose=0,
              callbacks=[tba.ActivationsCallback(str(root / "wide"), probe)])
    small, images = models.small_cnn(), models.digits(3)[0]
    format_v1.write_run(root / "v1", small, images, V1_STEPS)
    return root, {"wide": capture.get_activations(model, probe)["wide"],
                  "v1": capture.get_activations(small, images)}


def step_bytes_bound(content, layout):
    """Most bytes one logged step of a version 2 layer tag stores (docs/format.md): each PNG
    one byte per grid pixel plus a filter byte per row, deflate's worst case over it and the
    PNG chunks; the statistics blob's arrays, deflate's worst case and the zip headers."""
    def deflated(raw):
        return raw + raw // 1000 + 5 * (raw // 16383 + 1) + 64

    png = deflated(layout.grid_height * (layout.grid_width + 1))
    return content["samples"] * png + deflated(grid_images.statistics_bytes(content, layout)) + (
        5 * 128)


def layer_steps(directory, tag):
    """[(step, content, [blobs])] of a layer tag, straight from the event files."""
    found, content = [], None
    for name in sorted(os.listdir(directory)):
        if "tfevents" not in name:
            continue
        for event in event_file_loader.EventFileLoader(os.path.join(directory, name)).Load():
            for value in event.summary.value:
                if value.tag != tag:
                    continue
                if value.HasField("metadata") and value.metadata.plugin_data.content:
                    content = metadata.parse_plugin_content(value.metadata.plugin_data.content)
                found.append((event.step, content,
                              tensor_util.make_ndarray(value.tensor).tolist()))
    return found


def test_a_wide_dense_layer_stores_at_most_the_formula_per_step(logdir):
    root, _ = logdir
    steps = layer_steps(root / "wide", "activations/wide")
    assert [step for step, _, _ in steps] == [0, 2, 4]
    content = steps[0][1]
    layout = reader.layer_layout(content)
    assert (content["layout"], content["channels_kept"]) == ("vector", 64)
    bound = step_bytes_bound(content, layout)
    assert bound < 5 << 20  # version 1 stored 38.7 MiB per step for this layer
    for _, _, blobs in steps:
        assert len(blobs) == PROBE_SAMPLES + 1
        assert sum(len(blob) for blob in blobs) <= bound
        assert len(blobs[-1]) <= grid_images.statistics_bytes(content, layout)


def served(root, loader):
    client = plugin_client(root, loader)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # both loaders load in the background
        wide = get(client, "/steps?" + query(run="wide", layer="wide"))
        old = get(client, "/overview?" + query(run="v1"))
        if (wide.status_code == old.status_code == 200
                and len(json.loads(wide.get_data())["steps"]) == 3
                and json.loads(old.get_data())["steps"] == V1_STEPS):
            return client
        time.sleep(0.5)
    raise AssertionError("the runs were never loaded")


@pytest.fixture(scope="module", params=["python", "rust"])
def client(request, logdir):
    return served(logdir[0], request.param)


def brute_force(activation):
    """(silent units per sample, dead units) of a full activation (samples, ..., units)."""
    all_zero = np.all(activation.reshape(len(activation), -1, activation.shape[-1]) == 0,
                      axis=1)
    return all_zero.sum(axis=1).tolist(), int(np.all(all_zero, axis=0).sum())


def test_a_wide_layer_is_served_in_small_answers_with_exact_dead_units(client, logdir):
    _, activations = logdir
    silent, dead = brute_force(activations["wide"])
    assert dead >= WIDE_UNITS // 3 and max(silent) > min(silent)
    response = get(client, "/stats?" + query(run="wide", layer="wide", step=4))
    assert response.status_code == 200 and len(response.get_data()) < 1 << 20
    body = json.loads(response.get_data())
    assert body["units"] == body["channels"] == list(range(64))
    assert body["dead_channels"] == dead
    assert [sample["silent_channels"] for sample in body["samples"]] == silent
    rows = np.array([sample["stats"] for sample in body["samples"]], dtype=np.float64)
    np.testing.assert_allclose(rows[..., 2], activations["wide"][:, :64], rtol=1e-5, atol=1e-6)
    layer = np.array([sample["layer"] for sample in body["samples"]], dtype=np.float64)
    np.testing.assert_allclose(layer[:, 4], np.mean(activations["wide"] == 0, axis=1),
                               atol=1e-6)
    series = get_json(client, "/stats_series?" + query(run="wide", layer="wide"))
    last = series["steps"][-1]
    assert (last["step"], last["dead_channels"], last["silent_channels"]) == (4, dead, silent)
    answer = get_json(client, "/overview?" + query(run="wide"))
    (layer_entry,) = [entry for entry in answer["layers"] if entry["layer"] == "wide"]
    assert layer_entry["dead_channels"][-1] == dead
    # Every sample's grid of a step is ~4 MiB of base64 (the grids, not the statistics): such
    # a step is left for /grid; one sample's steps fit.
    frames = get(client, "/frames?" + query(run="wide", layer="wide", steps="0,2,4", sample=0))
    assert len(frames.get_data()) < 1 << 20
    assert [frame["step"] for frame in json.loads(frames.get_data())["frames"]] == [0, 2, 4]


def test_a_version_1_run_is_still_served(client, logdir):
    _, activations = logdir
    (run,) = get_json(client, "/layers?" + query(run="v1"))["runs"]
    assert run["problems"] == [] and [layer["layer"] for layer in run["layers"]] == list(
        models.SMALL_CNN_DRAWN)
    for path in ("conv1", "dense"):
        silent, dead = brute_force(activations["v1"][path])
        body = get_json(client, "/stats?" + query(run="v1", layer=path, step=5))
        units = activations["v1"][path].shape[-1]
        assert body["units"] == list(range(units))
        assert body["dead_channels"] == dead
        assert [sample["silent_channels"] for sample in body["samples"]] == silent
        series = get_json(client, "/stats_series?" + query(run="v1", layer=path))
        assert [step["dead_channels"] for step in series["steps"]] == [dead, dead]
    overview = get_json(client, "/overview?" + query(run="v1"))
    assert overview["steps"] == V1_STEPS
    frames = get_json(client, "/frames?" + query(run="v1", layer="conv2", steps="0,5"))
    assert [frame["step"] for frame in frames["frames"]] == V1_STEPS


def test_a_version_1_run_is_read_and_exported(logdir, tmp_path):
    root, activations = logdir
    records = list(tba.read_activations(root, run="v1", layer="conv2"))
    assert len(records) == len(V1_STEPS) * 3
    full = activations["v1"]["conv2"]
    for record in records:
        assert record.units.tolist() == list(range(full.shape[-1]))
        np.testing.assert_array_equal(record.silent,
                                      np.all(full[record.sample] == 0, axis=(0, 1)))
        np.testing.assert_allclose(record.statistics["max"],
                                   full[record.sample].max(axis=(0, 1)), rtol=1e-5)
    result = tba.export(root, tmp_path / "out", run="v1", layers="conv2", formats="npz,png",
                        progress=False)
    folder = tmp_path / "out" / "v1" / "conv2"
    with np.load(folder / "statistics.npz", allow_pickle=False) as saved:
        assert saved["statistics"].shape == (len(V1_STEPS), 3, full.shape[-1], 7)
        assert saved["layer_statistics"].shape == (len(V1_STEPS), 3, 7)
        silent = np.unpackbits(saved["silent"], axis=-1, count=full.shape[-1]).astype(bool)
        np.testing.assert_array_equal(silent[-1], np.all(full == 0, axis=(1, 2)))
    assert len(list(folder.glob("step-*.png"))) == len(V1_STEPS) * 3
    assert result.files == len(V1_STEPS) * 3 + 1
