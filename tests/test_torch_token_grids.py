"""token_grids: which (B, T, D) outputs of real vision transformers (random weights) are
k extra tokens then a rows x columns patch grid, and the pure rules behind it."""

import re
import warnings

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from tb_activations.capture import token_grids as rules
from tb_activations.torch import token_grids as tg

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
torchvision = pytest.importorskip("torchvision")


def probe_pass(model, probe):
    """(declared grids, observed grids, {path: first output tensor}) of one forward pass
    under hooks on every module, as the capture will see it."""
    model.eval()
    observed, outputs, handles = [], {}, []

    def hook(path):
        def after(module, args, output):
            grid = tg.observed_grid(module, output, args, path)
            if grid is not None:
                observed.append(grid)
            leaves = [output] if isinstance(output, torch.Tensor) else [
                value for value in (output.values() if isinstance(output, dict) else
                                    output if isinstance(output, (tuple, list)) else ())
                if isinstance(value, torch.Tensor)]
            if leaves and path not in outputs:
                outputs[path] = leaves[0]
        return after

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name.replace(".", "/"))))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(probe, dict):
                model(**probe)
            else:
                model(probe)
    finally:
        for handle in handles:
            handle.remove()
    return tg.declared_token_grids(model), observed, outputs


def assert_exact(split, out):
    """grid_tokens[b, r, c] is out[b, prefix + r * columns + c]; extra tokens out[:, :prefix]."""
    rows, columns, prefix = split.grid.rows, split.grid.columns, split.prefix
    assert split.grid_tokens.shape == (out.shape[0], rows, columns, out.shape[2])
    for b in range(out.shape[0]):
        for r in range(rows):
            for c in range(columns):
                assert torch.equal(split.grid_tokens[b, r, c, :],
                                   out[b, prefix + r * columns + c, :])
    if prefix:
        assert torch.equal(split.extra_tokens, out[:, :prefix])
    else:
        assert split.extra_tokens is None


def check_blocks(model, probe, block_pattern, grids, count=None):
    """Every output at a path matching `block_pattern` is (B, T, D) and splits onto one
    of `grids` ((rows, columns, prefix)) exactly; returns the grids met."""
    declared, observed, outputs = probe_pass(model, probe)
    blocks = {path: out for path, out in outputs.items() if re.fullmatch(block_pattern, path)}
    assert blocks, sorted(outputs)
    if count is not None:
        assert len(blocks) == count, sorted(blocks)
    met = set()
    for path, out in blocks.items():
        assert out.ndim == 3, (path, out.shape)
        split = tg.grid_for(path, out, None, declared, observed)
        assert split is not None, (path, tuple(out.shape), declared, observed)
        found = (split.grid.rows, split.grid.columns, split.prefix)
        assert found in grids, (path, found)
        assert_exact(split, out)
        met.add(found)
    return met


def image(size, batch=2):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))


# --- timm ---------------------------------------------------------------------------------

def test_timm_vit_tiny_one_class_token():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2)
    assert tg.declared_token_grids(model) == [rules.TokenGrid(14, 14, 1, "patch_embed")]
    assert check_blocks(model, image(224), r"blocks/\d+", {(14, 14, 1)}, 2) == {(14, 14, 1)}


def test_timm_deit_distilled_two_prefix_tokens():
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=1)
    assert [g.prefix_tokens for g in tg.declared_token_grids(model)] == [2]
    check_blocks(model, image(224), r"blocks/\d+", {(14, 14, 2)}, 1)


def test_timm_register_tokens_count_as_prefix():
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2,
                              reg_tokens=4, num_classes=3)
    assert tg.declared_token_grids(model) == [rules.TokenGrid(4, 4, 5, "patch_embed")]
    check_blocks(model, image(32), r"blocks/\d+", {(4, 4, 5)}, 1)


def test_timm_eva02_tiny():
    model = timm.create_model("eva02_tiny_patch14_224", pretrained=False, depth=1)
    check_blocks(model, image(224), r"blocks/\d+", {(16, 16, 1)}, 1)


def test_timm_crossvit_two_grids():
    model = timm.create_model("crossvit_tiny_240", pretrained=False)
    sizes = {(g.rows, g.columns) for g in tg.declared_token_grids(model)}
    assert sizes == {(20, 20), (14, 14)}
    met = check_blocks(model, image(240, batch=1), r"blocks/\d+/blocks/\d+/\d+",
                       {(20, 20, 1), (14, 14, 1)})
    assert met == {(20, 20, 1), (14, 14, 1)}


