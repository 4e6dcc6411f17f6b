"""Keras transformers as their users think of them (issue 16 for Keras): a tiny ViT's block
outputs as feature maps over its 4 x 4 patch grid (the class token beside it), every
MultiHeadAttention's heads as tiles checked against softmax(q·kᵀ/√d + mask) computed in numpy
from the layer's weights, the class token's attention over the grid and the attention rollout; a text encoder's
causal and padding masks; the TensorFlow backend in this process, JAX and torch in
subprocesses (tests/keras_transformers_worker.py)."""

import os
import warnings

import keras
import numpy as np
import pytest

import tb_activations as tba
from tb_activations.keras import capture
from tb_activations.keras import log as log_lib
from tests import backend_runs
from tests import keras_transformers_worker as work
from tests.rollout_reference import reference_rollout
from tests.tiles import quantum, tile

GRID = work.GRID
ROLLOUT = "tiny_vit:attention_rollout"


other_backends = backend_runs.other_backends_fixture(
    "tests.keras_transformers_worker", "keras_transformers_")


def records_by_layer(logdir, step=None):
    found = {}
    for record in tba.read_activations(str(logdir)):
        if step is None or record.step == step:
            found.setdefault(record.layer, []).append(record)
    return {layer: sorted(records, key=lambda r: r.sample) for layer, records in found.items()}


def vit_references(model, x):
    """{attention path: numpy reference (B, heads, 17, 17)} and get_activations."""
    activations = tba.get_activations(model, x)
    inputs = {"attention0": activations["cls"], "attention1": activations["block0"]}
    return {path + ":attention": work.reference_attention(
        inputs[path], work.attention_weights(model.get_layer(path))) for path in inputs}, \
        activations


def check_vit_log(records, references, activations):
    """The ViT's records: block outputs over the grid, heads as tiles, class-token maps."""
    for block in ("block0", "block1"):
        tiling = records[block][0].tiling
        assert tiling["source"] == "token_grid" and tiling["layout"] == "channels"
        assert tiling["token_grid"] == {"rows": GRID, "columns": GRID, "prefix_tokens": 1}
        assert tiling["output_shape"] == [None, GRID, GRID, work.WIDTH]
        for record in records[block]:
            for channel in (0, 5, 15):
                want = activations[block][record.sample, 1:, channel].reshape(GRID, GRID)
                np.testing.assert_allclose(tile(record, channel), want, atol=quantum(want))
        prefix = records[block + ":prefix_tokens"][0].tiling
        assert prefix["source"] == "prefix_tokens" and prefix["output_shape"] == [
            None, 1, work.WIDTH]
    for path, reference in references.items():
        heads = records[path]
        tiling = heads[0].tiling
        assert tiling["source"] == "attention" and tiling["channels_first"] is True
        assert tiling["output_shape"] == [None, work.HEADS, 17, 17]
        assert tiling["downscale"] == [1, 1]
        for record in heads:
            for head in range(work.HEADS):
                want = reference[record.sample, head]
                np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))
        maps = records[path + "_map"]
        tiling = maps[0].tiling
        assert tiling["source"] == "attention_map"
        assert tiling["attention_query"] == "class_token"
        assert tiling["token_grid"] == {"rows": GRID, "columns": GRID, "prefix_tokens": 1}
        for record in maps:
            for head in range(work.HEADS):
                want = reference[record.sample, head, 0, 1:].reshape(GRID, GRID)
                np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))
    rollout = reference_rollout(references.values(), (GRID, GRID, 1))
    maps = records[ROLLOUT]
    tiling = maps[0].tiling
    assert tiling["source"] == "attention_rollout" and tiling["layer_class"] == "AttentionRollout"
    assert tiling["token_grid"] == {"rows": GRID, "columns": GRID, "prefix_tokens": 1}
    assert tiling["output_shape"] == [None, GRID, GRID, 1]
    for record in maps:
        want = rollout[record.sample]
        np.testing.assert_allclose(tile(record, 0), want, atol=quantum(want))


