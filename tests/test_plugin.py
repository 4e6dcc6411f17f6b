"""The plugin's HTTP API over real event files, through both of TensorBoard's loaders.

Flags are parsed by TensorBoard itself with our loader's fix_flags applied, and data is read
through the data provider each loader builds from them, so the 10-steps sampling default
is really in play.
"""

import base64
import json
import time
import urllib.parse

import hypothesis
import keras
import numpy as np
import pytest
from hypothesis import strategies as st
import tensorflow as tf
from tensorboard import default
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import summary_pb2
from tensorboard.data import server_ingester
from tensorboard.plugins import base_plugin
from tensorboard.util import grpc_util
from werkzeug import test as werkzeug_test

import tb_activations as tba
from tb_activations import plugin
from tb_activations.format import metadata
from tb_activations.plugin import answers
from tb_activations.plugin import backend
from tb_activations.reading import epochs
from tb_activations.rendering import grid_images
from tb_activations.rendering import steps as steps_lib
from tests import models

HOSTILE_LAYER = "dense>1.a-b"
PREFIX = "/data/plugin/activations"


def tensorboard_flags(logdir, *extra):
    """TensorBoard's own parsed flags, after every loader's fix_flags (ours included)."""
    board = program.TensorBoard(plugins=default.get_plugins())
    board.configure(argv=[None, "--logdir", str(logdir), *extra])
    return board.flags


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    trained = models.train_and_log(root / "cnn", epochs=3, batch_size=32, samples=256,
                                   update_freq=2)
    vectors = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name=HOSTILE_LAYER)])
    with tf.summary.create_file_writer(str(root / "vectors")).as_default():
        for step in range(3):
            assert tba.log_activations(vectors, np.ones((2, 6), np.float32), step=step)
        future = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME,
                content=json.dumps({"version": 99, "kind": "layer", "layer": "x"}).encode()),
            data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE)
        tf.summary.write("activations/from_the_future", tf.constant([b"?"]), step=0,
                         metadata=future)
    return root, trained


def python_provider(flags):
    ingester = data_ingester.LocalDataIngester(flags)
    ingester.start()
    return ingester.data_provider


def rust_provider(flags):
    ingester = server_ingester.SubprocessServerDataIngester(
        server_ingester.get_server_binary(), flags.logdir, reload_interval=0,
        channel_creds_type=grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin=flags.samples_per_plugin)
    ingester.start()
    return ingester.data_provider


def plugin_client(root, loader, *flags):
    """A client of a TensorBoard app serving only our plugin over `root` with `loader`'s data
    provider ("python" or "rust"), which loads in the background."""
    parsed = tensorboard_flags(root, *flags)
    provider = (python_provider if loader == "python" else rust_provider)(parsed)
    context = base_plugin.TBContext(data_provider=provider, logdir=str(root), flags=parsed,
                                    sampling_hints=parsed.samples_per_plugin)
    return werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))


@pytest.fixture(scope="module", params=["python", "rust"])
def client(request, logdir):
    root, trained = logdir
    flags = tensorboard_flags(root)
    provider = (python_provider if request.param == "python" else rust_provider)(flags)
    context = base_plugin.TBContext(data_provider=provider, logdir=str(root),
                                    sampling_hints=flags.samples_per_plugin)
    app = application.TensorBoardWSGI([plugin.ActivationsLoader().load(context)])
    test_client = werkzeug_test.Client(app)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both loaders load in the background
        response = get(test_client, "/steps?" + query(run="cnn", layer="conv1"))
        overview = get(test_client, "/overview?" + query(run="cnn"))
        runs = get_json(test_client, "/layers")["runs"]
        # The overview of a step is written after its layers: wait for both to be loaded.
        if (len(runs) == 2 and response.status_code == overview.status_code == 200
                and len(json.loads(response.get_data())["steps"]) == len(trained.steps)
                and json.loads(overview.get_data())["steps"] == trained.steps):
            break
        time.sleep(0.5)
    return test_client, trained


def query(**params):
    return urllib.parse.urlencode(params)


def get(client, route):
    return client.get(PREFIX + route)


def get_json(client, route, code=200):
    response = get(client, route)
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.get_data())


def test_loader_keeps_every_step_unless_the_user_sets_a_limit(tmp_path):
    assert tensorboard_flags(tmp_path).samples_per_plugin[metadata.PLUGIN_NAME] == 0
    flags = tensorboard_flags(tmp_path, "--samples_per_plugin", "activations=5")
    assert flags.samples_per_plugin[metadata.PLUGIN_NAME] == 5


