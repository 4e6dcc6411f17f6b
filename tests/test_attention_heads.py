"""Per-head numbers of attention layers (issue 16 item 4): entropy, mean attention distance
and dead heads, from the full-resolution probabilities, stored in the overview blob."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

import tb_activations as tba  # noqa: E402
from tb_activations.rendering import overview, steps  # noqa: E402
import tb_activations.torch as tbat  # noqa: E402
from tb_activations.torch import capture  # noqa: E402
from tb_activations.torch import log as torch_log  # noqa: E402


def brute_entropy(p):
    p = p.astype(np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return -(p * logs).sum(-1).mean(-1)


def brute_distance(p, rows, columns, prefix):
    grid = p.astype(np.float64)[:, :, prefix:, prefix:]
    mass = grid.sum(-1)
    row, column = np.divmod(np.arange(rows * columns), columns)
    table = np.hypot(row[:, None] - row[None], column[:, None] - column[None])
    per_query = (grid * table).sum(-1) / np.where(mass > 0, mass, 1)
    kept = mass > 0
    return (per_query * kept).sum(-1) / np.maximum(kept.sum(-1), 1)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    with torch.no_grad():  # sharper attention than random init's nearly uniform one
        for block in model.blocks:
            block.attn.qkv.weight.mul_(6.0)
    return model, torch.randn(2, 3, 224, 224)


def test_vit_entropy_and_distance_match_numpy_brute_force(vit):
    model, probe = vit
    captured = capture.TorchCapture(model, probe)
    arrays = capture.get_activations(model, probe)
    paths = ["blocks/%d/attn:attention" % index for index in range(12)]
    assert list(captured.head_numbers) == paths
    for path in paths:
        probabilities = arrays[path]
        assert probabilities.shape == (2, 3, 197, 197)
        numbers = captured.head_numbers[path]
        assert numbers["keys"] == 197
        np.testing.assert_allclose(numbers["entropy"], brute_entropy(probabilities), atol=1e-4)
        np.testing.assert_allclose(numbers["peak"], probabilities.max(-1).mean(-1), atol=1e-4)
        np.testing.assert_allclose(numbers["distance"],
                                   brute_distance(probabilities, 14, 14, 1), atol=1e-4)
    # The blob carries them, rounded to 1e-7, and reads back.
    rendered = steps.render_capture(captured)
    layers = overview.decode_overview(rendered[-1][2][0])
    heads = layers["blocks/3/attn:attention"]["heads"]
    np.testing.assert_allclose(heads["entropy"], captured.head_numbers[paths[3]]["entropy"],
                               atol=1e-6)
    assert len(heads["dead"]) == 3 and "heads" not in layers["blocks/3/mlp/fc1"]


def test_logged_heads_read_back(vit, tmp_path):
    model, probe = vit
    torch_log.log_activations(model, probe[:1], step=5, log_dir=str(tmp_path / "vit"),
                              layers=["blocks/0/attn", "blocks/1/attn"])
    tbat.flush()
    read = list(tba.read_heads(str(tmp_path)))
    assert [(item.run, item.step, item.layer) for item in read] == [
        ("vit", 5, "blocks/0/attn:attention"), ("vit", 5, "blocks/1/attn:attention")]
    heads = read[1]
    assert heads.distance.shape == heads.entropy.shape == heads.peak.shape == (1, 3)
    assert heads.keys == 197 and heads.dead.dtype == bool and heads.dead.shape == (3,)
    # The numbers are the capture's own (rounded to 1e-7 in the blob).
    numbers = capture.TorchCapture(model, probe[:1]).head_numbers["blocks/1/attn:attention"]
    for name in ("entropy", "peak", "distance"):
        np.testing.assert_allclose(getattr(heads, name), numbers[name], atol=1e-6)
    np.testing.assert_array_equal(heads.dead, overview.dead_heads(
        numbers["entropy"], numbers["peak"], numbers["keys"]))
    np.testing.assert_allclose(heads.normalised_entropy(), numbers["entropy"] / math.log(197),
                               atol=1e-6)
    # Narrowed by run and by layer (the record or the module path); nothing for others.
    assert [item.layer for item in tba.read_heads(str(tmp_path), layer="blocks/0/attn")] == [
        "blocks/0/attn:attention"]
    assert list(tba.read_heads(str(tmp_path), run="other")) == []


class HeadsAttention(torch.nn.Module):
    """Three heads: uniform (zero queries), one-hot (every query on key 0), and ordinary."""

    def forward(self, x):
        batch, tokens, width = x.shape
        uniform_q, uniform_k = torch.zeros_like(x), x
        onehot_q = torch.zeros_like(x)
        onehot_q[..., 0] = 60.0
        onehot_k = torch.zeros_like(x)
        onehot_k[:, 0, 0] = 60.0
        query = torch.stack([uniform_q, onehot_q, x], dim=1)
        key = torch.stack([uniform_k, onehot_k, x], dim=1)
        value = torch.stack([x, x, x], dim=1)
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value)
        return out.transpose(1, 2).reshape(batch, tokens, 3 * width)


def test_uniform_and_one_hot_heads_are_dead_an_ordinary_one_is_not():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), HeadsAttention())
    captured = capture.TorchCapture(model, torch.randn(3, 10, 8))
    numbers = captured.head_numbers["1:attention"]
    assert numbers["distance"] is None  # no patch grid
    summary = overview.head_summary(**numbers)
    assert summary["dead"] == [True, True, False]
    assert summary["entropy"][0][0] == pytest.approx(math.log(10), abs=1e-5)
    assert summary["peak"][0][1] == pytest.approx(1.0, abs=1e-5)
    # One sample where the uniform head is not uniform: not dead.
    assert overview.dead_heads([[math.log(10)], [1.0]], [[0.1], [0.5]], 10).tolist() == [False]


def valid_blob(heads):
    summary = {field: 0 for field in overview.SUMMARY_FIELDS}
    summary.update(zero_fraction=0.5, low=None, high=1.0, silent_channels=[0, 0], heads=heads)
    return {"layers": {"blocks/0/attn:attention": summary}}


GOOD_HEADS = {"keys": 197, "entropy": [[1.0, 2.0], [0.5, None]], "peak": [[0.5, 0.2], [0.9, 1.0]],
              "distance": None, "dead": [False, True]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


def test_a_valid_heads_field_reads():
    blob = json.dumps(valid_blob(GOOD_HEADS)).encode()
    assert overview.decode_overview(blob)["blocks/0/attn:attention"]["heads"] == GOOD_HEADS


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(overview.HEAD_FIELDS + ("extra",)), value=json_values,
       drop=st.booleans())
def test_hostile_heads_fields_are_a_reason_never_a_crash(field, value, drop):
    heads = dict(GOOD_HEADS)
    if drop and field in heads:
        del heads[field]
    else:
        heads[field] = value
    blob = json.dumps(valid_blob(heads)).encode()
    try:
        layers = overview.decode_overview(blob)
    except ValueError as error:
        assert "heads" in str(error)
        return
    assert overview.valid_heads(layers["blocks/0/attn:attention"]["heads"])


@settings(max_examples=200, deadline=None)
@given(heads=json_values)
def test_any_heads_value_is_a_reason_never_a_crash(heads):
    try:
        overview.decode_overview(json.dumps(valid_blob(heads)).encode())
    except ValueError:
        pass


def test_bounds_refuse_oversized_heads():
    wide = dict(GOOD_HEADS, entropy=[[0.0] * (overview.MAX_HEADS + 1)],
                peak=[[0.0] * (overview.MAX_HEADS + 1)], dead=[False] * (overview.MAX_HEADS + 1))
    assert not overview.valid_heads(wide)
    assert not overview.valid_heads(dict(GOOD_HEADS, entropy=[[9.0, 1.0], [0.5, 0.0]]))  # > log 197
    assert not overview.valid_heads(dict(GOOD_HEADS, peak=[[0.5, 0.2]]))  # shape differs


def log_vit_run(directory):
    """A timm vit_tiny run of two steps (sharper attention at the second); head 0 of block 0
    queries nothing (uniform attention: dead)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    probe = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.weight.mul_(3.0)
        model.blocks[0].attn.qkv.weight[:64].zero_()
        model.blocks[0].attn.qkv.bias[:64].zero_()
    for step in (0, 10):
        torch_log.log_activations(model, probe, step=step, log_dir=str(directory),
                                  layers=["blocks/*/attn", "blocks/*/mlp/fc2"])
        with torch.no_grad():
            for block in model.blocks[1:]:
                block.attn.qkv.weight.mul_(2.0)
    tbat.flush()