def test_timm_levit_tokens_on_the_resolution_of_their_attention():
    """LeViT has no patch embedding to declare or show its grid: its attention modules'
    `resolution` says it, so its Linear outputs (B, r·r, C) are drawn over r x r."""
    model = timm.create_model("levit_128s", pretrained=False, img_size=64).eval()
    sizes = {(g.rows, g.columns, g.prefix_tokens) for g in tg.declared_token_grids(model)}
    assert sizes == {(4, 4, 0), (2, 2, 0), (1, 1, 0)}
    met = check_blocks(model, image(64), r"stages/[01]/blocks/\d+/(attn/qkv|mlp/ln2)/linear",
                       {(4, 4, 0), (2, 2, 0)})
    assert met == {(4, 4, 0), (2, 2, 0)}


def test_timm_mixer_tokens_without_prefix():
    from timm.models.mlp_mixer import MlpMixer

    model = MlpMixer(img_size=64, patch_size=8, num_blocks=2, embed_dim=24, num_classes=3)
    check_blocks(model, image(64), r"blocks/\d+", {(8, 8, 0)}, 2)
    # The token-mixing MLP works on the transposed (B, D, T): not tokens on a grid.
    declared, observed, outputs = probe_pass(model, image(64))
    assert outputs["blocks/0/mlp_tokens"].shape == (2, 24, 64)
    assert tg.grid_for("blocks/0/mlp_tokens", outputs["blocks/0/mlp_tokens"], None,
                       declared, observed) is None


def test_timm_dynamic_img_size_grid_from_the_pass():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1,
                              dynamic_img_size=True)
    (declared,) = tg.declared_token_grids(model)
    assert (declared.rows, declared.columns, declared.prefix_tokens) == (None, None, 1)
    check_blocks(model, image(160), r"blocks/\d+", {(10, 10, 1)}, 1)


# --- torchvision and Hugging Face ---------------------------------------------------------

def test_torchvision_vision_transformer():
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2,
                              hidden_dim=16, mlp_dim=32)
    assert tg.declared_token_grids(model) == [rules.TokenGrid(4, 4, 1, "")]
    check_blocks(model, image(32), r"encoder/layers/encoder_layer_\d+", {(4, 4, 1)}, 1)


HF_VISION = dict(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=32)


def test_hugging_face_vit():
    model = transformers.ViTModel(transformers.ViTConfig(**HF_VISION))
    check_blocks(model, {"pixel_values": image(32)}, r"(encoder/)?layers?/\d+", {(4, 4, 1)}, 2)


def test_hugging_face_deit_distilled():
    model = transformers.DeiTModel(transformers.DeiTConfig(**HF_VISION))
    check_blocks(model, {"pixel_values": image(32)}, r"(encoder/)?layers?/\d+", {(4, 4, 2)}, 2)


def test_hugging_face_dinov2_and_registers():
    model = transformers.Dinov2Model(transformers.Dinov2Config(**HF_VISION))
    check_blocks(model, {"pixel_values": image(32)}, r"(encoder/)?layers?/\d+", {(4, 4, 1)}, 2)
    config = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **HF_VISION)
    model = transformers.Dinov2WithRegistersModel(config)
    assert [g.prefix_tokens for g in tg.declared_token_grids(model)] == [5]
    check_blocks(model, {"pixel_values": image(32)}, r"(encoder/)?layers?/\d+", {(4, 4, 5)}, 2)


def test_hugging_face_siglip_vision_has_no_class_token():
    model = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**HF_VISION))
    check_blocks(model, {"pixel_values": image(32)}, r".*encoder/layers/\d+", {(4, 4, 0)}, 2)


def test_hugging_face_clip_vision_at_another_size():
    """A probe larger than the config's image_size: the grid comes from the pass."""
    model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**HF_VISION))
    probe = {"pixel_values": image(48), "interpolate_pos_encoding": True}
    check_blocks(model, probe, r".*encoder/layers/\d+", {(6, 6, 1)}, 2)


def test_text_models_stay_sequences():
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32))
    gpt2 = transformers.GPT2Model(transformers.GPT2Config(
        vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=64))
    tokens = torch.randint(0, 50, (2, 17))
    for model in (bert, gpt2):
        declared, observed, outputs = probe_pass(model, {"input_ids": tokens})
        assert declared == [] and observed == []
        sequences = [(p, o) for p, o in outputs.items() if o.ndim == 3]
        assert sequences
        for path, out in sequences:
            assert tg.grid_for(path, out, None, declared, observed) is None, path


# --- the user's override ------------------------------------------------------------------