def test_get_activations_returns_the_attention_probabilities_of_the_layers_weights():
    model, x = work.vit(), work.images()
    references, activations = vit_references(model, x)
    order = list(activations)
    for path, reference in references.items():
        layer = path.partition(":")[0]
        assert order.index(path) == order.index(layer) + 1  # right after the layer's output
        assert activations[path].shape == (2, work.HEADS, 17, 17)
        np.testing.assert_allclose(activations[path], reference, atol=1e-4)
    assert order[-1] == ROLLOUT  # after every layer, from the attention of the same pass
    np.testing.assert_allclose(activations[ROLLOUT],
                               reference_rollout(references.values(), (GRID, GRID, 1)),
                               atol=1e-4, rtol=0)
    # get_activations keeps outputs as they are: no grid split there.
    assert activations["block0"].shape == (2, 17, work.WIDTH)
    assert not [name for name in activations if name.endswith(("_map", "prefix_tokens"))]


def test_causal_and_padding_masks_are_the_layers_own():
    model, ids = work.text_encoder(), work.token_ids()
    activations = tba.get_activations(model, ids)
    probabilities = activations["self_attention:attention"]
    reference = work.reference_attention(
        activations["embed"], work.attention_weights(model.get_layer("self_attention")),
        work.text_mask(ids))
    assert probabilities.shape == (2, work.HEADS, work.STEPS, work.STEPS)
    np.testing.assert_allclose(probabilities, reference, atol=1e-4)
    assert np.all(probabilities[1, :, 2, 3:] == 0)  # causal
    assert np.all(probabilities[1, :, :, 5:] == 0)  # padded keys and padded queries' rows


def test_a_fit_logs_vit_tokens_on_their_grid_and_heads_as_tiles(tmp_path):
    keras.utils.set_random_seed(0)
    model = work.vit()
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = work.images(16, seed=2), np.random.default_rng(1).integers(0, 10, size=16)
    callback = tba.ActivationsCallback(str(tmp_path), x[:2])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    last = int(model.optimizer.iterations)
    assert last == 4
    records = records_by_layer(tmp_path, step=last)
    check_vit_log(records, *vit_references(model, x[:2]))
    assert "patches" in records and "tokens" not in records  # Reshape: a pass-through layer
    assert sorted({r.step for r in tba.read_activations(str(tmp_path))}) == [0, 2, 4]


def test_log_activations_draws_the_text_encoders_heads_and_keeps_its_model(tmp_path):
    model, ids = work.text_encoder(), work.token_ids()
    layer = model.get_layer("self_attention")
    flash = layer.__dict__.get("_flash_attention")
    before = np.asarray(model(ids, training=False))
    captured = log_lib.capture(model, capture.prepare_probe(model, ids), model_outputs=True)
    assert tba.log_activations(model, ids, step=1, log_dir=str(tmp_path))
    # The layer's own computation runs untouched, so its output is bit-identical.
    np.testing.assert_array_equal(np.asarray(model(ids, training=False)), before)
    np.testing.assert_allclose(captured.model_outputs[0], before, rtol=1e-6, atol=1e-6)
    assert layer.__dict__.get("_flash_attention") == flash
    assert "_compute_attention" not in layer.__dict__ and "call" not in layer.__dict__
    records = records_by_layer(tmp_path)
    sources = {name: rs[0].tiling.get("source", "output") for name, rs in records.items()}
    assert not {"token_grid", "prefix_tokens", "attention_map",
                "attention_rollout"} & set(sources.values())
    assert sources["self_attention:attention"] == "attention"
    heads = records["self_attention:attention"]
    assert heads[0].tiling["output_shape"] == [None, work.HEADS, work.STEPS, work.STEPS]
    reference = work.reference_attention(
        tba.get_activations(model, ids)["embed"], work.attention_weights(layer),
        work.text_mask(ids))
    for record in heads:
        for head in range(work.HEADS):
            want = reference[record.sample, head]
            np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))


def test_token_grid_option_as_on_pytorch(tmp_path):
    model, x = work.vit(blocks=1), work.images(1)
    tba.log_activations(model, x, step=0, log_dir=str(tmp_path / "off"), token_grid=False)
    sources = {r.tiling.get("source", "output")
               for r in tba.read_activations(str(tmp_path / "off"))}
    assert "token_grid" not in sources and "attention" in sources
    assert "attention_map" not in sources and "attention_rollout" not in sources
    text, ids = work.text_encoder(), work.token_ids()
    tba.log_activations(text, ids, step=0, log_dir=str(tmp_path / "named"),
                        token_grid={"emb*": (2, 4)})
    layouts = {r.layer: r.tiling for r in tba.read_activations(str(tmp_path / "named"))}
    assert layouts["embed"]["token_grid"] == {"rows": 2, "columns": 4, "prefix_tokens": 0}
    assert layouts["embed"]["output_shape"] == [None, 2, 4, work.WIDTH]
    assert layouts["self_attention"].get("source", "output") == "output"


