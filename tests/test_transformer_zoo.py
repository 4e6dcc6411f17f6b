"""Issue 16's "Done when" sweep: a zoo of transformers, each built small with random weights,
logged for one step and read back. For every model:

- no module whose output depends on the batch is skipped ("tb-activations skips modules it
  cannot draw"); the ones that are skipped have an output with no batch axis at all
  (position tables, relative-position bias MLPs): the same shape for a probe of 2 and of 3;
- every attention module, found independently of the capture (the innermost modules whose
  class name says Attention, nn.MultiheadAttention; their count is the config's), has a
  `path:attention` record of output_shape [None, heads, Tq, Tk] as the config says;
- vision models: block outputs are token grids (or NHWC maps, Swin) of the expected grid;
  with a class token, `path:attention_map` from the class token;
- attention values equal a reference for at least one layer per family: Hugging Face models
  against their eager twin's output_attentions (same weights), timm and torchvision against
  softmax(q kᵀ scale [+ bias]) from the module's own q/k (the qkv Linear's output), Keras
  against the layer's weights.

keras-hub's backbones (ViT, BERT, GPT-2, Llama) have their own sweep, on every Keras backend:
tests/test_keras_hub.py.
"""

import copy
import dataclasses
import functools
import re
import warnings
from typing import Callable

import numpy as np
import pytest
import timm
import torch
import torchvision
import transformers

import tb_activations as tba
import tb_activations.torch as tbat

SKIP_WARNING = "tb-activations skips modules it cannot draw: "
BATCH = 2


def images(size, batch=BATCH):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))


def ids(length, batch=BATCH, seed=1):
    return torch.randint(1, 100, (batch, length), generator=torch.Generator().manual_seed(seed))


HF = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def timm_model(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kwargs).eval()


def hf_model(model_class, config):
    torch.manual_seed(0)
    return model_class(config).eval()


@dataclasses.dataclass
class Zoo:
    """One model: `build()` the module, `probe(batch)` its input, `attention` the number of
    attention modules the config gives, `shape(path)` (heads, Tq, Tk) of each, `grids`
    {output path: (rows, columns, prefix tokens)} of block outputs on a token grid, `maps`
    {output path: (H, W, C)} of NHWC block outputs, `class_token`: its attention modules
    draw the class token's map, `reference(model, probe)`: [(attention path, probabilities)]."""
    build: Callable
    probe: Callable
    attention: int
    shape: Callable
    grids: dict = dataclasses.field(default_factory=dict)
    maps: dict = dataclasses.field(default_factory=dict)
    class_token: bool = False
    reference: Callable = None


# --- references ---------------------------------------------------------------------------