def test_token_grid_option_forces_and_refuses():
    out = torch.arange(2 * 13 * 5, dtype=torch.float32).reshape(2, 13, 5)
    assert tg.grid_for("a/b", out, None, [], []) is None
    split = tg.grid_for("a/b", out, (3, 4), [], [])
    assert (split.grid.rows, split.grid.columns, split.prefix) == (3, 4, 1)
    assert_exact(split, out)
    grids = [rules.TokenGrid(3, 4, None, "x")]
    assert tg.grid_for("a/b", out, None, grids, []).prefix == 1
    assert tg.grid_for("a/b", out, False, grids, []) is None
    assert tg.grid_for("a/b", out, {"a/*": False}, grids, []) is None
    assert tg.grid_for("a/b", out, {"b": False}, grids, []) is None  # a module's own name
    assert tg.grid_for("a/b:1", out, {"a/b": False}, grids, []) is None
    assert tg.grid_for("a/b", out, {"a/c": False}, grids, []) is not None
    assert tg.grid_for("a/b", out, {"a/b": (2, 6), "a/*": False}, [], []).grid.rows == 2
    assert tg.grid_for("a/b", out, {"a/b": None, "*": False}, grids, []) is not None


def test_option_messages_name_the_value():
    with pytest.raises(TypeError, match=r"token_grid must be None, False, \(rows, columns\)"
                                        r" or \{path: \(rows, columns\)\}, got 'x'"):
        rules.resolve_token_grid_option("x")
    with pytest.raises(ValueError, match=r"got \(0, 3\).*positive"):
        rules.resolve_token_grid_option((0, 3))
    with pytest.raises(ValueError, match=r"got \(1, 2, 3\).*2 entries"):
        rules.resolve_token_grid_option((1, 2, 3))
    with pytest.raises(TypeError, match=r"token_grid\['blocks/\*'\] must be \(rows, columns\)"
                                        r", False or None, got True"):
        rules.resolve_token_grid_option({"blocks/*": True})
    with pytest.raises(TypeError, match=r"got key 3"):
        rules.resolve_token_grid_option({3: (2, 2)})
    assert rules.resolve_token_grid_option([14, 14]) == (14, 14)
    assert rules.resolve_token_grid_option({"a": [2, 3], "b": False}) == {"a": (2, 3), "b": False}


# --- the pure rules -----------------------------------------------------------------------

sizes = st.integers(2, 24)


@given(rows=sizes, columns=sizes, extra=st.integers(0, rules.MAX_PREFIX_TOKENS),
       features=st.integers(1, 9), batch=st.integers(1, 3), declare=st.booleans())
def test_split_is_found_and_exact(rows, columns, extra, features, batch, declare):
    tokens = rows * columns + extra
    assume(features != tokens and extra < rows * columns)
    out = torch.randn(batch, tokens, features)
    grid = rules.TokenGrid(rows, columns, extra if declare else None, "g")
    split = tg.split_tokens(out, [grid])
    assert split is not None and split.prefix == extra and split.grid == grid
    assert torch.equal(split.grid_tokens.reshape(batch, rows * columns, features),
                       out[:, extra:])
    r, c = rows - 1, columns // 2
    assert torch.equal(split.grid_tokens[:, r, c], out[:, extra + r * columns + c])
    if extra:
        assert torch.equal(split.extra_tokens, out[:, :extra])


@given(rows=sizes, columns=sizes, extra=st.integers(0, 40), features=st.integers(1, 9))
def test_tokens_that_fit_no_grid_stay_a_sequence(rows, columns, extra, features):
    cells = rows * columns
    tokens = cells + extra if extra > rules.MAX_PREFIX_TOKENS else max(1, cells - 1 - extra)
    out = torch.zeros(1, tokens, features)
    assert tg.split_tokens(out, [rules.TokenGrid(rows, columns, None, "g")]) is None
    if tokens - cells not in (0, 1):
        assert tg.split_tokens(out, [rules.TokenGrid(rows, columns, 1, "g")]) is None


@given(rows=sizes, columns=sizes, extra=st.integers(0, rules.MAX_PREFIX_TOKENS))
def test_square_outputs_are_attention_maps_not_tokens(rows, columns, extra):
    assume(extra < rows * columns)  # more extra tokens than patches: not a grid
    tokens = rows * columns + extra
    out = torch.zeros(1, tokens, tokens)
    assert tg.split_tokens(out, [rules.TokenGrid(rows, columns, None, "g")]) is None
    assert tg.grid_for("p", out, (rows, columns), [], []) is not None