def test_plugin_is_found_through_its_entry_point():
    loaders = [application.make_plugin_loader(spec) for spec in default.get_dynamic_plugins()]
    assert any(isinstance(loader, plugin.ActivationsLoader) for loader in loaders)


def test_layers_lists_runs_and_layers_in_model_order(client):
    client, trained = client
    runs = {entry["run"]: entry for entry in get_json(client, "/layers")["runs"]}
    assert sorted(runs) == ["cnn", "vectors"]
    cnn = runs["cnn"]
    assert [layer["layer"] for layer in cnn["layers"]] == trained.layers
    conv1 = cnn["layers"][0]
    assert conv1["layer_class"] == "Conv2D"
    assert conv1["output_shape"] == [None, 16, 16, 8]
    assert (conv1["rows"], conv1["columns"], conv1["channels_total"]) == (3, 3, 8)
    assert conv1["max_step"] == trained.steps[-1]
    assert cnn["probes"] == [{"input": "image", "shape": [None, 16, 16, 1], "samples": 4}]
    # The future-version tag is skipped, not fatal; the vector run has no image probe.
    assert [layer["layer"] for layer in runs["vectors"]["layers"]] == [HOSTILE_LAYER]
    assert runs["vectors"]["probes"] == []


def test_steps_lists_every_logged_step_past_the_default_ten(client):
    client, trained = client
    assert len(trained.steps) > 10
    steps = get_json(client, "/steps?" + query(run="cnn", layer="conv1"))["steps"]
    assert [entry["step"] for entry in steps] == trained.steps
    assert all(entry["wall_time"] > 0 for entry in steps)


def test_steps_say_which_keras_epoch_each_step_is_in(client):
    """The fit: 3 epochs of 8 batches, logged every 2 steps; epochs end at 8, 16 and 24."""
    client, trained = client
    steps = get_json(client, "/steps?" + query(run="cnn", layer="conv1"))["steps"]
    assert [(entry["step"], entry["epoch"]) for entry in steps] == [
        (step, 0 if step <= 8 else 1 if step <= 16 else 2) for step in trained.steps]
    vectors = get_json(client, "/steps?" + query(run="vectors", layer=HOSTILE_LAYER))["steps"]
    assert [entry["step"] for entry in vectors] == [0, 1, 2]
    assert not any("epoch" in entry for entry in vectors)  # no epoch records: as before


def test_a_run_with_more_epoch_records_than_are_read_shows_none(logdir, monkeypatch):
    """Rather than wrong epochs: the cnn run has 3 records, over a bound of 2."""
    root, trained = logdir
    monkeypatch.setattr(epochs, "MAX_RECORDS", 2)
    client = plugin_client(root, "python")
    deadline = time.monotonic() + 60
    while True:
        problems = get(client, "/layers?" + query(run="cnn"))
        if problems.status_code == 200 and json.loads(problems.get_data())["runs"][0]["problems"]:
            break
        assert time.monotonic() < deadline, problems.get_data(as_text=True)
        time.sleep(0.3)
    (reason,) = json.loads(problems.get_data())["runs"][0]["problems"]
    assert reason == ("activations_epochs: 3 epoch records, more than the 2 read; epochs are "
                      "not shown")
    steps = get_json(client, "/steps?" + query(run="cnn", layer="conv1"))["steps"]
    assert steps and not any("epoch" in entry for entry in steps)


def test_grid_is_the_stored_png_of_the_requested_sample(client):
    client, trained = client
    first = get(client, "/grid?" + query(run="cnn", layer="conv2", step=trained.steps[-1],
                                          sample=0))
    second = get(client, "/grid?" + query(run="cnn", layer="conv2", step=trained.steps[-1],
                                           sample=1))
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/png"
    image = grid_images.decode_png(first.get_data())
    assert image.shape == (3 * 16 + 2, 4 * 16 + 3)  # 12 channels of 16x16, 3 rows x 4, gutters
    assert not np.array_equal(image, grid_images.decode_png(second.get_data()))
    records = [r for r in tba.read_activations(trained.log_dir, layer="conv2")
               if r.step == trained.steps[-1] and r.sample == 0]
    np.testing.assert_array_equal(image, records[0].image)