@pytest.mark.parametrize("bad, message", [
    ("14x14", "got '14x14'"), ((14, 0), r"\(14, 0\)"), ({"blocks/*": True}, r"blocks/\*")])
def test_a_bad_token_grid_is_refused_at_construction(tmp_path, bad, message):
    with pytest.raises((TypeError, ValueError), match=message):
        tba.ActivationsCallback(str(tmp_path), work.images(1), token_grid=bad)
    with pytest.raises((TypeError, ValueError), match=message):
        tba.log_activations(work.text_encoder(), work.token_ids(), step=0,
                            log_dir=str(tmp_path), token_grid=bad)
    assert not os.listdir(tmp_path)


def load(folder, name):
    with np.load(folder / name) as arrays:
        return {key: arrays[key] for key in arrays.files}


def with_weights(build, weights):
    model = build()
    model.set_weights([weights["arr_%d" % i] for i in range(len(weights))])
    return model


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_jax_and_torch_backends_capture_the_same_attention(other_backends, backend):
    folder, result = other_backends(backend)
    assert result["backend"] == backend and not result["tensorflow_imported"]
    for name, build, probe in (("vit", work.vit, work.images),
                               ("text", work.text_encoder, work.token_ids)):
        assert result[name]["unchanged"] and result[name]["flash_kept"]
        model = with_weights(build, load(folder, name + "_weights.npz"))
        x = probe()
        expected = tba.get_activations(model, x)  # TensorFlow, the same weights
        activations = load(folder, name + "_activations.npz")
        assert result[name]["order"] == list(expected)
        for path in expected:
            np.testing.assert_allclose(activations[path], expected[path], rtol=1e-4,
                                       atol=1e-5, err_msg=path)
        if name == "vit":
            references, _ = vit_references(model, x)
            for path, reference in references.items():
                np.testing.assert_allclose(activations[path], reference, atol=1e-4)
            check_vit_log(records_by_layer(folder / "logs" / name, step=3), references,
                          activations)
        else:
            reference = work.reference_attention(
                activations["embed"],
                work.attention_weights(model.get_layer("self_attention")), work.text_mask(x))
            np.testing.assert_allclose(activations["self_attention:attention"], reference,
                                       atol=1e-4)
    fitted = with_weights(work.vit, load(folder, "fit_weights.npz"))
    probe = work.images(16, seed=2)[:2]
    check_vit_log(records_by_layer(folder / "fit", step=result["fit_step"]),
                  *vit_references(fitted, probe))


def test_long_attention_is_area_averaged_before_it_leaves_the_backend(tmp_path):
    model, ids = work.text_encoder(), work.token_ids()
    assert tba.log_activations(model, ids, step=0, log_dir=str(tmp_path), max_tile=3)
    heads = records_by_layer(tmp_path)["self_attention:attention"]
    tiling = heads[0].tiling
    assert tiling["downscale"] == [3, 3] and (tiling["tile_height"], tiling["tile_width"]) == (3, 3)
    assert tiling["output_shape"] == [None, work.HEADS, work.STEPS, work.STEPS]  # the whole
    whole = tba.get_activations(model, ids)["self_attention:attention"]
    for record in heads:
        for head in range(work.HEADS):
            padded = np.pad(whole[record.sample, head], ((0, 1), (0, 1)), mode="symmetric")
            want = padded.reshape(3, 3, 3, 3).mean(axis=(1, 3))
            np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))


def test_the_flash_attention_setting_is_put_back_even_when_the_call_raises():
    from tb_activations.keras import attention

    layer = keras.layers.MultiHeadAttention(2, 4, flash_attention=True)
    with pytest.raises(RuntimeError):
        with attention.flash_attention_off(layer):
            assert not layer._flash_attention
            raise RuntimeError("the second call failed")
    assert layer._flash_attention is True