def softmax_from_qkv(qkv, heads, bias=None):
    """softmax(q kᵀ / sqrt(d) + bias) of a timm qkv Linear's output (N, T, 3·heads·d)."""
    qkv = torch.as_tensor(qkv, dtype=torch.float64)
    entries, tokens, _ = qkv.shape
    q, k, _ = qkv.reshape(entries, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    if bias is not None:
        scores = scores + bias.to(torch.float64)
    return torch.softmax(scores, dim=-1).numpy()


def timm_qkv_reference(*attention_paths):
    def reference(model, probe):
        modules = dict(model.named_modules())
        arrays = tbat.get_activations(model, probe, layers=[p + "/qkv" for p in attention_paths])
        return [(path + ":attention", softmax_from_qkv(
            arrays[path + "/qkv"], modules[path.replace("/", ".")].num_heads))
            for path in attention_paths]
    return reference


def timm_swin_reference(model, probe):
    """The first (unshifted) block's window attention: its relative-position bias added."""
    path = "layers/0/blocks/0/attn"
    module = model.layers[0].blocks[0].attn
    with torch.no_grad():
        bias = module._get_rel_pos_bias()
    qkv = tbat.get_activations(model, probe, layers=[path + "/qkv"])[path + "/qkv"]
    return [(path + ":attention", softmax_from_qkv(qkv, module.num_heads, bias))]


def timm_levit_reference(model, probe):
    """LeViT's attention: q, k split off its qkv LinearNorm's output, its attention biases."""
    path = "stages/0/blocks/0/attn"
    module = model.stages[0].blocks[0].attn
    qkv = torch.from_numpy(tbat.get_activations(model, probe, layers=[path + "/qkv"])[
        path + "/qkv"]).to(torch.float64)
    entries, tokens, _ = qkv.shape
    q, k, _ = qkv.view(entries, tokens, module.num_heads, -1).split(
        [module.key_dim, module.key_dim, module.val_dim], dim=3)
    with torch.no_grad():
        bias = module.get_attention_biases(qkv.device).to(torch.float64)
    scores = q.permute(0, 2, 1, 3) @ k.permute(0, 2, 3, 1) * module.scale + bias
    return [(path + ":attention", torch.softmax(scores, dim=-1).numpy())]


def timm_maxvit_reference(model, probe):
    """MaxViT's window attention (head-first qkv, one relative-position bias table)."""
    path = "stages/1/blocks/0/attn_block/attn"
    module = model.stages[1].blocks[0].attn_block.attn
    assert module.head_first
    qkv = torch.from_numpy(tbat.get_activations(model, probe, layers=[path + "/qkv"])[
        path + "/qkv"]).to(torch.float64)
    q, k, _ = qkv.view(qkv.shape[0], -1, module.num_heads, module.dim_head * 3).transpose(
        1, 2).chunk(3, dim=3)
    with torch.no_grad():
        bias = module.rel_pos.get_bias().to(torch.float64)
    scores = q @ k.transpose(-2, -1) * module.scale + bias
    return [(path + ":attention", torch.softmax(scores, dim=-1).numpy())]


def torchvision_swin_reference(model, probe):
    """torchvision's first (unshifted) Swin block: its norm1 output cut into 4 x 4 windows
    (row-major, as shifted_window_attention cuts them), q, k by its qkv weights, its
    relative-position bias."""
    block = "features/1/0"
    module = model.features[1][0].attn
    x = torch.from_numpy(tbat.get_activations(model, probe, layers=[block + "/norm1"])[
        block + "/norm1"])
    batch, height, width, channels = x.shape
    rows, columns = module.window_size
    windows = x.view(batch, height // rows, rows, width // columns, columns, channels).permute(
        0, 1, 3, 2, 4, 5).reshape(-1, rows * columns, channels)
    with torch.no_grad():
        qkv = torch.nn.functional.linear(windows, module.qkv.weight, module.qkv.bias)
        bias = module.get_relative_position_bias()
    return [(block + "/attn:attention", softmax_from_qkv(qkv, module.num_heads, bias))]


def torchvision_mha_reference(model, probe):
    """nn.MultiheadAttention's own per-head weights on its input (ln_1's output)."""
    layer = "encoder/layers/encoder_layer_0"
    x = torch.from_numpy(tbat.get_activations(model, probe, layers=[layer + "/ln_1"])[
        layer + "/ln_1"])
    module = model.encoder.layers[0].self_attention
    with torch.no_grad():
        _, weights = module(x, x, x, need_weights=True, average_attn_weights=False)
    return [(layer + "/self_attention:attention", weights.numpy())]


def hf_eager_reference(groups):
    """The eager twin's output_attentions (same weights): `groups` [(output field, path
    pattern with {i})], the field's tuple one entry per layer."""
    def reference(model, probe):
        twin = copy.deepcopy(model)
        twin.set_attn_implementation("eager")
        with torch.no_grad():
            outputs = twin(**probe, output_attentions=True)
        return [(pattern.format(i=i) + ":attention", attentions.numpy())
                for field, pattern in groups
                for i, attentions in enumerate(getattr(outputs, field))]
    return reference


# --- the zoo -------------------------------------------------------------------------------

def levit_shape(path):
    """levit_128s at 64 px: 4 x 4 tokens, then 2 x 2, then 1; heads (4, 6, 8), the
    attention downsamplings 8 and 16 heads from the finer grid's keys."""
    stage = int(path.split("/")[1])
    if "downsample" in path:
        return {1: (8, 4, 16), 2: (16, 1, 4)}[stage]
    return {0: (4, 16, 16), 1: (6, 4, 4), 2: (8, 1, 1)}[stage]


def crossvit_shape(path):
    """crossvit_tiny at 120 px: 10 x 10 patches of 12 (branch 0) and 7 x 7 of 16 at 112 px
    (branch 1), each with a class token; fusion i: one branch's class token over the other
    branch's tokens (fusion 0 over branch 1's 50, fusion 1 over branch 0's 101)."""
    branch = int(path.split("/")[3])
    if "/fusion/" in path:
        return (3, 1, (50, 101)[branch])
    tokens = (101, 50)[branch]
    return (3, tokens, tokens)


def whisper_config():
    return transformers.WhisperConfig(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37, num_mel_bins=8,
        max_source_positions=16, max_target_positions=16, vocab_size=100, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)


def whisper_shape(path):
    """32 mel frames -> 16 encoder tokens; 5 decoder tokens."""
    if path.startswith("encoder"):
        return (2, 16, 16)
    return (2, 5, 5) if path.endswith("self_attn") else (2, 5, 16)


def t5_shape(path):
    if path.startswith("encoder"):
        return (2, 8, 8)
    return (2, 5, 5) if path.endswith("SelfAttention") else (2, 5, 8)


ZOO = {
    "timm-vit_tiny": Zoo(
        lambda: timm_model("vit_tiny_patch16_224", img_size=64, depth=2),
        lambda batch=BATCH: images(64, batch), 2, lambda path: (3, 17, 17),
        grids={"blocks/1/mlp/fc2": (4, 4, 1), "norm": (4, 4, 1)}, class_token=True,
        reference=timm_qkv_reference("blocks/0/attn", "blocks/1/attn")),
    "timm-deit_tiny": Zoo(
        lambda: timm_model("deit_tiny_patch16_224", img_size=64, depth=2),
        lambda batch=BATCH: images(64, batch), 2, lambda path: (3, 17, 17),
        grids={"blocks/1/mlp/fc2": (4, 4, 1), "norm": (4, 4, 1)}, class_token=True,
        reference=timm_qkv_reference("blocks/1/attn")),
    "timm-swin": Zoo(
        lambda: timm_model("swin_tiny_patch4_window7_224", img_size=64, window_size=4,
                           embed_dim=16, depths=(2, 2), num_heads=(2, 2)),
        lambda batch=BATCH: images(64, batch), 4, lambda path: (2, 16, 16),
        grids={"layers/0/blocks/1/mlp/fc2": (16, 16, 0), "layers/1/blocks/1/mlp/fc2": (8, 8, 0),
               "layers/0/blocks/1/attn/proj": (16, 16, 0)},
        maps={"layers/0/blocks/1/norm1": (16, 16, 16), "norm": (8, 8, 32)},
        reference=timm_swin_reference),
    "timm-maxvit_pico": Zoo(  # partition 64 / 32 = 2: windows and grids of 2 x 2 tokens
        lambda: timm_model("maxvit_pico_rw_256", img_size=64),
        lambda batch=BATCH: images(64, batch), 22,
        lambda path: (2 ** int(path.split("/")[1]), 4, 4),
        grids={"stages/0/blocks/0/attn_block/attn/proj": (16, 16, 0),
               "stages/1/blocks/1/attn_grid/attn/proj": (8, 8, 0),
               "stages/2/blocks/4/attn_grid/attn/proj": (4, 4, 0)},
        maps={"stages/0/blocks/1/attn_grid/mlp/fc2": (16, 16, 32)},
        reference=timm_maxvit_reference),
    "timm-maxvit_rmlp_pico": Zoo(  # relative-position MLPs: tables with no batch axis
        lambda: timm_model("maxvit_rmlp_pico_rw_256", img_size=64),
        lambda batch=BATCH: images(64, batch), 22,
        lambda path: (2 ** int(path.split("/")[1]), 4, 4),
        grids={"stages/0/blocks/0/attn_block/attn/proj": (16, 16, 0)}),
    "timm-levit_128s": Zoo(
        lambda: timm_model("levit_128s", img_size=64),
        lambda batch=BATCH: images(64, batch), 11, levit_shape,
        grids={"stages/0/blocks/1/mlp/ln2/bn": (4, 4, 0),
               "stages/1/blocks/2/mlp/ln2/bn": (2, 2, 0),
               "stages/0/blocks/1/mlp/ln2/linear": (4, 4, 0),
               "stages/1/blocks/0/attn/qkv/linear": (2, 2, 0)},
        reference=timm_levit_reference),
    "timm-mobilevit_xxs": Zoo(  # 2 x 2 patches unfolded: 4 entries a sample
        lambda: timm_model("mobilevit_xxs"),
        lambda batch=BATCH: images(64, batch), 9,
        lambda path: {"2": (4, 16, 16), "3": (4, 4, 4), "4": (4, 1, 1)}[path.split("/")[1]],
        grids={"stages/2/1/transformer/1/mlp/fc2": (8, 8, 0),
               "stages/3/1/transformer/3/mlp/fc2": (4, 4, 0)},
        reference=timm_qkv_reference("stages/2/1/transformer/0/attn")),
    "timm-eva02_tiny": Zoo(
        lambda: timm_model("eva02_tiny_patch14_224", img_size=56, depth=2),
        lambda batch=BATCH: images(56, batch), 2, lambda path: (3, 17, 17),
        grids={"blocks/1/mlp/fc2": (4, 4, 1), "blocks/0/norm1": (4, 4, 1)}, class_token=True),
    "timm-crossvit_tiny": Zoo(
        lambda: timm_model("crossvit_tiny_240", img_size=120, depth=((1, 1, 0),) * 2),
        lambda batch=BATCH: images(120, batch), 8,
        crossvit_shape,
        grids={"blocks/1/blocks/0/0/mlp/fc2": (10, 10, 1),
               "blocks/1/blocks/1/0/mlp/fc2": (7, 7, 1)}, class_token=True,
        reference=timm_qkv_reference("blocks/0/blocks/0/0/attn", "blocks/1/blocks/1/0/attn")),
    "torchvision-vit": Zoo(
        lambda: torchvision.models.VisionTransformer(
            image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
            mlp_dim=64).eval(),
        lambda batch=BATCH: images(64, batch), 2, lambda path: (2, 17, 17),
        grids={"encoder/layers/encoder_layer_1/mlp/3": (4, 4, 1), "encoder/ln": (4, 4, 1)},
        class_token=True, reference=torchvision_mha_reference),
    "torchvision-swin": Zoo(
        lambda: torchvision.models.SwinTransformer(
            patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 2],
            window_size=[4, 4]).eval(),
        lambda batch=BATCH: images(64, batch), 4, lambda path: (2, 16, 16),
        maps={"features/1/1/mlp/3": (16, 16, 16), "features/3/1/norm2": (8, 8, 32)},
        reference=torchvision_swin_reference),
    "hf-vit": Zoo(
        lambda: hf_model(transformers.ViTModel,
                         transformers.ViTConfig(**HF, image_size=32, patch_size=8)),
        lambda batch=BATCH: {"pixel_values": images(32, batch)}, 2, lambda path: (2, 17, 17),
        grids={"layers/1/mlp/fc2": (4, 4, 1), "layernorm": (4, 4, 1)}, class_token=True,
        reference=hf_eager_reference([("attentions", "layers/{i}/attention")])),
    "hf-bert": Zoo(
        lambda: hf_model(transformers.BertModel, transformers.BertConfig(**HF, vocab_size=100)),
        lambda batch=BATCH: {"input_ids": ids(8, batch)}, 2, lambda path: (2, 8, 8),
        reference=hf_eager_reference([("attentions", "encoder/layer/{i}/attention/self")])),
    "hf-gpt2": Zoo(
        lambda: hf_model(transformers.GPT2Model, transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=2, n_inner=37, vocab_size=100, bos_token_id=1,
            eos_token_id=2)),
        lambda batch=BATCH: {"input_ids": ids(8, batch)}, 2, lambda path: (2, 8, 8),
        reference=hf_eager_reference([("attentions", "h/{i}/attn")])),
    "hf-llama": Zoo(
        lambda: hf_model(transformers.LlamaModel, transformers.LlamaConfig(
            **HF, num_key_value_heads=1, vocab_size=100)),
        lambda batch=BATCH: {"input_ids": ids(8, batch)}, 2, lambda path: (2, 8, 8),
        reference=hf_eager_reference([("attentions", "layers/{i}/self_attn")])),
    "hf-whisper": Zoo(
        lambda: hf_model(transformers.WhisperModel, whisper_config()),
        lambda batch=BATCH: {"input_features": torch.rand(
            batch, 8, 32, generator=torch.Generator().manual_seed(batch)),
            "decoder_input_ids": ids(5, batch)}, 6, whisper_shape,
        reference=hf_eager_reference([
            ("encoder_attentions", "encoder/layers/{i}/self_attn"),
            ("decoder_attentions", "decoder/layers/{i}/self_attn"),
            ("cross_attentions", "decoder/layers/{i}/encoder_attn")])),
    "hf-t5": Zoo(
        lambda: hf_model(transformers.T5Model, transformers.T5Config(
            d_model=32, d_kv=16, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=2,
            vocab_size=100)),
        lambda batch=BATCH: {"input_ids": ids(8, batch), "decoder_input_ids": ids(5, batch, 2)},
        6, t5_shape,
        reference=hf_eager_reference([
            ("encoder_attentions", "encoder/block/{i}/layer/0/SelfAttention"),
            ("decoder_attentions", "decoder/block/{i}/layer/0/SelfAttention"),
            ("cross_attentions", "decoder/block/{i}/layer/1/EncDecAttention")])),
}