def test_grid_of_hostile_layer_name(client):
    client, _ = client
    response = get(client, "/grid?" + query(run="vectors", layer=HOSTILE_LAYER, step=1))
    assert response.status_code == 200
    assert grid_images.decode_png(response.get_data()).shape == (2, 3)  # 5 units + 1 padding


# Every layer name Keras accepts on the TensorFlow backend, i.e. TensorFlow's node-name rule:
# [A-Za-z0-9.] then [A-Za-z0-9_.>-], where `>` separates like `/` and must be followed by
# [A-Za-z0-9.] (Keras suffixes a reused scope with `_1`, so a trailing `>` fails too). `/` is
# Keras's own nesting separator; any other name fails in Keras's own fit and predict.
LAYER_NAMES = st.from_regex(r"\A[A-Za-z0-9.](?:[A-Za-z0-9_.-]|>[A-Za-z0-9.]){0,16}\Z")


@hypothesis.given(outer=LAYER_NAMES, inner=LAYER_NAMES)
@hypothesis.settings(max_examples=12, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_any_layer_name_is_written_listed_and_served(tmp_path_factory, outer, inner):
    hypothesis.assume(outer != inner)
    backbone = keras.Sequential([keras.layers.Dense(3, name=inner)], name=outer)
    model = keras.Sequential([keras.Input((4,)), backbone, keras.layers.Dense(2, name="head")])
    path = outer + "/" + inner
    x = np.ones((2, 4), np.float32)
    assert list(tba.get_activations(model, x, layers=[path])) == [path]
    logdir = tmp_path_factory.mktemp("names")
    with tf.summary.create_file_writer(str(logdir / "run")).as_default():
        assert tba.log_activations(model, x, step=1)
    assert {record.layer for record in tba.read_activations(logdir)} == {path, "head"}

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    context = base_plugin.TBContext(
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(logdir)),
        logdir=str(logdir), sampling_hints={})
    names_client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    (run,) = get_json(names_client, "/layers")["runs"]
    assert [layer["layer"] for layer in run["layers"]] == [path, "head"]
    response = get(names_client, "/grid?" + query(run="run", layer=path, step=1, sample=1))
    assert response.status_code == 200
    assert grid_images.decode_png(response.get_data()).shape == (2, 2)  # 3 units + 1 padding


def test_stats_match_what_was_written(client):
    client, trained = client
    step = trained.steps[3]
    body = get_json(client, "/stats?" + query(run="cnn", layer="conv1", step=step))
    assert body["step"] == step and body["fields"] == list(metadata.STAT_FIELDS)
    assert body["channels"] == list(range(8))
    assert len(body["samples"]) == 4
    record = next(r for r in tba.read_activations(trained.log_dir, layer="conv1")
                  if r.step == step and r.sample == 2)
    np.testing.assert_allclose([row[0] for row in body["samples"][2]["stats"]],
                               record.statistics["min"], rtol=1e-6)
    np.testing.assert_allclose(body["samples"][2]["ranges"], record.ranges, rtol=1e-6)


@pytest.mark.parametrize("layer", ["conv1", "bn1", "dense"])
def test_stats_series_equals_brute_force_over_every_step(client, layer):
    """One request gives what the tab would otherwise crawl /stats for, step by step."""
    client, trained = client
    series = get_json(client, "/stats_series?" + query(run="cnn", layer=layer))
    assert [entry["step"] for entry in series["steps"]] == trained.steps
    zero, nan, inf = (metadata.STAT_FIELDS.index(f)
                      for f in ("zero_fraction", "nan_count", "inf_count"))
    for entry in series["steps"]:
        stats = get_json(client, "/stats?" + query(run="cnn", layer=layer, step=entry["step"]))
        per_sample = [np.array(sample["stats"], dtype=float) for sample in stats["samples"]]
        all_zero = np.array([s[:, zero] >= 1.0 for s in per_sample])
        assert entry["zero_fraction"] == pytest.approx(np.mean([s[:, zero] for s in per_sample]))
        assert entry["dead_channels"] == int(np.all(all_zero, axis=0).sum())
        assert entry["silent_channels"] == [int(row.sum()) for row in all_zero]
        assert entry["nan_count"] == sum(int(s[:, nan].sum()) for s in per_sample)
        assert entry["inf_count"] == sum(int(s[:, inf].sum()) for s in per_sample)
        ranges = [pair for sample in stats["samples"] for pair in sample["ranges"]]
        assert entry["low"] == pytest.approx(min(low for low, _ in ranges))
        assert entry["high"] == pytest.approx(max(high for _, high in ranges))
    assert get_json(client, "/stats_series?" + query(run="cnn", layer=layer)) == series


