"""Attention rollout on PyTorch (issue 16 item 6): accumulated on the device in the one probe
pass, checked against a numpy loop over attention computed independently of the capture (by
hand from timm's q/k projections, by nn.MultiheadAttention asked for its weights, by Hugging
Face's output_attentions), logged as one map per probe sample over the patch grid, and absent,
without a warning, where a model is not a ViT-style stack."""

import warnings

import numpy as np
import pytest
import timm
import torch
import torchvision
import transformers
from torch import nn

import tb_activations as tba
import tb_activations.torch as tbat
from tests.rollout_reference import reference_rollout
from tests.tiles import quantum, tile


def input_of(modules):
    """({index: the first argument of the first call of modules[index]}, the hooks' handles)."""
    seen = {}

    def keep(index, args):
        seen.setdefault(index, args[0].detach().clone())

    handles = [module.register_forward_pre_hook(lambda module, args, _i=i: keep(_i, args))
               for i, module in enumerate(modules)]
    return seen, handles


def timm_vit(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10,
                             img_size=64, **kwargs).eval()


def timm_attention_by_hand(model, images):
    """Each block's (B, heads, T, T) softmax(q kᵀ · scale) from its own qkv projection of the
    input its attention module saw, in float64 (no capture involved)."""
    attentions = [block.attn for block in model.blocks]
    seen, handles = input_of(attentions)
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    layers = []
    with torch.no_grad():
        for i, attn in enumerate(attentions):
            x = seen[i].double()
            batch, tokens, _ = x.shape
            qkv = torch.nn.functional.linear(x, attn.qkv.weight.double(),
                                             attn.qkv.bias.double())
            q, k, _ = qkv.reshape(batch, tokens, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
            layers.append(torch.softmax(q @ k.transpose(-2, -1) * attn.scale, dim=-1).numpy())
    return layers


@pytest.mark.parametrize("fused", [True, False])  # F.scaled_dot_product_attention, softmax
def test_timm_vit_rollout_matches_a_numpy_loop_over_its_attention(fused):
    model = timm_vit()
    for block in model.blocks:
        block.attn.fused_attn = fused
    images = torch.rand(2, 3, 64, 64)
    want = reference_rollout(timm_attention_by_hand(model, images), (4, 4, 1))
    activations = tbat.get_activations(model, images)
    assert list(activations)[-1] == "VisionTransformer:attention_rollout"
    got = activations["VisionTransformer:attention_rollout"]
    assert got.shape == (2, 4, 4)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_torchvision_vit_rollout_matches_multihead_attentions_own_weights():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=48, patch_size=8, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64,
        num_classes=5).eval()
    layers = [layer.self_attention for layer in model.encoder.layers]
    seen, handles = input_of(layers)
    images = torch.rand(3, 3, 48, 48)
    with torch.no_grad():
        model(images)
        for handle in handles:
            handle.remove()
        attention = [module(seen[i], seen[i], seen[i], need_weights=True,
                            average_attn_weights=False)[1].numpy()
                     for i, module in enumerate(layers)]
    got = tbat.get_activations(model, images)["VisionTransformer:attention_rollout"]
    np.testing.assert_allclose(got, reference_rollout(attention, (6, 6, 1)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_hugging_face_vit_rollout_matches_its_output_attentions(implementation):
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=3, num_attention_heads=4,
                                    intermediate_size=48, attn_implementation=implementation)
    model = transformers.ViTModel(config, add_pooling_layer=False).eval()
    reference_model = transformers.ViTModel(
        transformers.ViTConfig(**{**config.to_dict(), "attn_implementation": "eager"}),
        add_pooling_layer=False).eval()
    reference_model.load_state_dict(model.state_dict())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        attentions = reference_model(pixel_values=images, output_attentions=True).attentions
    assert len(attentions) == 3
    got = tbat.get_activations(model, {"pixel_values": images})["ViTModel:attention_rollout"]
    np.testing.assert_allclose(got, reference_rollout([a.numpy() for a in attentions],
                                                      (4, 4, 1)), atol=1e-4, rtol=0)


def test_the_logged_rollout_is_one_map_per_sample_over_the_grid(tmp_path):
    model, images = timm_vit(), torch.rand(3, 3, 64, 64)
    assert tbat.log_activations(model, images, step=2, log_dir=str(tmp_path))
    tbat.flush()
    want = tbat.get_activations(model, images)["VisionTransformer:attention_rollout"]
    records = sorted((r for r in tba.read_activations(str(tmp_path))
                      if r.layer == "VisionTransformer:attention_rollout"),
                     key=lambda r: r.sample)
    assert [r.sample for r in records] == [0, 1, 2]
    tiling = records[0].tiling
    assert tiling["source"] == "attention_rollout" and tiling["layer_class"] == "AttentionRollout"
    assert tiling["token_grid"] == {"rows": 4, "columns": 4, "prefix_tokens": 1}
    assert tiling["output_shape"] == [None, 4, 4, 1] and tiling["channels_total"] == 1
    assert tiling["order"] == max(r.tiling["order"] for r in tba.read_activations(str(tmp_path)))
    for record in records:
        np.testing.assert_allclose(tile(record, 0), want[record.sample],
                                   atol=quantum(want[record.sample]))


def test_attention_false_or_a_layer_selection_has_no_rollout():
    model, images = timm_vit(), torch.rand(1, 3, 64, 64)
    assert not [name for name in tbat.get_activations(model, images, attention=False)
                if "rollout" in name]
    assert not [name for name in tbat.get_activations(
        model, images, layers=["blocks/*/attn"]) if "rollout" in name]


class SharedBlock(nn.Module):
    """One timm block applied twice: a module whose attention is computed twice a pass."""

    def __init__(self):
        super().__init__()
        self.vit = timm_vit(depth=1)

    def forward(self, x):
        tokens = self.vit.patch_embed(x)
        tokens = self.vit._pos_embed(tokens)
        block = self.vit.blocks[0]
        return block(block(tokens))


def text_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    return nn.Sequential(nn.Linear(4, 16), nn.TransformerEncoder(layer, 2)).eval()


def swin():
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=56,
                             window_size=7, depths=(1, 1), num_heads=(1, 2), embed_dim=16,
                             num_classes=3).eval()


@pytest.mark.parametrize("build, probe", [
    (lambda: timm_vit(class_token=False, global_pool="avg"), (2, 3, 64, 64)),  # no class token
    (text_encoder, (2, 7, 4)),  # no patch grid
    (swin, (2, 3, 56, 56)),  # windows folded into the batch axis, token counts that change
    (SharedBlock, (2, 3, 64, 64)),  # a module attending twice a pass
], ids=["no_class_token", "text", "swin", "shared_block"])
def test_a_model_rollout_does_not_describe_has_none_and_no_warning(build, probe, tmp_path):
    model, inputs = build(), torch.rand(*probe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        activations = tbat.get_activations(model, inputs)
        assert tbat.log_activations(model, inputs, step=0, log_dir=str(tmp_path))
        tbat.flush()
    assert any(name.endswith(":attention") for name in activations)
    assert not [name for name in activations if "rollout" in name]
    assert not [r for r in tba.read_activations(str(tmp_path)) if "rollout" in r.layer]
