"""The live probe over HTTP: a run's saved model answers one input, through both loaders.

Real training runs, real `.keras` files, TensorBoard's own flag parsing and data providers,
the plugin mounted in TensorBoard's WSGI app. Every refusal is followed by a request that
still succeeds, so no refusal leaves the plugin broken.
"""

import base64
import json
import os
import threading
import time
import urllib.parse

import hypothesis
import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import strategies as st

import tb_activations as tba
from tb_activations.format import model_file
from tb_activations.keras import live
from tb_activations.keras import log
from tb_activations.plugin import queries
from tb_activations.rendering import grid_images
from tests import models
from tests.test_plugin import PREFIX, get_json, plugin_client, query

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "<nine>"]
LIVE_HEADERS = {queries.LIVE_HEADER: "1", "Content-Type": "application/json"}


def _log_once(run_dir, model, probe):
    with tf.summary.create_file_writer(str(run_dir)).as_default():
        assert tba.log_activations(model, probe, step=0)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """cnn: trained with save_model and class_names; lambda: a model.keras with a Lambda
    layer; bare: activations but no model; handmade: a model.keras saved by the user (no
    record); escape: model.keras a symlink to a model outside the logdir."""
    root = tmp_path_factory.mktemp("live")
    trained = models.train_and_log(root / "cnn", epochs=2, batch_size=64, samples=256,
                                   update_freq=2, save_model=True, class_names=CLASSES)
    vectors = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="dense")])
    doubled = keras.Sequential([keras.Input((6,)), keras.layers.Lambda(lambda x: 2 * x),
                                keras.layers.Dense(3, name="dense")])
    for name, model in (("lambda", doubled), ("bare", vectors), ("handmade", vectors),
                        ("escape", vectors)):
        _log_once(root / name, model, np.ones((2, 6), np.float32))
    doubled.save(str(root / "lambda" / "model.keras"))
    vectors.save(str(root / "handmade" / "model.keras"))
    outside = tmp_path_factory.mktemp("outside")
    vectors.save(str(outside / "model.keras"))
    os.symlink(outside / "model.keras", root / "escape" / "model.keras")
    return root, trained


def _client(root, *flags, loader="python"):
    client = plugin_client(root, loader, *flags)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both loaders load in the background
        if len(get_json(client, "/layers")["runs"]) == 5:
            return client
        time.sleep(0.5)
    raise AssertionError("the loader never listed the five runs")


@pytest.fixture(scope="module", params=["python", "rust"])
def client(request, logdir):
    root, trained = logdir
    return _client(root, loader=request.param), trained


def post(client, body=None, run="cnn", headers=LIVE_HEADERS, raw=None):
    return client.post(PREFIX + "/live?" + query(run=run), headers=headers,
                       data=raw if raw is not None else json.dumps(body))


def answer(client, sample, run="cnn", code=200):
    response = post(client, {"inputs": {"image": np.asarray(sample).tolist()}}, run=run)
    assert response.status_code == code, response.get_data(as_text=True)
    return json.loads(response.get_data())


def test_live_info_describes_the_saved_model(client):
    client, trained = client
    info = get_json(client, "/live_info?" + query(run="cnn"))
    assert info["available"] and info["reason"] is None
    assert info["class_names"] == CLASSES
    (image,) = info["inputs"]
    assert (image["name"], image["shape"], image["dtype"]) == ("image", [16, 16, 1], "float32")
    assert (image["low"], image["high"]) == (float(trained.probe.min()),
                                             float(trained.probe.max()))
    assert info["outputs"] == [{"name": "logits", "shape": [10]}]
    # Saved at train end, after the last logged step.
    assert info["model"]["step"] == info["model"]["latest_step"] == trained.steps[-1]
    assert time.time() - 600 < info["model"]["saved_at"] <= time.time()


