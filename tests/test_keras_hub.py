"""keras-hub backbones (issue 16's "Done when" for Keras), built small from their constructors
with random weights (no preset, no download), logged with the normal API and read back:

- every layer whose output follows the batch is drawn (the skipped ones have no batch axis:
  the same shape for a probe of 2 and of 3);
- every attention layer (found from the model alone: a MultiHeadAttention, or a class name
  saying Attention, holding no other one) has its heads, equal to softmax(q·kᵀ/√d + mask)
  computed in numpy from the layer's own weights, on the query the layer was called with
  (caught by a wrapper of this test, in an eager call), under the padding (BERT) and causal
  and padding (GPT-2, Llama) masks the test derives from the probe;
- the ViT's block outputs are feature maps over the grid its declared image and patch
  sizes give, its class token beside them, its class-token maps and rollout;
- Llama's attention of its own is read from its Softmax sublayer on TensorFlow, and named
  by a warning on JAX and torch, where it runs fused;
- the ViT on the JAX and torch backends in subprocesses (tests/keras_hub_worker.py), the
  same arrays as on TensorFlow for the same weights;
- the live probe ("Try an input") of a saved ViT answers with the logged step's views.
"""

import base64
import json
import os
import re
import time
import warnings

import keras
import numpy as np
import pytest

import tb_activations as tba
from tb_activations.format import model_file
from tb_activations.keras import selection
from tb_activations.rendering import grid_images
from tests import backend_runs
from tests import keras_hub_worker as hub
from tests import keras_transformers_worker as work
from tests.rollout_reference import reference_rollout
from tests.tiles import quantum, tile

