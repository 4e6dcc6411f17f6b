"""Windows put back: outputs whose batch axis holds each sample's windows or patches (timm
Swin, MaxViT, MobileViT, LeViT's flattened tokens) drawn per probe sample, reassembled into
the sample's map where the partition is known, stacked where it is not; window attention as
the mean over windows plus each window's mean query on the map. Small random-weight models."""

import warnings

import numpy as np
import pytest
import timm
import torch
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from timm.models import maxxvit
from timm.models import swin_transformer

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.format import layout as layout_lib
from tb_activations.format import metadata
from tb_activations.torch import capture
from tb_activations.torch import token_grids
from tb_activations.torch import windows
from tests.tiles import tile

# --- partitions written here, with loops, as the models do them ---------------------------


def partition_windows(x, window, shift=(0, 0)):
    """Swin: (B, H, W, C) rolled by -shift, padded to whole windows, cut into row-major
    windows, each (wh * ww, C), sample-major."""
    wh, ww = window
    x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    height, width = x.shape[1:3]
    x = torch.nn.functional.pad(x, (0, 0, 0, -width % ww, 0, -height % wh))
    return torch.stack([x[b, i:i + wh, j:j + ww].reshape(wh * ww, -1)
                        for b in range(x.shape[0])
                        for i in range(0, x.shape[1], wh) for j in range(0, x.shape[2], ww)])


def partition_grid(x, grid):
    """MaxViT: window (i, j) of a sample holds rows i, i + H/gh, ... and columns j, j + W/gw."""
    gh, gw = grid
    strides = x.shape[1] // gh, x.shape[2] // gw
    return torch.stack([x[b, i::strides[0], j::strides[1]]
                        for b in range(x.shape[0])
                        for i in range(strides[0]) for j in range(strides[1])])


def partition_unfold(x, patch):
    """MobileViT: entry p = (i, j) of a sample holds pixel (i, j) of every patch, row-major."""
    ph, pw = patch
    return torch.stack([x[b, i::ph, j::pw].reshape(-1, x.shape[-1])
                        for b in range(x.shape[0]) for i in range(ph) for j in range(pw)])


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), window=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), data=st.data())
def test_windows_shifted_and_padded_come_back_in_the_image_frame(batch, window, size, data):
    shift = (data.draw(st.integers(0, window[0] - 1)), data.draw(st.integers(0, window[1] - 1)))
    x = torch.randn(batch, *size, 3)
    entries = partition_windows(x, window, shift)
    padded = tuple(-(-n // w) * w for n, w in zip(size, window))
    partition = windows.Partition("shifted_window" if any(shift) else "window", window,
                                  padded, size, shift)
    assert partition.count * batch == entries.shape[0]
    assert torch.equal(windows.put_back(entries, batch, partition), x)
    # Windows as (wh, ww, C) and channels first (C, wh, ww) too.
    square = entries.reshape(-1, *window, 3)
    assert torch.equal(windows.put_back(square, batch, partition), x)
    assert torch.equal(windows.put_back(square.movedim(-1, 1), batch, partition, True), x)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       strides=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_grid_partitions_come_back(batch, grid, strides):
    size = (grid[0] * strides[0], grid[1] * strides[1])
    x = torch.randn(batch, *size, 2)
    partition = windows.Partition("grid", grid, size, size)
    assert torch.equal(windows.put_back(partition_grid(x, grid), batch, partition), x)


@settings(max_examples=40, deadline=None)
@given(batch=st.integers(1, 3), patch=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       patches=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_unfolded_patches_come_back(batch, patch, patches):
    size = (patch[0] * patches[0], patch[1] * patches[1])
    x = torch.randn(batch, *size, 2)
    partition = windows.Partition("unfold", patches, size, size, patch=patch)
    assert torch.equal(windows.put_back(partition_unfold(x, patch), batch, partition), x)


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 3), grid=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       count=st.integers(2, 5))
def test_tokens_stacks_and_means(batch, grid, count):
    x = torch.randn(batch, grid[0] * grid[1], 3)
    partition = windows.tokens_partition(grid[0] * grid[1], [(99, 99), grid])
    assert torch.equal(windows.put_back(x.flatten(0, 1), batch, partition),
                       x.reshape(batch, *grid, 3))
    entries = torch.randn(batch * count, 4, 3)
    stacked = windows.stack_windows(entries, batch)
    assert torch.equal(stacked[-1, 4 * (count - 1):], entries[-1])
    assert torch.allclose(windows.mean_over_windows(entries, batch)[0], entries[:count].mean(0))
    # A shape that is not the partition's cells is not put back.
    assert windows.put_back(torch.randn(batch * 4, 5, 3), batch,
                            windows.Partition("window", (2, 2), (4, 4), (4, 4))) is None


def test_the_merges_are_timms_reverses():
    x = torch.randn(2, 12, 8, 5)
    assert torch.equal(windows.merge_windows(
        swin_transformer.window_partition(x, (4, 2)), 2, (4, 2), (12, 8)), x)
    assert torch.equal(windows.merge_grid(maxxvit.grid_partition(x, [3, 4]), 2, (3, 4),
                                          (12, 8)), x)


# --- the four families, small -------------------------------------------------------------


def small_swin():
    torch.manual_seed(0)
    return swin_transformer.SwinTransformer(
        img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2),
        num_heads=(2, 4), num_classes=10).eval()