# --- one logged step per model, shared by the tests ---------------------------------------

@dataclasses.dataclass
class Logged:
    model: torch.nn.Module
    records: dict  # layer -> tiling of sample 0
    skipped: list  # the names the skip warning lists
    warnings: list


def skipped_names(message):
    """The output names a skip warning lists ("name (Class): reason; ...")."""
    return [re.match(r"(\S+) \(", part).group(1)
            for part in message[len(SKIP_WARNING):].split("; ") if re.match(r"\S+ \(", part)]


@functools.lru_cache(maxsize=None)
def logged(name, logdir):
    zoo = ZOO[name]
    model = zoo.build()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tbat.log_activations(model, zoo.probe(), step=0, log_dir=logdir)
        tbat.flush()  # the rendering's warnings are caught here too
    messages = [str(w.message) for w in caught if "tb-activations" in str(w.message)]
    skipped = [skip for message in messages if message.startswith(SKIP_WARNING)
               for skip in skipped_names(message)]
    records = {r.layer: r.tiling for r in tba.read_activations(logdir) if r.sample == 0}
    return Logged(model, records, skipped, messages)


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


def log_of(name, zoo_dir):
    return logged(name, str(zoo_dir / name))


def attention_modules(model):
    """Paths of the innermost modules whose class name says Attention (and
    nn.MultiheadAttention): the modules that compute attention, found from the model alone."""
    def is_attention(module):
        return isinstance(module, torch.nn.MultiheadAttention) or \
            "Attention" in type(module).__name__
    return [name.replace(".", "/") for name, module in model.named_modules()
            if is_attention(module) and not any(
                is_attention(child) for child in module.modules() if child is not module)]