SKIP_WARNING = "tb-activations skips layers it cannot draw: "
GRID = (hub.IMAGE[0] // hub.PATCH, hub.IMAGE[1] // hub.PATCH)
TOKENS = GRID[0] * GRID[1] + 1


other_backends = backend_runs.other_backends_fixture(
    "tests.keras_hub_worker", "keras_hub_")


def causal_and_padded(probe):
    """(B, T, T): a query attends the keys up to itself that are tokens."""
    valid = probe["padding_mask"].astype(bool)
    steps = valid.shape[1]
    return np.tril(np.ones((steps, steps), dtype=bool))[None] & valid[:, None, :]


def padded(probe):
    valid = probe["padding_mask"].astype(bool)
    return np.broadcast_to(valid[:, None, :], (valid.shape[0], valid.shape[1], valid.shape[1]))


# name: (build, probe(count), mask of a probe or None)
BACKBONES = {
    "vit": (hub.vit, hub.images, None),
    "bert": (hub.bert, lambda count=2: hub.text(count, segments=True), padded),
    "gpt2": (hub.gpt2, hub.text, causal_and_padded),
    "llama": (hub.llama, hub.text, causal_and_padded),
}


def attention_layers(model):
    """[(path, layer)] of the layers that compute attention, found from the model alone: a
    MultiHeadAttention or a class named ...Attention, holding no other one."""
    def computes(layer):
        return isinstance(layer, keras.layers.MultiHeadAttention) or \
            type(layer).__name__.endswith("Attention")
    found = [(path, layer) for path, layer in selection.walk_layers(model) if computes(layer)]
    return [(path, layer) for path, layer in found
            if not any(other.startswith(path + "/") for other, _ in found)]


def called_queries(model, probe):
    """{path: the query (first input) each attention layer was called with}, caught in an
    eager call of the model by a wrapper of each layer's `call`."""
    queries = {}
    for path, layer in attention_layers(model):
        def wrapped(*args, _path=path, _call=layer.call, **kwargs):
            first = args[0] if args else kwargs.get("query", kwargs.get("hidden_states"))
            queries.setdefault(_path, keras.ops.convert_to_numpy(first))
            return _call(*args, **kwargs)
        layer.call = wrapped
    try:
        model(probe, training=False)
    finally:
        for _, layer in attention_layers(model):
            del layer.call
    return queries


def softmax_reference(q, k, mask):
    """softmax(q kᵀ / sqrt(d) + mask) in float64, (B, heads, Tq, Tk), from (B, T, heads, d)."""
    scores = np.einsum("btnh,bsnh->bnts", q.astype(np.float64), k.astype(np.float64))
    scores /= np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask[:, None], scores, -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def references(name, model, probe):
    """{path:attention: reference probabilities} of every attention layer of the model."""
    mask = BACKBONES[name][2]
    mask = mask(probe) if mask else None
    queries = called_queries(model, probe)
    found = {}
    for path, layer in attention_layers(model):
        x = queries[path]
        if isinstance(layer, keras.layers.MultiHeadAttention):
            found[path + ":attention"] = work.reference_attention(
                x, work.attention_weights(layer), mask)
        else:  # Llama: its own projections and rotary positions, then the same softmax
            q = layer.rotary_embedding_layer(layer._query_dense(x), start_index=0)
            k = layer.rotary_embedding_layer(layer._key_dense(x), start_index=0)
            found[path + ":attention"] = softmax_reference(
                keras.ops.convert_to_numpy(q), keras.ops.convert_to_numpy(k), mask)
    return found


def skipped_names(messages):
    return [re.match(r"(\S+) \(", part).group(1) for message in messages
            if message.startswith(SKIP_WARNING)
            for part in message[len(SKIP_WARNING):].split("; ")]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """log(name) of each backbone, once for the tests of this file."""
    done = {}

    def of(name):
        if name not in done:
            done[name] = log(name, tmp_path_factory.mktemp(name))
        return done[name]
    return of


def log(name, logdir):
    """(model, probe, {layer: [records by sample]}, tb-activations warnings) of one logged
    step."""
    build, probe, _ = BACKBONES[name]
    model, x = build(), probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tba.log_activations(model, x, step=0, log_dir=str(logdir))
    records = {}
    for record in tba.read_activations(str(logdir)):
        records.setdefault(record.layer, []).append(record)
    return model, x, {layer: sorted(rs, key=lambda r: r.sample) for layer, rs in records.items()}, \
        [str(w.message) for w in caught if "tb-activations" in str(w.message)]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_batch_dependent_layer_is_drawn_and_every_attention_layer_has_its_heads(
        name, logged):
    model, x, records, messages = logged(name)
    assert not [m for m in messages if not m.startswith(SKIP_WARNING)], messages
    skipped = skipped_names(messages)
    build, probe, _ = BACKBONES[name]
    if skipped:  # no batch axis at all: the output does not follow the batch
        layers = sorted({skip.split(":")[0] for skip in skipped})
        two = tba.get_activations(model, probe(2), layers=layers, attention=False)
        three = tba.get_activations(model, probe(3), layers=layers, attention=False)
        for skip in skipped:
            assert two[skip].shape == three[skip].shape, skip
    drawn = tba.get_activations(model, x)
    assert set(drawn) - set(skipped) <= set(records)
    assert not [path for path in drawn if path.split("/")[-1].startswith(("softmax",
                                                                           "attention_softmax"))]
    found = attention_layers(model)
    assert len(found) == hub.LAYERS
    assert sorted(p[:-len(":attention")] for p in records if p.endswith(":attention")) == \
        sorted(path for path, _ in found)
    steps = TOKENS if name == "vit" else hub.STEPS
    for path, _ in found:
        tiling = records[path + ":attention"][0].tiling
        assert tiling["source"] == "attention"
        assert tiling["output_shape"] == [None, hub.HEADS, steps, steps]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_attention_equals_softmax_of_the_layers_own_weights_under_its_masks(name, logged):
    model, x, records, _ = logged(name)
    activations = tba.get_activations(model, x)
    wanted = references(name, model, x)
    assert len(wanted) == hub.LAYERS
    for path, reference in wanted.items():
        np.testing.assert_allclose(activations[path], reference, atol=1e-4, err_msg=path)
        for record in records[path]:
            for head in range(hub.HEADS):
                want = reference[record.sample, head]
                np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))
    if BACKBONES[name][2] is not None:  # the masks did mask: padded keys get nothing
        some = next(iter(wanted))
        assert np.all(activations[some][1, :, :, 5:] == 0)