@pytest.mark.browser
def test_the_head_map_shows_layers_by_heads_and_hover_names_them(tmp_path):
    pytest.importorskip("playwright.sync_api")
    from tests import browser_helpers

    logdir = tmp_path / "logs"
    log_vit_run(logdir / "vit")
    process, url = browser_helpers.start_tensorboard(logdir, load_fast=False)
    try:
        browser_helpers.wait_loaded(url, logdir)
        with browser_helpers.chromium_page() as (page, errors):
            page.goto(url + "/#activations&p.activations.run=vit&p.activations.overview=1")
            frame = browser_helpers.activations_frame(page)
            canvas = frame.wait_for_selector(".head-map-canvas[data-rows='12']")
            assert canvas.evaluate("c => c.dataset.columns") == "3"
            names = [node.inner_text() for node in frame.query_selector_all(".head-map-name")]
            assert names == ["blocks/%d/attn:attention" % index for index in range(12)]
            assert int(canvas.evaluate("c => c.dataset.dead")) >= 1
            box = canvas.bounding_box()
            page.mouse.move(box["x"] + 28 * 2 + 14, box["y"] + 18 * 5 + 9)  # block 5, head 2
            frame.wait_for_selector(".head-map-tooltip:not([hidden])")
            tip = frame.inner_text(".head-map-tooltip")
            page.screenshot(path=str(tmp_path / "head_map.png"))
            page.mouse.move(box["x"] + 14, box["y"] + 9)  # block 0, head 0: dead
            frame.wait_for_function("() => document.querySelector('.head-map-tooltip')"
                                    ".textContent.includes('blocks/0/attn')")
            dead_tip = frame.inner_text(".head-map-tooltip")
            frame.select_option(".head-map select", "entropy")
            frame.wait_for_function("() => document.querySelector('.head-map .overview-title')"
                                    ".textContent.includes('entropy')")
    finally:
        browser_helpers.stop(process)
    assert errors == []
    assert "blocks/5/attn:attention · head 2" in tip
    assert "mean attention distance" in tip and "patches" in tip
    assert "dead head" in dead_tip


