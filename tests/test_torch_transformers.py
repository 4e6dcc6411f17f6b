"""Transformers as their users think of them, end to end: a ViT block's tokens logged as
feature maps over the patch grid (prefix tokens beside it), every attention module's heads
as tiles and the class token's attention over the grid, read back through TensorBoard's
loader, served and drawn in the tab. Random-weight models from timm and Hugging Face."""

import collections
import csv
import os

import numpy as np
import pytest
import timm
import torch
import transformers
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.format import metadata
from tests import browser_helpers
from tests.tiles import quantum, tile

GRID = 14  # vit_tiny_patch16_224: 224 / 16 patches a side, one class token before them
ROLLOUT = "VisionTransformer:attention_rollout"


def vit_tiny():
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10).eval()


def digit_images(count=2):
    """Handwritten digits as 224 x 224 RGB: a probe whose tokens carry a visible shape."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:count], dtype=torch.float32)[:, None] / 16
    return torch.nn.functional.interpolate(images.repeat(1, 3, 1, 1), size=224)


@pytest.fixture(scope="module")
def vit_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("vit")
    model, probe = vit_tiny(), digit_images()
    for step in (0, 5):
        assert tbat.log_activations(model, probe, step=step, log_dir=str(logdir / "vit"))
    tbat.flush()
    return logdir


def records_of(logdir, layer, step=5):
    records = [r for r in tba.read_activations(str(logdir), layer=layer) if r.step == step]
    assert records, layer
    return sorted(records, key=lambda r: r.sample)


def test_a_vit_block_is_feature_maps_over_its_patch_grid(vit_logdir):
    expected = tbat.get_activations(vit_tiny(), digit_images(), layers=["blocks/6/mlp/fc1"])
    tokens = expected["blocks/6/mlp/fc1"]  # (2, 197, 768): the module's own output, unchanged
    assert tokens.shape == (2, 1 + GRID * GRID, 768)
    records = records_of(vit_logdir, "blocks/6/mlp/fc1")
    tiling = records[0].tiling
    assert tiling["layout"] == "channels" and tiling["source"] == "token_grid"
    assert tiling["token_grid"] == {"rows": GRID, "columns": GRID, "prefix_tokens": 1}
    assert tiling["output_shape"] == [None, GRID, GRID, 768]
    assert (tiling["tile_height"], tiling["tile_width"]) == (GRID, GRID)
    for record in records:
        for channel in (0, 17, 63):
            want = tokens[record.sample, 1:, channel].reshape(GRID, GRID)
            np.testing.assert_allclose(tile(record, channel), want, atol=quantum(want))
    prefix = records_of(vit_logdir, "blocks/6/mlp/fc1:prefix_tokens")
    assert prefix[0].tiling["source"] == "prefix_tokens"
    assert prefix[0].tiling["output_shape"] == [None, 1, 768]
    for record in prefix:  # 768 features averaged 3 by 3 to fit 256 columns
        want = tokens[record.sample, 0].reshape(256, 3).mean(axis=1)
        scaled_by = tokens[record.sample, 0]  # the image's range: the whole token's
        np.testing.assert_allclose(record.values()[0], want, atol=quantum(scaled_by))


def test_attention_heads_are_tiles_and_the_class_token_attends_over_the_grid(vit_logdir):
    model, probe = vit_tiny(), digit_images()
    arrays = tbat.get_activations(model, probe)
    attention = [name for name in arrays if name.endswith(":attention")]
    assert attention == ["blocks/%d/attn:attention" % i for i in range(12)]
    probabilities = arrays["blocks/3/attn:attention"]
    assert probabilities.shape == (2, 3, 197, 197)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)

    heads = records_of(vit_logdir, "blocks/3/attn:attention")
    tiling = heads[0].tiling
    assert tiling["source"] == "attention" and tiling["channels_first"] is True
    assert tiling["output_shape"] == [None, 3, 197, 197] and tiling["channels_total"] == 3
    assert tiling["downscale"] == [7, 7]  # area-averaged on the device to the 32-pixel tile cap
    assert (tiling["tile_height"], tiling["tile_width"]) == (29, 29)
    for record in heads:
        for head in range(3):
            whole = probabilities[record.sample, head]
            padded = np.pad(whole, ((0, 6), (0, 6)), mode="symmetric")  # the partial blocks
            want = padded.reshape(29, 7, 29, 7).mean(axis=(1, 3))
            np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))

    maps = records_of(vit_logdir, "blocks/3/attn:attention_map")
    tiling = maps[0].tiling
    assert tiling["source"] == "attention_map" and tiling["attention_query"] == "class_token"
    assert tiling["token_grid"] == {"rows": GRID, "columns": GRID, "prefix_tokens": 1}
    for record in maps:
        for head in range(3):
            want = probabilities[record.sample, head, 0, 1:].reshape(GRID, GRID)
            np.testing.assert_allclose(tile(record, head), want, atol=quantum(want))


def test_the_model_is_unchanged_by_a_logged_step(tmp_path):
    model, probe = vit_tiny(), digit_images()
    with torch.no_grad():
        before = model(probe)
    tbat.log_activations(model, probe, step=0, log_dir=str(tmp_path))
    with torch.no_grad():
        after = model(probe)
    assert torch.equal(before, after)
    assert torch.nn.functional.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=37,
                                     attn_implementation="sdpa")
    return transformers.BertModel(config).eval()


def test_a_text_model_keeps_its_sequences_and_shows_its_heads(tmp_path):
    ids = torch.tensor([[2, 7, 9, 4, 11, 3, 0, 0], [2, 5, 8, 8, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    assert tbat.log_activations(tiny_bert(), {"input_ids": ids, "attention_mask": mask},
                                step=1, log_dir=str(tmp_path / "bert"))
    tbat.flush()
    records = [r for r in tba.read_activations(str(tmp_path)) if r.sample == 0]
    sources = {r.layer: r.tiling.get("source", "output") for r in records}
    assert not {"token_grid", "prefix_tokens", "attention_map"} & set(sources.values())
    heads = sorted(layer for layer, source in sources.items() if source == "attention")
    assert heads == ["encoder/layer/%d/attention/self:attention" % i for i in range(2)]
    attention = next(r for r in records if r.layer == heads[0])
    assert attention.tiling["output_shape"] == [None, 4, 8, 8]
    values = tile(attention, 2)
    np.testing.assert_allclose(values[:, 6:], 0, atol=1e-6)  # padded keys get no attention
    np.testing.assert_allclose(values.sum(axis=1), 1, atol=0.02)


class TokensOnAGrid(torch.nn.Module):
    """A sequence model whose (B, 6, 4) tokens no model attribute calls a grid."""

    def __init__(self):
        super().__init__()
        self.mix = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.mix(x)


def test_token_grid_names_a_grid_the_model_does_not_say(tmp_path):
    torch.manual_seed(0)
    model, x = TokensOnAGrid(), torch.randn(2, 6, 4)
    tbat.log_activations(model, x, step=0, log_dir=str(tmp_path / "plain"))
    tbat.log_activations(model, x, step=0, log_dir=str(tmp_path / "grid"), token_grid=(2, 3))
    tbat.log_activations(model, x, step=0, log_dir=str(tmp_path / "named"),
                         token_grid={"mi*": (3, 2)})
    tbat.flush()
    layouts = {(r.run, r.layer): r.tiling for r in tba.read_activations(str(tmp_path))}
    assert layouts["plain", "mix"]["layout"] == "sequence"
    assert layouts["grid", "mix"]["token_grid"] == {"rows": 2, "columns": 3, "prefix_tokens": 0}
    assert layouts["named", "mix"]["output_shape"] == [None, 3, 2, 4]


def test_token_grid_false_keeps_every_token_output_a_sequence(tmp_path):
    tbat.log_activations(vit_tiny(), digit_images(1), step=0, log_dir=str(tmp_path),
                         token_grid=False)
    tbat.flush()
    sources = {r.tiling.get("source", "output") for r in tba.read_activations(str(tmp_path))}
    assert "token_grid" not in sources and "attention" in sources
    assert "attention_map" not in sources  # the keys' grid is switched off as well


@pytest.mark.parametrize("bad, message", [
    ("14x14", "got '14x14'"), ((14, 0), "(14, 0)"), ({"blocks/*": True}, "blocks/*")])
def test_a_bad_token_grid_is_refused_before_anything_is_written(tmp_path, bad, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(").replace(
            ")", r"\)").replace("*", r"\*")):
        tbat.log_activations(TokensOnAGrid(), torch.randn(1, 6, 4), step=0,
                             log_dir=str(tmp_path), token_grid=bad)
    assert not os.listdir(tmp_path)


@settings(max_examples=60, deadline=None)
@given(source=st.one_of(st.text(max_size=12), st.integers(), st.none()),
       grid=st.one_of(st.dictionaries(st.sampled_from(["rows", "columns", "prefix_tokens", "x"]),
                                      st.one_of(st.integers(-3, 1 << 17), st.text(max_size=3)),
                                      max_size=4), st.integers(), st.text(max_size=5)))
def test_hostile_source_fields_become_a_reason(source, grid):
    content = {"version": 2, "kind": "layer", "layer": "x", "layer_class": "Linear", "order": 0,
               "samples": 1, "output_shape": [None, 2, 2, 1], "layout": "channels", "rows": 1,
               "columns": 1, "tile_height": 2, "tile_width": 2, "gutter": 1,
               "downscale": [1, 1], "channels_total": 1, "channels_shown": 1,
               "channels_kept": 1, "depth_slices": [], "source": source, "token_grid": grid}
    valid_source = source in ("output", "token_grid", "prefix_tokens", "attention",
                              "attention_map")
    valid_grid = (isinstance(grid, dict) and set(grid) == {"rows", "columns", "prefix_tokens"}
                  and all(isinstance(v, int) for v in grid.values())
                  and grid["rows"] >= 1 and grid["columns"] >= 1 and grid["prefix_tokens"] >= 0
                  and max(grid.values()) <= 1 << 16)
    blob = metadata.create_summary_metadata(content).plugin_data.content
    if valid_source and valid_grid:
        assert metadata.parse_plugin_content(blob)["source"] == source
    else:
        with pytest.raises(ValueError, match="source" if not valid_source else "token_grid"):
            metadata.parse_plugin_content(blob)


@pytest.mark.browser
def test_the_tab_draws_tokens_on_their_grid_and_heads_as_tiles(vit_logdir):
    pytest.importorskip("playwright.sync_api")
    seen = {}
    with browser_helpers.served_page(vit_logdir) as (page, url, errors):
        for layer, channel in (("blocks/6/mlp/fc1", None), ("blocks/3/attn:attention", 1),
                               ("blocks/3/attn:attention_map", 1)):
            state = {} if channel is None else {"channel": channel}
            frame = browser_helpers.open_layer(page, url, "vit", layer, **state)
            facts = frame.text_content(".layer-facts")
            pixels = frame.query_selector(".grid-canvas").evaluate(browser_helpers.CANVAS_PIXELS)
            panel = None
            if channel is not None:
                frame.wait_for_selector(".channel-title:has-text('Head')")
                panel = (frame.text_content(".channel-title"),
                         frame.eval_on_selector(".overlay", "figure => !figure.hidden"))
            seen[layer] = (facts, pixels, panel)
            page.goto("about:blank")
    assert errors == []
    facts, pixels, _ = seen["blocks/6/mlp/fc1"]
    assert "64 of 768 features drawn" in facts
    assert "tokens on a 14×14 patch grid, after 1 prefix token" in facts
    assert pixels["colours"] > 50
    facts, _, (title, overlaid) = seen["blocks/3/attn:attention"]
    assert "3 of 3 heads drawn" in facts and "query tokens down, key tokens across" in facts
    assert title == "Head 1" and not overlaid  # queries x keys share no picture's field of view
    facts, _, (title, overlaid) = seen["blocks/3/attn:attention_map"]
    assert "the class token's attention over the patch grid" in facts
    assert title == "Head 1" and overlaid


def test_attention_false_leaves_torchs_attention_functions_alone(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("attention=False must not record attention")

    monkeypatch.setattr("tb_activations.torch.attention.recording_attention", refuse)
    assert tbat.log_activations(vit_tiny(), digit_images(1), step=0, log_dir=str(tmp_path),
                                attention=False)
    tbat.flush()
    sources = {r.tiling.get("source", "output") for r in tba.read_activations(str(tmp_path))}
    assert sources == {"output", "token_grid", "prefix_tokens"}
    assert not any(name.endswith(":attention") for name in tbat.get_activations(
        vit_tiny(), digit_images(1), attention=False))
    with pytest.raises(TypeError, match="attention must be True .* or False, got 'no'"):
        tbat.log_activations(vit_tiny(), digit_images(1), step=1, log_dir=str(tmp_path),
                             attention="no")


@pytest.mark.browser
def test_the_tab_lists_the_attention_rollout_and_draws_it_over_the_probe(vit_logdir, tmp_path):
    pytest.importorskip("playwright.sync_api")
    with browser_helpers.served_page(vit_logdir) as (page, url, errors):
        frame = browser_helpers.open_layer(page, url, "vit", ROLLOUT, channel=0, sample=1)
        names = [row.text_content() for row in frame.query_selector_all(
            ".layer-row .layer-name")]
        facts = frame.text_content(".layer-facts")
        header = frame.eval_on_selector(".layer-path", "n => [n.textContent, n.title]")
        grid = frame.query_selector(".grid-canvas").evaluate(browser_helpers.CANVAS_PIXELS)
        frame.wait_for_selector(".channel-title:has-text('Map 0')")
        frame.wait_for_function("() => !document.querySelector('.overlay').hidden")
        overlay = frame.query_selector(".overlay-canvas").evaluate(browser_helpers.CANVAS_PIXELS)
        page.screenshot(path=str(tmp_path / "rollout.png"))
    assert errors == []
    # After every module, as the rollout is of all of them; shown by its name, the record's
    # path in the header's title (the URL opened it by the path).
    assert names[-1] == "attention rollout"
    assert header == ["attention rollout", ROLLOUT]
    assert "attention rollout: the class token's attention through every layer" in facts
    assert "14×14 patch grid" in facts
    assert (grid["width"], grid["height"]) == (GRID, GRID) and grid["colours"] > 20
    assert overlay["colours"] > 20  # the map laid over the digit


def test_export_writes_the_attention_rollout_in_every_format(vit_logdir, tmp_path):
    result = tba.export(str(vit_logdir), tmp_path, layers=ROLLOUT, values=True, progress=False)
    with open(result.index, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    formats = collections.Counter(row["format"] for row in rows)
    # 2 steps x 2 samples, as a grid and over the probe picture
    assert formats == {"png": 4, "overlay": 4, "gif": 2, "npz": 1, "html": 1}
    assert {row["layer"] for row in rows if row["format"] != "html"} == {ROLLOUT}
    for row in rows:
        if row["format"] == "png":
            with Image.open(tmp_path / row["file"]) as image:
                assert image.text["Title"].startswith("attention rollout · step " + row["step"])
                assert "AttentionRollout · output (None, 14, 14, 1) · 1 of 1 maps drawn" in (
                    image.text["Description"])
        elif row["format"] == "gif":
            with Image.open(tmp_path / row["file"]) as gif:
                assert gif.n_frames == 2
    (npz,) = [row["file"] for row in rows if row["format"] == "npz"]
    with np.load(tmp_path / npz, allow_pickle=False) as arrays:
        assert arrays["steps"].tolist() == [0, 5]
        for record in tba.read_activations(str(vit_logdir), layer=ROLLOUT):
            np.testing.assert_array_equal(
                arrays["values"][[0, 5].index(record.step), record.sample], record.values())
    page = (tmp_path / "activations.html").read_text(encoding="utf-8")
    assert ROLLOUT in page and page.count("<img") >= 4