def check_vit(records, activations, wanted):
    """The ViT's records against its activations and reference attention."""
    blocks = ["vit_encoder/transformer_block_%d" % (i + 1) for i in range(hub.LAYERS)]
    for block in blocks + ["vit_encoder", "vit_patching_and_embedding"]:
        tiling = records[block][0].tiling
        assert tiling["source"] == "token_grid" and tiling["layout"] == "channels"
        assert tiling["token_grid"] == {"rows": GRID[0], "columns": GRID[1], "prefix_tokens": 1}
        assert tiling["output_shape"] == [None, *GRID, hub.WIDTH]
        for record in records[block]:
            for channel in (0, 7, hub.WIDTH - 1):
                want = activations[block][record.sample, 1:, channel].reshape(GRID)
                np.testing.assert_allclose(tile(record, channel), want, atol=quantum(want))
        assert records[block + ":prefix_tokens"][0].tiling["output_shape"] == [
            None, 1, hub.WIDTH]
    for path, reference in wanted.items():
        maps = records[path + "_map"]
        assert maps[0].tiling["attention_query"] == "class_token"
        for record in maps:
            for head in range(hub.HEADS):
                want = reference[record.sample, head, 0, 1:].reshape(GRID)
                np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))
    rollout = records["vit:attention_rollout"]
    assert rollout[0].tiling["output_shape"] == [None, *GRID, 1]
    expected = reference_rollout(list(wanted.values()), (*GRID, 1))
    for record in rollout:
        want = expected[record.sample]
        np.testing.assert_allclose(tile(record, 0), want, atol=quantum(want))