def test_export_npz_carries_the_head_numbers(tmp_path):
    from tb_activations.exporting import run_export

    log_vit_run(tmp_path / "logs" / "vit")
    run_export.export(str(tmp_path / "logs"), str(tmp_path / "out"), formats="npz",
                      layers=["blocks/0/attn:attention", "blocks/0/mlp/fc2"], progress=False)
    found = {path.parent.name: path for path in (tmp_path / "out").rglob("statistics.npz")}
    assert len(found) == 2
    attention = next(path for name, path in found.items() if "attention" in name)
    plain = next(path for name, path in found.items() if "attention" not in name)
    with np.load(attention, allow_pickle=False) as arrays:
        assert arrays["head_steps"].tolist() == [0, 10]
        assert arrays["head_entropy"].shape == arrays["head_distance"].shape == (2, 2, 3)
        assert arrays["head_dead"].shape == (2, 3) and arrays["head_dead"][:, 0].all()
        assert np.isfinite(arrays["head_distance"]).all()
    read = {item.step: item for item in tba.read_heads(str(tmp_path / "logs"),
                                                       layer="blocks/0/attn:attention")}
    with np.load(attention, allow_pickle=False) as arrays:
        np.testing.assert_allclose(arrays["head_entropy"][1], read[10].entropy, rtol=1e-6)
    with np.load(plain, allow_pickle=False) as arrays:
        assert "head_steps" not in arrays


def test_keras_heads_match_numpy_brute_force(tmp_path):
    keras = pytest.importorskip("keras")
    from tests import keras_transformers_worker as work

    keras.utils.set_random_seed(0)
    model = work.vit()
    x = work.images(2)
    tba.log_activations(model, x, step=3, log_dir=str(tmp_path / "kvit"))
    activations = tba.get_activations(model, x)
    read = list(tba.read_heads(str(tmp_path)))
    assert [(item.run, item.step, item.layer) for item in read] == [
        ("kvit", 3, "attention0:attention"), ("kvit", 3, "attention1:attention")]
    for heads in read:
        probabilities = activations[heads.layer]
        assert probabilities.shape == (2, work.HEADS, 17, 17) and heads.keys == 17
        np.testing.assert_allclose(heads.entropy, brute_entropy(probabilities), atol=1e-4)
        np.testing.assert_allclose(heads.peak, probabilities.max(-1).mean(-1), atol=1e-4)
        np.testing.assert_allclose(heads.distance,
                                   brute_distance(probabilities, work.GRID, work.GRID, 1),
                                   atol=1e-4)
        assert heads.dead.shape == (work.HEADS,)


def test_heads_give_way_when_the_overview_would_be_too_large(monkeypatch):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), HeadsAttention())
    captured = capture.TorchCapture(model, torch.randn(3, 10, 8))
    monkeypatch.setattr(overview, "MAX_OVERVIEW_BYTES", 600)
    with pytest.warns(UserWarning, match="leaves the per-head numbers out"):
        blob = steps.render_capture(captured)[-1][2][0]
    assert all("heads" not in summary for summary in json.loads(blob)["layers"].values())