def small_maxvit():
    torch.manual_seed(0)
    cfg = maxxvit.MaxxVitCfg(
        embed_dim=(16, 32), depths=(1, 1), block_type=("M", "M"), stem_width=16,
        transformer_cfg=maxxvit.MaxxVitTransformerCfg(
            dim_head=8, rel_pos_type="bias", window_size=4, grid_size=4))
    return maxxvit.MaxxVit(cfg, img_size=64, num_classes=10).eval()


def levit():
    torch.manual_seed(0)
    return timm.create_model("levit_128s", pretrained=False, num_classes=10).eval()


def mobilevit():
    torch.manual_seed(0)
    return timm.create_model("mobilevit_xxs", pretrained=False, num_classes=10).eval()


FAMILIES = {  # model, probe side, {partition kinds drawn}
    "swin": (small_swin, 64, {"window", "shifted_window"}),
    "maxvit": (small_maxvit, 64, {"window", "grid"}),
    "levit": (levit, 224, {"tokens"}),
    "mobilevit": (mobilevit, 64, {"unfold"}),
}


def probe(side, batch=2):
    torch.manual_seed(1)
    return torch.randn(batch, 3, side, side)


def windowed_draw(model, probe_batch, layer):
    """(the module's own output, the drawn tensor before reduction, its plan) of a windowed
    output, through capture's functions."""
    probe_pass = capture.run_pass(model, probe_batch)
    context = capture.WindowContext(model, probe_pass.input_shapes,
                                    token_grids.declared_token_grids(model),
                                    probe_pass.observed_grids)
    _, flag, outputs = probe_pass.outputs[layer]
    name, tensor, _ = outputs[0]
    [(_, drawn, plan)] = capture.window_drawings(name, layer, tensor, probe_pass.batch,
                                                 layout_lib.RenderOptions(), flag, context)
    return tensor, drawn, plan


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_no_module_of_the_four_families_is_skipped(family):
    build, side, kinds = FAMILIES[family]
    model = build()
    x = probe(side)
    with torch.no_grad():
        before = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        taken = capture.TorchCapture(model, x)
    windowed = [r.layout for r in taken.records if r.layout.windows]
    assert {plan.windows[1] for plan in windowed} == kinds
    attention = [r.path for r in taken.records if r.path.endswith(":attention")]
    assert attention and all(r.layout.windows for r in taken.records
                             if r.path.endswith(":attention")) != (family == "levit")
    reduced = taken.reduce()
    assert set(reduced) == {r.path for r in taken.records}
    # The user's model is as it was: same outputs, no hook left behind.
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_shifted_swin_window_output_is_its_map_in_the_image_frame():
    model, x = small_swin(), probe(64)
    raw, drawn, plan = windowed_draw(model, x, "layers/0/blocks/1/attn/proj")
    assert raw.shape == (2 * 16, 16, 16)  # 16 windows of 4 x 4 tokens a sample
    reference = swin_transformer.window_reverse(raw.view(-1, 4, 4, 16), (4, 4), 16, 16)
    reference = torch.roll(reference, shifts=(2, 2), dims=(1, 2))  # the block's un-roll
    assert torch.equal(drawn, reference)
    assert plan.source == "token_grid" and plan.token_grid == (16, 16, 0)
    assert plan.windows == (16, "shifted_window")
    # get_activations keeps the module's own output.
    own = tbat.get_activations(model, x, layers=["layers/0/blocks/1/attn/proj"])
    assert own["layers/0/blocks/1/attn/proj"].shape == (32, 16, 16)