@pytest.mark.parametrize("name", list(ZOO))
def test_every_batch_dependent_module_is_drawn(name, zoo_dir):
    log = log_of(name, zoo_dir)
    assert not [m for m in log.warnings if not m.startswith(SKIP_WARNING)], log.warnings
    if not log.skipped:
        return
    zoo = ZOO[name]
    layers = sorted({skip.split(":")[0] for skip in log.skipped})
    two = tbat.get_activations(log.model, zoo.probe(2), layers=layers, attention=False)
    three = tbat.get_activations(log.model, zoo.probe(3), layers=layers, attention=False)
    for skip in log.skipped:  # no batch axis at all: the output does not follow the batch
        assert two[skip].shape == three[skip].shape, (skip, two[skip].shape)


@pytest.mark.parametrize("name", list(ZOO))
def test_every_attention_module_has_its_heads(name, zoo_dir):
    log, zoo = log_of(name, zoo_dir), ZOO[name]
    found = attention_modules(log.model)
    assert len(found) == zoo.attention
    drawn = [layer[:-len(":attention")] for layer in log.records
             if layer.endswith(":attention")]
    assert sorted(drawn) == sorted(found)
    for path in found:
        tiling = log.records[path + ":attention"]
        assert tiling["source"] == "attention"
        assert tiling["output_shape"] == [None, *zoo.shape(path)], path
        if zoo.class_token:
            mapped = log.records[path + ":attention_map"]
            assert mapped["source"] == "attention_map"
            assert mapped["attention_query"] == "class_token"