def test_overview_summarises_every_layer_at_every_step_as_the_series_do(client):
    client, trained = client
    answer = get_json(client, "/overview?" + query(run="cnn"))
    assert answer["steps"] == trained.steps
    assert [layer["layer"] for layer in answer["layers"]] == trained.layers
    for layer in answer["layers"]:
        series = get_json(client, "/stats_series?" + query(run="cnn", layer=layer["layer"]))
        for field in answer["fields"]:
            expected = [entry[field] for entry in series["steps"]]
            if field in ("zero_fraction", "low", "high"):
                assert layer[field] == pytest.approx(expected, rel=1e-6), field
            else:
                assert layer[field] == expected, field
    runs = get_json(client, "/layers")["runs"]
    assert all(layer["layer"] != "activations_overview" for run in runs for layer in run["layers"])
    assert get_json(client, "/overview?" + query(run="nope"), code=404)


def test_probe_serves_the_probe_pictures(client):
    client, trained = client
    response = get(client, "/probe?" + query(run="cnn", sample=3))
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    np.testing.assert_array_equal(grid_images.decode_png(response.get_data()),
                                  grid_images.probe_picture(trained.probe[3]))
    assert get(client, "/probe?" + query(run="cnn", input="image", sample=0)).status_code == 200


@pytest.mark.parametrize("route, code, fragment", [
    ("/steps?" + query(layer="conv1"), 400, "'run'"),
    ("/steps?" + query(run="cnn"), 400, "'layer'"),
    ("/grid?" + query(run="cnn", layer="conv1", step="two"), 400, "integer"),
    ("/grid?" + query(run="cnn", layer="conv1", step=0, sample="x"), 400, "integer"),
    ("/grid?" + query(run="nope", layer="conv1", step=0), 404, "nope"),
    ("/grid?" + query(run="cnn", layer="nope", step=0), 404, "nope"),
    ("/grid?" + query(run="cnn", layer="conv1", step=1), 404, "step 1"),
    ("/grid?" + query(run="cnn", layer="conv1", step=0, sample=4), 404, "sample 4"),
    ("/grid?" + query(run="cnn", layer="conv1", step=0, sample=-1), 400, "'-1'"),
    *[("/grid?" + query(run="cnn", layer="conv1", step=text), 400, "ASCII digits")
      for text in (" 0 ", "+0", "0_0", "\u0660", "0.0", "1" * 19)],
    ("/stats?" + query(run="cnn", layer="conv1", step=3), 404, "step 3"),
    ("/stats_series?" + query(run="cnn", layer="flatten"), 404, "flatten"),
    ("/probe?" + query(run="vectors"), 404, "probe"),
    ("/probe?" + query(run="cnn", input="other"), 404, "other"),
    ("/probe?" + query(run="cnn", sample=9), 404, "sample 9"),
])
def test_bad_queries_get_json_errors(client, route, code, fragment):
    client, _ = client
    assert fragment in get_json(client, route, code=code)["error"]


def test_frontend_is_served_from_the_package(client):
    client, _ = client
    response = get(client, "/index.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert "export async function render" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", [
    "/static/../plugin.py", "/static/..%2fplugin.py", "/static/%2e%2e/plugin.py",
    "/static/%2e%2e%2f%2e%2e%2fsetup.cfg", "/static/__init__.py", "/static/",
    "/static//etc/passwd", "/static/..\\plugin.py", "/static/index.js%00.css",
])
def test_static_route_serves_nothing_outside_the_frontend(client, path):
    client, _ = client
    response = get(client, path)
    assert response.status_code == 404
    assert b"import" not in response.get_data()


def test_new_steps_appear_on_reload(tmp_path):
    model = models.small_cnn()
    probe = models.digits(2)[0]
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance=tensorboard_flags(tmp_path).samples_per_plugin)
    context = base_plugin.TBContext(
        data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path)))
    client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    writer = tf.summary.create_file_writer(str(tmp_path / "live"))
    for step in (0, 1):
        with writer.as_default():
            tba.log_activations(model, probe, step=step)
        writer.flush()
        multiplexer.AddRunsFromDirectory(str(tmp_path))  # what TensorBoard's reload does
        multiplexer.Reload()
        steps = get_json(client, "/steps?" + query(run="live", layer="conv1"))["steps"]
        assert [entry["step"] for entry in steps] == list(range(step + 1))