def test_live_answer_equals_the_logged_last_step(client, logdir):
    """The model saved at train end is the one that logged the last step: the same probe
    sample gives the same grids and statistics (one code path, batch of one vs four)."""
    client, trained = client
    last = trained.steps[-1]
    records = {(r.layer, r.sample): r for r in tba.read_activations(str(logdir[0] / "cnn"))
               if r.step == last}
    for sample in range(len(trained.probe)):
        result = answer(client, trained.probe[sample])
        assert [layer["layer"] for layer in result["layers"]] == trained.layers
        for layer in result["layers"]:
            logged = records[(layer["layer"], sample)]
            codes = grid_images.decode_png(base64.b64decode(layer["grid"]))
            assert codes.shape == logged.image.shape
            assert np.abs(codes.astype(int) - logged.image).max() <= 1
            ours = np.array(layer["stats"]["samples"][0]["stats"], dtype=float)
            assert layer["stats"]["fields"] == list(logged.statistics)
            theirs = np.stack([logged.statistics[field] for field in logged.statistics], -1)
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
        (output,) = result["outputs"]
        assert output["name"] == "logits" and output["shape"] == [10]
        expected = trained.model.predict(trained.probe[sample:sample + 1], verbose=0)[0]
        np.testing.assert_allclose(output["values"], expected, rtol=1e-4, atol=1e-6)
        assert result["model"]["step"] == last


def test_a_drawn_input_changes_the_answer(client):
    client, trained = client
    blank = answer(client, np.zeros((16, 16, 1)))
    stroke = np.zeros((16, 16, 1))
    stroke[3:13, 7:9] = 1.0
    drawn = answer(client, stroke)
    assert blank["layers"][0]["grid"] != drawn["layers"][0]["grid"]
    assert blank["outputs"][0]["values"] != drawn["outputs"][0]["values"]