def test_the_vit_is_drawn_over_the_grid_of_its_declared_image_and_patch_sizes(logged):
    model, x, records, _ = logged("vit")
    declared = model.get_config()
    assert GRID == (declared["image_shape"][0] // declared["patch_size"][0],
                    declared["image_shape"][1] // declared["patch_size"][1]) == (4, 6)
    check_vit(records, tba.get_activations(model, x), references("vit", model, x))


def test_llama_attention_is_read_from_its_softmax_sublayer_once(logged):
    model, x, records, messages = logged("llama")
    assert not messages
    softmaxes = [path for path, layer in selection.walk_layers(model)
                 if isinstance(layer, keras.layers.Softmax)]
    assert len(softmaxes) == hub.LAYERS
    assert not set(softmaxes) & set(records)  # drawn once, at path:attention
    assert set(softmaxes) <= set(tba.get_activations(model, x, layers=softmaxes))


class HandmadeAttention(keras.layers.Layer):
    """Attention with its own ops.softmax: no probabilities to read."""

    def build(self, input_shape):
        self.project = keras.layers.Dense(input_shape[-1], name="project")
        self.project.build(input_shape)

    def call(self, x):
        scores = keras.ops.einsum("btd,bsd->bts", self.project(x), x)
        return keras.ops.einsum("bts,bsd->btd", keras.ops.softmax(scores), x)


def test_attention_computed_by_hand_is_named_by_one_warning(tmp_path):
    tokens = keras.Input((hub.STEPS, 4))
    x = HandmadeAttention(name="mixer")(tokens)
    model = keras.Model(tokens, keras.layers.Dense(2, name="head")(x))
    probe = np.ones((2, hub.STEPS, 4), "float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        drawn = tba.get_activations(model, probe)
    messages = [str(w.message) for w in caught if "tb-activations" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "no attention heads for mixer (HandmadeAttention)" in messages[0]
    assert "MultiHeadAttention" in messages[0] and "Softmax sublayer" in messages[0]
    assert "mixer" in drawn and not [p for p in drawn if p.endswith(":attention")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        tba.get_activations(model, probe, attention=False)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_vit_on_jax_and_torch_equals_tensorflow(other_backends, backend):
    folder, result = other_backends(backend)
    assert result["backend"] == backend and result["unchanged"]
    assert not [m for m in result["warnings"] if not m.startswith(SKIP_WARNING)]
    model = hub.vit()
    with np.load(folder / "weights.npz") as weights:
        model.set_weights([weights["arr_%d" % i] for i in range(len(weights.files))])
    x = hub.images()
    expected = tba.get_activations(model, x)
    assert result["order"] == list(expected)
    with np.load(folder / "activations.npz") as arrays:
        activations = {key: arrays[key] for key in arrays.files}
    for path in expected:
        np.testing.assert_allclose(activations[path], expected[path], rtol=1e-4, atol=1e-5,
                                   err_msg=path)
    wanted = references("vit", model, x)
    for path, reference in wanted.items():
        np.testing.assert_allclose(activations[path], reference, atol=1e-4)
    records = {}
    for record in tba.read_activations(str(folder / "logs")):
        records.setdefault(record.layer, []).append(record)
    check_vit({layer: sorted(rs, key=lambda r: r.sample) for layer, rs in records.items()},
              activations, wanted)
    # Llama's attention runs in a fused ops.dot_product_attention there: named, not drawn.
    assert not [p for p in result["llama_drawn"] if p.endswith(":attention")]
    (message,) = result["llama_warnings"]
    assert "transformer_layer_0/self_attention (LlamaAttention)" in message


def test_the_live_probe_of_a_saved_vit_answers_with_the_logged_views(tmp_path):
    """A keras-hub ViT trained with save_model=True: the saved model, given a probe sample
    as a drawn or uploaded input, answers with the logged last step's tokens on the grid,
    heads, class-token maps and rollout (the same grids within one code, the same
    statistics)."""
    from tests.test_live import LIVE_HEADERS, PREFIX
    from tests.test_plugin import get_json, plugin_client, query

    model, x = hub.vit(), hub.images(4, seed=3)
    model.compile(optimizer="sgd", loss="mse")
    target = np.zeros((4, TOKENS, hub.WIDTH), "float32")
    run = tmp_path / "vit"
    model.fit(x, target, batch_size=2, epochs=1, verbose=0, callbacks=[
        tba.ActivationsCallback(str(run), x[:2], save_model=True)])
    assert os.path.exists(model_file.model_path(str(run)))
    last = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    logged = {(r.layer, r.sample): r for r in tba.read_activations(str(run)) if r.step == last}
    sources = {r.tiling.get("source") for r in logged.values()}
    assert {"token_grid", "prefix_tokens", "attention", "attention_map",
            "attention_rollout"} <= sources
    client = plugin_client(tmp_path, "python")
    for _ in range(120):  # the loader loads in the background
        if get_json(client, "/layers")["runs"]:
            break
        time.sleep(0.5)
    info = get_json(client, "/live_info?" + query(run="vit"))
    assert info["available"], info["reason"]
    assert [(i["name"], i["shape"]) for i in info["inputs"]] == [("images", list(hub.IMAGE))]
    for sample in range(2):
        response = client.post(PREFIX + "/live?" + query(run="vit"), headers=LIVE_HEADERS,
                               data=json.dumps({"inputs": {"images": x[sample].tolist()}}))
        assert response.status_code == 200, response.get_data(as_text=True)
        layers = json.loads(response.get_data())["layers"]
        assert [layer["layer"] for layer in layers] == sorted(
            {layer for layer, _ in logged}, key=lambda name: logged[(name, 0)].tiling["order"])
        for layer in layers:
            record = logged[(layer["layer"], sample)]
            for key in ("source", "token_grid", "output_shape", "attention_query", "downscale"):
                assert layer.get(key) == record.tiling.get(key), (layer["layer"], key)
            codes = grid_images.decode_png(base64.b64decode(layer["grid"]))
            assert codes.shape == record.image.shape
            assert np.abs(codes.astype(int) - record.image).max() <= 1, layer["layer"]
            ours = np.array(layer["stats"]["samples"][0]["stats"], dtype=float)
            theirs = np.stack([record.statistics[f] for f in record.statistics], -1)
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5,
                                       err_msg=layer["layer"])