@pytest.mark.parametrize("name", [n for n in ZOO if ZOO[n].grids or ZOO[n].maps])
def test_block_outputs_lie_on_their_grid(name, zoo_dir):
    log, zoo = log_of(name, zoo_dir), ZOO[name]
    for path, (rows, columns, prefix) in zoo.grids.items():
        tiling = log.records[path]
        assert tiling["source"] == "token_grid", path
        assert tiling["token_grid"] == {"rows": rows, "columns": columns,
                                        "prefix_tokens": prefix}, path
        assert tiling["output_shape"][1:3] == [rows, columns]
        if prefix:
            assert log.records[path + ":prefix_tokens"]["source"] == "prefix_tokens"
    for path, shape in zoo.maps.items():
        tiling = log.records[path]
        assert tiling["output_shape"] == [None, *shape], path
        assert tiling["channels_first"] is False


@pytest.mark.parametrize("name", [n for n in ZOO if ZOO[n].reference])
def test_attention_values_equal_a_reference(name):
    zoo = ZOO[name]
    model, probe = zoo.build(), zoo.probe()
    arrays = tbat.get_activations(model, probe)
    references = zoo.reference(model, probe)
    assert references
    for path, want in references:
        np.testing.assert_allclose(arrays[path], want, atol=1e-4, err_msg=path)