def test_choice_prefers_declared_prefix_then_fewest_extra_tokens():
    a, b = rules.TokenGrid(4, 4, None, "a"), rules.TokenGrid(3, 5, None, "b")
    assert rules.choose_grid(17, 8, [a, b]) == (a, 1)
    assert rules.choose_grid(17, 8, [b, a]) == (a, 1)
    declared = rules.TokenGrid(3, 5, 2, "c")
    assert rules.choose_grid(17, 8, [a, declared]) == (declared, 2)
    assert rules.choose_grid(15, 8, [declared]) == (declared, 0)  # the patch embedding's own
    assert rules.choose_grid(16, 8, [declared]) is None


def test_downsampled_grids_of_hierarchical_models():
    observed = [rules.TokenGrid(56, 56, None, "patch_embed")]
    sizes = [(g.rows, g.columns) for g in rules.candidate_grids([], observed)]
    assert sizes == [(56, 56), (28, 28), (14, 14), (7, 7), (4, 4)]
    assert rules.candidate_grids([], observed, downsampled=False) == observed
    # A grid with a class token is a plain ViT's: no downsampled grids.
    assert len(rules.candidate_grids([rules.TokenGrid(14, 14, 1, "p")], [])) == 1
    out = torch.zeros(1, 49, 8)
    assert tg.grid_for("stage3", out, None, [], observed).grid.rows == 7
    assert tg.split_tokens(torch.zeros(1, 50, 8), rules.candidate_grids([], observed)) is None


def test_observed_grids_lend_declared_prefix_counts():
    dynamic = rules.TokenGrid(None, None, 1, "patch_embed")
    observed = rules.TokenGrid(10, 10, None, "patch_embed/proj")
    assert rules.candidate_grids([dynamic], [observed]) == [rules.TokenGrid(10, 10, 1,
                                                                      "patch_embed/proj")]
    elsewhere = rules.TokenGrid(10, 10, None, "other/proj")
    assert rules.candidate_grids([dynamic], [elsewhere])[0].prefix_tokens is None


@given(st.one_of(st.text(max_size=5), st.floats(), st.booleans(), st.binary(max_size=3),
                 st.tuples(st.integers(-3, 0), st.integers()),
                 st.tuples(st.floats(), st.floats()),
                 st.lists(st.integers(1, 5), min_size=3, max_size=4),
                 st.dictionaries(st.text(min_size=1, max_size=3),
                                 st.one_of(st.text(max_size=2), st.just(True),
                                           st.tuples(st.integers(-2, 0), st.integers(1, 3))),
                                 min_size=1, max_size=2)))
def test_junk_options_raise_naming_the_value(value):
    if value is False:
        return
    with pytest.raises((TypeError, ValueError)) as raised:
        rules.resolve_token_grid_option(value)
    message = str(raised.value)
    assert "token_grid" in message
    if isinstance(value, dict):
        key, entry = next(iter(value.items()))
        assert repr(entry) in message or repr(key) in message
    else:
        assert repr(value) in message or repr(list(value)) in message


@given(st.integers(1, 300), st.integers(1, 20), st.integers(1, 20), st.integers(0, 3),
       st.integers(1, 2))
def test_conv_output_size_matches_torch(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span or padding > kernel // 2:
        return
    conv = torch.nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False)
    with torch.no_grad():
        height, width = conv(torch.zeros(1, 1, size, size)).shape[2:]
    assert rules.conv_output_size((size, size), kernel, stride, padding, dilation) == (height,
                                                                                    width)


def test_observed_grids_come_from_patch_embeddings_only():
    x = torch.zeros(1, 3, 32, 48)
    patches = torch.nn.Conv2d(3, 8, 8, stride=8)
    assert tg.observed_grid(patches, patches(x), (x,), "p") == rules.TokenGrid(4, 6, None, "p")
    valid = torch.nn.Conv2d(3, 8, 4, stride=4, padding="valid")
    assert tg.observed_grid(valid, valid(x)).rows == 8
    for conv in (torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.Conv2d(3, 8, 1),
                 torch.nn.Conv2d(3, 8, 4, stride=4, padding=1)):
        assert tg.observed_grid(conv, conv(x), (x,)) is None
    unfold = torch.nn.Unfold(kernel_size=4, stride=4)
    assert (tg.observed_grid(unfold, unfold(x), (x,)).rows,
            tg.observed_grid(unfold, unfold(x), (x,)).columns) == (8, 12)
    assert tg.observed_grid(torch.nn.Linear(48, 4), torch.zeros(1, 32, 4), (x,)) is None