def test_run_without_activations_is_not_listed(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path / "scalars")).as_default():
        tf.summary.scalar("loss", 1.0, step=0)
    flags = tensorboard_flags(tmp_path)
    context = base_plugin.TBContext(data_provider=python_provider(flags), sampling_hints={})
    client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    assert get_json(client, "/layers") == {"runs": []}


def wait_complete_runs(client):
    """/runs once it answers from a listing of every tag (the first answer may be partial)."""
    deadline = time.monotonic() + 30
    while True:
        answer = get_json(client, "/runs")
        if not answer["partial"] or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_runs_lists_names_and_counts_only(client):
    client, trained = client
    answer = wait_complete_runs(client)
    assert answer["partial"] is False and answer["offset"] == 0 and answer["more"] == 0
    runs = {entry["run"]: entry for entry in answer["runs"]}
    assert sorted(runs) == ["cnn", "vectors"]
    assert runs["cnn"] == {"run": "cnn", "layers": len(trained.layers),
                           "max_step": trained.steps[-1],
                           "last_wall_time": runs["cnn"]["last_wall_time"], "problems": 0}
    assert runs["vectors"]["layers"] == 1 and runs["vectors"]["problems"] == 1
    assert get_json(client, "/runs?offset=1")["runs"] == answer["runs"][1:]


def test_layers_of_one_run_with_its_problems(client):
    client, trained = client
    whole = {entry["run"]: entry for entry in get_json(client, "/layers")["runs"]}
    (cnn,) = get_json(client, "/layers?" + query(run="cnn"))["runs"]
    assert cnn == dict(whole["cnn"], more=0)
    (vectors,) = get_json(client, "/layers?" + query(run="vectors"))["runs"]
    (problem,) = vectors["problems"]
    assert problem.startswith("activations/from_the_future: ") and "99" in problem
    (rest,) = get_json(client, "/layers?" + query(run="cnn", offset=2))["runs"]
    assert rest["layers"] == cnn["layers"][2:] and rest["more"] == 0
    assert "nope" in get_json(client, "/layers?" + query(run="nope"), code=404)["error"]


def test_frames_return_a_window_of_grids_and_stats(client):
    client, trained = client
    steps = trained.steps[2:5]
    answer = get_json(client, "/frames?" + query(run="cnn", layer="conv2",
                                                  steps=",".join(map(str, steps))))
    assert answer["left"] == [] and [frame["step"] for frame in answer["frames"]] == steps
    for frame in answer["frames"]:
        assert frame["samples"] == [0, 1, 2, 3] and len(frame["grids"]) == 4
        for sample, grid in enumerate(frame["grids"]):
            response = get(client, "/grid?" + query(run="cnn", layer="conv2",
                                                    step=frame["step"], sample=sample))
            assert base64.b64decode(grid) == response.get_data()
        stats = get_json(client, "/stats?" + query(run="cnn", layer="conv2", step=frame["step"]))
        assert frame["stats"] == {key: stats[key] for key in (
            "fields", "channels", "units", "dead_channels", "samples")}
        assert frame["wall_time"] == stats["wall_time"]
    one = get_json(client, "/frames?" + query(run="cnn", layer="conv2", steps=steps[0],
                                              sample=2))
    assert one["frames"][0]["samples"] == [2]
    assert one["frames"][0]["grids"] == answer["frames"][0]["grids"][2:3]


@pytest.mark.parametrize("params, code, fragment", [
    ({"steps": "0,x"}, 400, "ASCII digits"),
    ({"steps": ",".join(["0"] * (backend.FRAMES_MAX_STEPS + 1))}, 400, "at most"),
    ({"steps": "1"}, 404, "step 1"),
    ({"steps": "0", "sample": 4}, 404, "sample 4"),
])
def test_bad_frames_queries(client, params, code, fragment):
    client, _ = client
    route = "/frames?" + query(run="cnn", layer="conv1", **params)
    assert fragment in get_json(client, route, code=code)["error"]