@pytest.mark.parametrize("name", list(ZOO))
def test_no_output_is_drawn_as_windows_of_an_unknown_partition(name, zoo_dir):
    log = log_of(name, zoo_dir)
    # Whisper's position table (an Embedding of arange(16)) and T5's relative attention bias
    # ((8, 8) buckets) have B·n entries at batch 2 but were called on indices, not windows.
    unknown = [layer for layer, tiling in log.records.items()
               if (tiling.get("windows") or {}).get("partition") == "unknown"]
    assert not unknown


# A class token, a patch grid, every attention module self-attention over the same tokens
# once a pass: the models an attention rollout describes. Swin, MaxViT, LeViT, MobileViT
# (windows, token counts that change), CrossViT (two branches of different lengths, cross
# attention) and the text models have none.
ROLLOUT_MODELS = {"timm-vit_tiny", "timm-deit_tiny", "timm-eva02_tiny", "torchvision-vit",
                  "hf-vit"}


@pytest.mark.parametrize("name", list(ZOO))
def test_vit_style_models_and_only_they_have_an_attention_rollout(name, zoo_dir):
    log, zoo = log_of(name, zoo_dir), ZOO[name]
    rollouts = [tiling for tiling in log.records.values()
                if tiling.get("source") == "attention_rollout"]
    assert len(rollouts) == (name in ROLLOUT_MODELS)
    if rollouts:
        (rows, columns, prefix), = set(zoo.grids.values())
        assert rollouts[0]["token_grid"] == {"rows": rows, "columns": columns,
                                             "prefix_tokens": prefix}
        assert rollouts[0]["layer"] == type(log.model).__name__ + ":attention_rollout"


# --- Keras --------------------------------------------------------------------------------

def test_keras_vit_from_multi_head_attention(tmp_path):
    keras = pytest.importorskip("keras")
    from tests import keras_transformers_worker as work

    keras.utils.set_random_seed(0)
    model, x = work.vit(), work.images()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tba.log_activations(model, x, step=0, log_dir=str(tmp_path))
    assert not [w for w in caught if "tb-activations skips" in str(w.message)]
    records = {r.layer: r.tiling for r in tba.read_activations(str(tmp_path)) if r.sample == 0}
    found = [layer.name for layer in model.layers
             if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert found == ["attention0", "attention1"]
    assert sorted(p[:-len(":attention")] for p in records if p.endswith(":attention")) == found
    grid = work.GRID
    for path in found:
        assert records[path + ":attention"]["output_shape"] == [
            None, work.HEADS, grid * grid + 1, grid * grid + 1]
        assert records[path + ":attention_map"]["attention_query"] == "class_token"
    for block in ("block0", "block1"):
        assert records[block]["source"] == "token_grid"
        assert records[block]["token_grid"] == {"rows": grid, "columns": grid,
                                                "prefix_tokens": 1}
    activations = tba.get_activations(model, x)
    want = work.reference_attention(activations["block0"],
                                    work.attention_weights(model.get_layer("attention1")))
    np.testing.assert_allclose(activations["attention1:attention"], want, atol=1e-4)