def test_maxvit_grid_and_mobilevit_unfold_and_levit_tokens_exactly():
    model, x = small_maxvit(), probe(64)
    raw, drawn, plan = windowed_draw(model, x, "stages/0/blocks/0/attn_grid/attn/proj")
    assert torch.equal(drawn, maxxvit.grid_reverse(raw, [4, 4], [16, 16]))
    assert plan.windows == (16, "grid")

    model = mobilevit()
    raw, drawn, plan = windowed_draw(model, x, "stages/2/1/transformer/0/mlp/fc1")
    batch, (ph, pw) = 2, model.stages[2][1].patch_size
    reference = torch.empty(batch, 8, 8, raw.shape[-1])
    for b in range(batch):
        for i in range(ph):
            for j in range(pw):
                for n in range(16):
                    reference[b, (n // 4) * ph + i, (n % 4) * pw + j] = raw[
                        b * ph * pw + i * pw + j, n]
    assert torch.equal(drawn, reference)
    assert plan.windows == (4, "unfold") and plan.token_grid == (8, 8, 0)

    model, x = levit(), probe(224)
    raw, drawn, plan = windowed_draw(model, x, "stages/1/downsample/attn_downsample/q/ln/bn")
    assert raw.shape == (2 * 49, 128)
    assert torch.equal(drawn, raw.view(2, 7, 7, 128))
    assert plan.windows == (49, "tokens") and plan.token_grid == (7, 7, 0)


@pytest.fixture(scope="module")
def swin_logdir(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("swin")
    assert tbat.log_activations(small_swin(), probe(64), step=3, log_dir=str(logdir / "run"))
    tbat.flush()
    return logdir


def records_of(logdir, layer):
    records = sorted(tba.read_activations(str(logdir), layer=layer), key=lambda r: r.sample)
    assert records, layer
    return records


def test_logged_and_read_back_through_tensorboard(swin_logdir):
    layer = "layers/0/blocks/1/attn/proj"
    raw = tbat.get_activations(small_swin(), probe(64), layers=[layer])[layer]
    reference = swin_transformer.window_reverse(torch.from_numpy(raw).view(-1, 4, 4, 16),
                                                (4, 4), 16, 16)
    reference = torch.roll(reference, shifts=(2, 2), dims=(1, 2)).numpy()
    records = records_of(swin_logdir, layer)
    tiling = records[0].tiling
    assert tiling["source"] == "token_grid" and tiling["output_shape"] == [None, 16, 16, 16]
    assert tiling["windows"] == {"count": 16, "partition": "shifted_window"}
    for record in records:
        for channel in (0, 9):
            want = reference[record.sample, :, :, channel]
            step = (want.max() - want.min()) / 253 + 1e-7
            assert np.abs(tile(record, channel) - want).max() <= step

    attention = records_of(swin_logdir, "layers/0/blocks/1/attn:attention")[0].tiling
    assert attention["source"] == "attention" and attention["output_shape"] == [None, 2, 16, 16]
    assert attention["windows"] == {"count": 16, "partition": "shifted_window"}
    folded = records_of(swin_logdir, "layers/1/blocks/0/attn:attention_map")[0].tiling
    assert folded["token_grid"] == {"rows": 8, "columns": 8, "prefix_tokens": 0}
    assert folded["attention_query"] == "mean" and folded["windows"]["count"] == 4
    stacked = records_of(swin_logdir, "layers/0/blocks/0/attn/softmax")[0].tiling
    assert stacked["source"] == "windows" and stacked["output_shape"] == [None, 32, 16, 16]


def test_window_attention_mean_and_map_are_the_windows():
    model, x = small_swin(), probe(64)
    [entry] = [e for e in capture.run_pass(model, x).attention
               if e.module_path == "layers/0/blocks/0/attn"]
    options = layout_lib.RenderOptions()
    context = capture.WindowContext(model, capture.run_pass(model, x).input_shapes, [], [])
    drawings = capture.window_attention_drawings(entry, 2, options, context)
    (_, mean, stored, _), (_, maps, plan, _) = drawings
    assert torch.allclose(mean[1], entry.probabilities[16:].mean(0))
    assert stored.source_shape == (2, 16, 16) and stored.windows == (16, "window")
    reference = swin_transformer.window_reverse(
        entry.mean_query.transpose(1, 2).reshape(-1, 4, 4, 2), (4, 4), 16, 16)
    assert torch.equal(maps, reference) and plan.source == "attention_map"
    # Each window's mean query sums to 1 over its own keys.
    assert torch.allclose(maps.reshape(2, 4, 4, 4, 4, 2).sum((2, 4)), torch.ones(2, 4, 4, 2))


class Table(torch.nn.Module):
    """A position table: called on the batch, returns (4, 3), no batch axis (as a rotary
    embedding's cos/sin)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return self.weight * 2


class FoldsItself(torch.nn.Module):
    """Folds pairs of tokens into the batch axis with no attribute saying so, and adds a
    table whose length is a multiple of the batch."""

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(3, 3)
        self.table = Table()

    def forward(self, x):
        return self.inner(x.reshape(-1, 2, 3)).reshape(x.shape) + self.table(x).sum()


def test_an_unknown_partition_is_stacked_and_a_table_still_skipped():
    model, x = FoldsItself(), torch.randn(2, 8, 3)
    with pytest.warns(UserWarning, match=r"table \(Table\): its axis 0 has 4 entries"):
        taken = capture.TorchCapture(model, x)
    [plan] = [r.layout for r in taken.records if r.path == "inner"]
    assert plan.source == "windows" and plan.windows == (4, "unknown")
    assert plan.source_shape == (8, 3)
    content = dict(plan.to_content(), kind="layer", layer="inner", layer_class="Linear",
                   order=0, samples=2)
    stored = metadata.create_summary_metadata(content).plugin_data.content
    assert metadata.parse_plugin_content(stored)["windows"] == {"count": 4,
                                                                "partition": "unknown"}
    with pytest.raises(ValueError, match="'windows'"):
        metadata.parse_plugin_content(metadata.create_summary_metadata(
            dict(content, windows={"count": 4, "partition": "spiral"})).plugin_data.content)


def test_a_merge_that_fails_is_the_old_skip_not_an_exception(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(windows, "put_back", broken)
    with pytest.warns(UserWarning, match="could not be put back: RuntimeError: boom"):
        taken = capture.TorchCapture(small_swin(), probe(64))
    assert not any(r.layout.windows and r.layout.source != "windows" for r in taken.records)
    with pytest.warns(UserWarning):
        assert tbat.log_activations(small_swin(), probe(64), step=0, log_dir=str(tmp_path))


def test_padded_shifted_windows_and_fused_attention():
    """A 14 x 14 map in 4 x 4 windows: padded to 16 x 16, shifted by 2; attention through
    F.scaled_dot_product_attention (its mask) is the explicit softmax's."""
    torch.manual_seed(0)
    model = swin_transformer.SwinTransformer(
        img_size=56, patch_size=4, window_size=4, embed_dim=16, depths=(2,), num_heads=(2,),
        num_classes=10).eval()
    x = probe(56)
    raw, drawn, plan = windowed_draw(model, x, "layers/0/blocks/1/attn/qkv")
    assert raw.shape == (2 * 16, 16, 48) and plan.windows == (16, "shifted_window")
    reference = swin_transformer.window_reverse(raw.view(-1, 4, 4, 48), (4, 4), 16, 16)
    reference = torch.roll(reference[:, :14, :14], shifts=(2, 2), dims=(1, 2))
    assert torch.equal(drawn, reference)

    def attention(fused):
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            taken = capture.TorchCapture(model, x)
        return taken.reduce()["layers/0/blocks/1/attn:attention_map"]

    explicit, fused = attention(False), attention(True)
    assert all(np.allclose(explicit[key], fused[key], atol=1e-4) for key in explicit
               if explicit[key].dtype.kind == "f")


def test_torchvision_swin_attention_map_pads_then_rolls():
    """torchvision's shifted_window_attention pads the map, rolls the padded map, and after
    the windows crops the rolled-back one: its mean-query maps come back in that order."""
    from torchvision.models import swin_transformer as tv_swin

    torch.manual_seed(0)
    model = tv_swin.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2],
                                    num_heads=[2], window_size=[4, 4], num_classes=10).eval()
    x = probe(56)
    probe_pass = capture.run_pass(model, x)
    [entry] = [e for e in probe_pass.attention if e.module_path == "features/1/1/attn"]
    context = capture.WindowContext(model, probe_pass.input_shapes, [], [])
    [_, (_, maps, plan, _)] = capture.window_attention_drawings(
        entry, 2, layout_lib.RenderOptions(), context)
    assert plan.windows == (16, "shifted_window") and maps.shape == (2, 14, 14, 2)
    padded = entry.mean_query.transpose(1, 2).reshape(2, 4, 4, 4, 4, 2)  # torchvision's reverse
    padded = padded.permute(0, 1, 3, 2, 4, 5).reshape(2, 16, 16, 2)
    assert torch.equal(maps, torch.roll(padded, shifts=(2, 2), dims=(1, 2))[:, :14, :14])