def test_listing_answers_stay_under_the_bound(client, monkeypatch):
    """Past the bound /layers refuses (naming the routes to use) and /runs, a run's layers
    and /frames come in pages."""
    client, trained = client
    size = len(json.dumps(get_json(client, "/layers")))
    monkeypatch.setattr(answers, "ANSWER_MAX_BYTES", size - 1)
    error = get_json(client, "/layers", code=400)["error"]
    assert "./runs" in error and "./layers?run=" in error
    monkeypatch.setattr(answers, "ANSWER_MAX_BYTES", 4096 + 1500)
    (page,) = get_json(client, "/layers?" + query(run="cnn"))["runs"]
    assert 0 < len(page["layers"]) < len(trained.layers)
    assert page["more"] == len(trained.layers) - len(page["layers"])
    layers = page["layers"]
    while page["more"]:
        (page,) = get_json(client, "/layers?" + query(run="cnn", offset=len(layers)))["runs"]
        layers += page["layers"]
    assert [layer["layer"] for layer in layers] == trained.layers
    monkeypatch.setattr(answers, "ANSWER_MAX_BYTES", 4096 + 150)
    runs = get_json(client, "/runs")
    assert len(runs["runs"]) == 1 and runs["more"] == 1
    frames = get_json(client, "/frames?" + query(run="cnn", layer="conv1", steps="0,2"))
    assert len(frames["frames"]) == 0 and frames["left"] == [0, 2]


QUOTED_RUN = 'say "hi"\\there'


@pytest.mark.parametrize("loader", ["python", "rust"])
def test_a_run_name_the_rust_server_cannot_key_is_served(tmp_path, loader):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="dense")])
    with tf.summary.create_file_writer(str(tmp_path / QUOTED_RUN)).as_default():
        for step in range(2):
            assert tba.log_activations(model, np.ones((2, 6), np.float32), step=step)
        ((tag, epoch_metadata, values),) = steps_lib.render_epoch_end(0)
        tf.summary.write(tag, tf.constant(values), step=0, metadata=epoch_metadata)
    client = plugin_client(tmp_path, loader)
    deadline = time.monotonic() + 60
    route = "/steps?" + query(run=QUOTED_RUN, layer="dense")
    # The epoch record is written last, so a loader part way through the file lists the
    # steps without their epochs for a moment.
    while (get(client, route).status_code != 200
           or not all("epoch" in entry for entry in get_json(client, route)["steps"])):
        assert time.monotonic() < deadline, "the run and its epoch record were never listed"
        time.sleep(0.3)
    steps = get_json(client, route)["steps"]
    assert [(entry["step"], entry["epoch"]) for entry in steps] == [(0, 0), (1, 1)]
    grid = get(client, "/grid?" + query(run=QUOTED_RUN, layer="dense", step=1, sample=1))
    assert grid.status_code == 200, grid.get_data(as_text=True)
    (record,) = [r for r in tba.read_activations(str(tmp_path), layer="dense")
                 if r.step == 1 and r.sample == 1]
    np.testing.assert_array_equal(grid_images.decode_png(grid.get_data()), record.image)
    frames = get_json(client, "/frames?" + query(run=QUOTED_RUN, layer="dense", steps="0,1"))
    assert [frame["step"] for frame in frames["frames"]] == [0, 1]
    assert get_json(client, "/stats?" + query(run=QUOTED_RUN, layer="dense", step=0))["step"] == 0
    assert get(client, "/probe?" + query(run=QUOTED_RUN)).status_code == 404  # vectors: none


def test_without_a_local_logdir_the_quoted_run_says_what_to_do(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="dense")])
    with tf.summary.create_file_writer(str(tmp_path / QUOTED_RUN)).as_default():
        assert tba.log_activations(model, np.ones((2, 6), np.float32), step=0)
    flags = tensorboard_flags(tmp_path)
    context = base_plugin.TBContext(data_provider=rust_provider(flags),
                                    logdir="gs://bucket/logs",
                                    sampling_hints=flags.samples_per_plugin)
    client = werkzeug_test.Client(application.TensorBoardWSGI(
        [plugin.ActivationsLoader().load(context)]))
    route = "/grid?" + query(run=QUOTED_RUN, layer="dense", step=0)
    deadline = time.monotonic() + 60
    while get(client, route).status_code == 404:
        assert time.monotonic() < deadline, "the run was never listed"
        time.sleep(0.3)
    assert "--load_fast=false" in get_json(client, route, code=422)["error"]