def test_only_the_layers_asked_for_are_drawn_and_every_layer_is_summarised(client):
    client, trained = client
    body = json.dumps({"inputs": {"image": trained.probe[1].tolist()}})
    route = PREFIX + "/live?" + urllib.parse.urlencode(
        [("run", "cnn"), ("layer", "conv2"), ("layer", "dense")])
    response = client.post(route, headers=LIVE_HEADERS, data=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    layers = json.loads(response.get_data())["layers"]
    full = {layer["layer"]: layer for layer in answer(client, trained.probe[1])["layers"]}
    assert [layer["layer"] for layer in layers] == trained.layers
    assert [layer["layer"] for layer in layers if "grid" in layer] == ["conv2", "dense"]
    for layer in layers:
        assert layer["summary"] == full[layer["layer"]]["summary"]
        if "grid" in layer:
            assert (layer["grid"], layer["stats"]) == (full[layer["layer"]]["grid"],
                                                      full[layer["layer"]]["stats"])
    conv1 = full["conv1"]
    zero = conv1["stats"]["fields"].index("zero_fraction")
    fractions = [channel[zero] for channel in conv1["stats"]["samples"][0]["stats"]]
    assert conv1["summary"]["zero_fraction"] == pytest.approx(np.mean(fractions))
    assert conv1["summary"]["dead_channels"] == sum(f == 1.0 for f in fractions)
    response = client.post(PREFIX + "/live?" + query(run="cnn", layer="nope"),
                           headers=LIVE_HEADERS, data=body)
    assert response.status_code == 400
    assert "no layer 'nope'; its layers are" in json.loads(response.get_data())["error"]


def _refusals(trained):
    sample = trained.probe[0].tolist()
    good = json.dumps({"inputs": {"image": sample}})
    return [
        ("missing header", dict(headers={"Content-Type": "application/json"}, raw=good), 400,
         queries.LIVE_HEADER),
        ("content type", dict(headers={queries.LIVE_HEADER: "1", "Content-Type": "text/plain"},
                              raw=good), 400, "application/json"),
        ("oversize", dict(raw=" " * (queries.LIVE_MAX_BODY + 1)), 400, "at most"),
        ("malformed JSON", dict(raw='{"inputs": '), 400, "not valid JSON"),
        ("NaN literal", dict(raw=good.replace("0.0", "NaN", 1)), 400, "NaN"),
        ("overflow to inf", dict(raw=good.replace("0.0", "1e400", 1)), 400, "infinite"),
        ("too large for float32", dict(raw=good.replace("0.0", "1e300", 1)), 400, "too large"),
        ("no inputs key", dict(body={"image": sample}), 400, '{"inputs"'),
        ("wrong input name", dict(body={"inputs": {"picture": sample}}), 400, "'image'"),
        ("wrong shape", dict(body={"inputs": {"image": sample[:8]}}), 400, "[16, 16, 1]"),
        ("a batch", dict(body={"inputs": {"image": [sample]}}), 400, "one sample"),
        ("ragged", dict(body={"inputs": {"image": [[0.0], [0.0, 1.0]]}}), 400, "rectangular"),
        ("strings", dict(body={"inputs": {"image": [["a"] * 16] * 16}}), 400, "numbers"),
        ("booleans", dict(body={"inputs": {"image": [[[True]] * 16] * 16}}), 400, "true/false"),
        ("unlisted run", dict(body={}, run="../cnn"), 404, "no activation data"),
        ("run without a model", dict(body={"inputs": {"x": [0.0] * 6}}, run="bare"), 404,
         "no model.keras"),
        ("Lambda layer", dict(body={"inputs": {"x": [0.0] * 6}}, run="lambda"), 422,
         "Lambda"),
        ("symlink out of the logdir", dict(body={}, run="escape"), 403, "outside the logdir"),
    ]


def test_every_refusal_is_clear_and_the_next_request_succeeds(client):
    client, trained = client
    for name, request, code, message in _refusals(trained):
        response = post(client, **request)
        assert response.status_code == code, (name, response.get_data(as_text=True))
        assert message in json.loads(response.get_data())["error"], name
        assert answer(client, trained.probe[0])["layers"], name
    assert client.get(PREFIX + "/live?" + query(run="cnn")).status_code == 405


def test_live_info_says_why_a_run_cannot_answer(client):
    client, _ = client
    reasons = {run: get_json(client, "/live_info?" + query(run=run))
               for run in ("bare", "lambda", "escape")}
    assert not any(info["available"] for info in reasons.values())
    assert "save_model=True" in reasons["bare"]["reason"]
    assert "Lambda" in reasons["lambda"]["reason"]
    assert "outside the logdir" in reasons["escape"]["reason"]
    assert get_json(client, "/live_info?" + query(run="nope"), code=404)


def test_a_model_saved_by_hand_answers_with_an_assumed_range(client):
    client, _ = client
    info = get_json(client, "/live_info?" + query(run="handmade"))
    assert info["available"] and info["model"]["step"] is None
    (vector,) = info["inputs"]
    assert vector["shape"] == [6] and not vector["range_known"]
    assert (vector["low"], vector["high"]) == (0.0, 1.0)
    result = post(client, {"inputs": {vector["name"]: [0.5] * 6}}, run="handmade")
    assert result.status_code == 200, result.get_data(as_text=True)
    assert [layer["layout"] for layer in json.loads(result.get_data())["layers"]] == ["vector"]


def test_the_flag_switches_the_live_probe_off(logdir):
    root, trained = logdir
    client = _client(root, "--activations_live=false")
    info = get_json(client, "/live_info?" + query(run="cnn"))
    assert not info["available"] and "--activations_live=false" in info["reason"]
    response = post(client, {"inputs": {"image": trained.probe[0].tolist()}})
    assert response.status_code == 403
    assert get_json(client, "/layers")["runs"]  # the rest of the tab is unaffected


def test_saves_landing_during_requests_never_give_a_half_loaded_model(tmp_path):
    """Two versions of a model keep replacing each other while requests run: every answer
    comes whole from one of them, with that version's step."""
    model = models.small_cnn((16, 16, 1))
    probe = models.digits(2)[0]
    versions = {}
    for step, scale in ((1, 1.0), (2, -3.0)):
        for weight in model.trainable_weights:
            weight.assign(weight * scale)
        versions[step] = model.predict(probe[:1], verbose=0)[0]
        model_file.save_model(model, str(tmp_path), {"step": step})
        os.replace(tmp_path / "model.keras", tmp_path / ("v%d.keras" % step))
    stop = threading.Event()

    def keep_saving():
        while not stop.is_set():
            for step in versions:
                with open(tmp_path / ("v%d.keras" % step), "rb") as source:
                    data = source.read()
                partial = tmp_path / ".partial"
                partial.write_bytes(data)
                os.replace(partial, tmp_path / "model.keras")

    models_ = live.LiveModels()
    saver = threading.Thread(target=keep_saving)
    (tmp_path / "model.keras").write_bytes((tmp_path / "v1.keras").read_bytes())
    saver.start()
    try:
        seen = set()
        for _ in range(12):
            loaded, _, outputs = models_.answer(
                str(tmp_path / "model.keras"), {"inputs": {"image": probe[0].tolist()}},
                tba.RenderOptions())
            step = loaded.record["step"]
            seen.add(step)
            np.testing.assert_allclose(outputs[0], versions[step], rtol=1e-4, atol=1e-6)
    finally:
        stop.set()
        saver.join()
    assert seen <= set(versions)


def test_the_model_saved_at_train_begin_answers_while_training_goes_on(tmp_path):
    images, labels = models.digits(128)
    model = models.small_cnn(images.shape[1:])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    answers = []

    class AskLive(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:  # before any epoch ends: only the train-begin save exists
                loaded, layers, outputs = live.LiveModels().answer(
                    model_file.model_path(str(tmp_path)),
                    {"inputs": {"image": images[0].tolist()}}, tba.RenderOptions())
                answers.append((loaded.record["step"], len(layers), outputs[0].shape))

    model.fit(images, labels, epochs=1, batch_size=32, verbose=0, callbacks=[
        tba.ActivationsCallback(str(tmp_path), images[:2], save_model=True), AskLive()])
    assert answers == [(0, len(models.SMALL_CNN_DRAWN), (10,))]


_LAYERS = st.sampled_from(["conv", "pool", "dense", "relu", "norm"])


@hypothesis.settings(max_examples=8)
@hypothesis.given(size=st.integers(4, 12), channels=st.integers(1, 3),
                  kinds=st.lists(_LAYERS, min_size=1, max_size=4),
                  seed=st.integers(0, 2**16), scale=st.floats(0.01, 100))
def test_live_statistics_equal_those_logged_for_the_same_input(tmp_path_factory, size,
                                                               channels, kinds, seed, scale):
    keras.utils.set_random_seed(seed)
    built = [keras.Input((size, size, channels), name="picture")]
    for kind in kinds:
        built.append({"conv": lambda: keras.layers.Conv2D(3, 3, padding="same"),
                      "pool": lambda: keras.layers.MaxPooling2D(padding="same"),
                      "dense": lambda: keras.layers.Dense(4),
                      "relu": lambda: keras.layers.ReLU(),
                      "norm": lambda: keras.layers.LayerNormalization()}[kind]())
    model = keras.Sequential(built)
    sample = np.random.default_rng(seed).normal(0, scale, (size, size, channels))
    folder = str(tmp_path_factory.mktemp("random_model"))
    model_file.save_model(model, folder, {"step": 0})
    _, layers, _ = live.LiveModels().answer(model_file.model_path(folder),
                                            {"inputs": {"picture": sample.tolist()}},
                                            tba.RenderOptions())
    captured = log.capture(model, sample[None].astype(np.float32))
    assert [content["layer"] for content, _, _ in layers] == [r.path for r in captured.records]
    for (content, png, reduced), record in zip(layers, captured.records):
        logged = captured.reduce()[record.path]
        np.testing.assert_allclose(reduced["stats"], logged["stats"], rtol=1e-5, atol=1e-6)
        assert np.array_equal(reduced["channels"], logged["channels"])
        assert png == grid_images.render_layer(logged, record.layout)[0]