def test_attention_false_draws_no_heads_and_is_checked():
    model, images = work.vit(), work.images()
    drawn = tba.get_activations(model, images, attention=False)
    assert drawn and not any(name.endswith((":attention", ":attention_rollout"))
                             for name in drawn)
    assert any(name.endswith(":attention") for name in tba.get_activations(model, images))
    with pytest.raises(TypeError, match="attention must be True .* or False, got 1"):
        tba.ActivationsCallback("unused", probe=images, attention=1)


def patch_tokens(images):
    x = keras.layers.Conv2D(work.WIDTH, work.PATCH, strides=work.PATCH, name="patches")(images)
    return keras.layers.Reshape((GRID * GRID, work.WIDTH), name="tokens")(x)


def no_class_token():
    images = keras.Input((32, 32, 3))
    x = patch_tokens(images)
    x = keras.layers.MultiHeadAttention(work.HEADS, work.KEY_DIM, name="attention")(x, x)
    return keras.Model(images, keras.layers.GlobalAveragePooling1D(name="pool")(x),
                       name="no_class_token")


def shared_attention():
    """A class token and a grid, but one MultiHeadAttention called twice a pass."""
    images = keras.Input((32, 32, 3))
    x = work.ClassToken(name="cls")(patch_tokens(images))
    attention = keras.layers.MultiHeadAttention(work.HEADS, work.KEY_DIM, name="attention")
    x = attention(x, x)
    x = attention(x, x)
    return keras.Model(images, keras.layers.GlobalAveragePooling1D(name="pool")(x),
                       name="shared_attention")


@pytest.mark.parametrize("build", [no_class_token, shared_attention])
def test_a_model_rollout_does_not_describe_has_none_and_no_warning(build, tmp_path):
    model = build()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        activations = tba.get_activations(model, work.images())
        assert tba.log_activations(model, work.images(), step=0, log_dir=str(tmp_path))
    assert "attention:attention" in activations
    assert not [name for name in activations if "rollout" in name]
    sources = {r.tiling.get("source") for r in tba.read_activations(str(tmp_path))}
    assert "attention_map" in sources and "attention_rollout" not in sources


def attention_layers_model():
    """Token ids (0 pads) -> Embedding(mask_zero) -> keras.layers.Attention (causal) and
    AdditiveAttention over the same tokens, their masks the embedding's."""
    ids = keras.Input((work.STEPS,), dtype="int32", name="ids")
    x = keras.layers.Embedding(work.VOCABULARY, work.WIDTH, mask_zero=True, name="embed")(ids)
    dot = keras.layers.Attention(name="dot")([x, x], use_causal_mask=True)
    additive = keras.layers.AdditiveAttention(use_scale=False, name="additive")([x, x])
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(
        keras.layers.Add(name="sum")([dot, additive]))
    return keras.Model(ids, keras.layers.Dense(2, name="classes")(pooled), name="luong")


def masked_softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def test_keras_attention_and_additive_attention_give_their_weights_as_one_head(tmp_path):
    model, ids = attention_layers_model(), work.token_ids()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        activations = tba.get_activations(model, ids)
        assert tba.log_activations(model, ids, step=0, log_dir=str(tmp_path))
    x = activations["embed"].astype(np.float64)
    valid = ids != 0
    keys = np.broadcast_to(valid[:, None, :], (2, work.STEPS, work.STEPS))
    causal = np.tril(np.ones((work.STEPS, work.STEPS), dtype=bool))[None]
    wanted = {
        "dot:attention": masked_softmax(np.einsum("bqd,bkd->bqk", x, x), keys & causal),
        "additive:attention": masked_softmax(
            np.tanh(x[:, :, None, :] + x[:, None, :, :]).sum(axis=-1), keys)}
    records = records_by_layer(tmp_path)
    for path, want in wanted.items():
        assert activations[path].shape == (2, 1, work.STEPS, work.STEPS)
        np.testing.assert_allclose(activations[path][:, 0], want, atol=1e-4, err_msg=path)
        assert records[path][0].tiling["output_shape"] == [None, 1, work.STEPS, work.STEPS]
        for record in records[path]:
            np.testing.assert_allclose(tile(record, 0), want[record.sample],
                                       atol=quantum(want[record.sample]))
