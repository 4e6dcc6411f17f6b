"""Attention probabilities recorded during one forward pass (tb_activations.torch.attention):
against references written here, Hugging Face's own output_attentions=True, and torch's own
MultiheadAttention weights, on models built from configs (CPU, random weights, no downloads);
the models' outputs must not change by a bit."""

import math
import threading

import hypothesis
import pytest
import torch
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from tb_activations.format import layout
from tb_activations.torch import attention
from tb_activations.torch import reduction

ORIGINAL_SDPA = F.scaled_dot_product_attention
ORIGINAL_SOFTMAX = torch.Tensor.softmax


def loop_reference(q, k, mask=None, causal=False, scale=None, gqa=False):
    """(B, H, Tq, Tk) by explicit loops over batch, head and query: dot products, the mask
    applied per entry, softmax written out; 0 for a query with no key left."""
    q, k = q.double(), k.double()
    batch, heads, queries, dim = q.shape
    keys, key_heads = k.shape[2], k.shape[1]
    scale = 1 / math.sqrt(dim) if scale is None else scale
    out = torch.zeros(batch, heads, queries, keys, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            kh = h // (heads // key_heads) if gqa else h
            for i in range(queries):
                scores = []
                for j in range(keys):
                    score = float(q[b, h, i] @ k[b, kh, j]) * scale
                    if causal and j > i:
                        score = -math.inf
                    if mask is not None:
                        m = mask.expand(batch, heads, queries, keys)[b, h, i, j]
                        if m.dtype == torch.bool:
                            score = score if m else -math.inf
                        else:
                            score += float(m)
                    scores.append(score)
                top = max(scores)
                if top == -math.inf:
                    continue
                exps = [math.exp(s - top) for s in scores]
                out[b, h, i] = torch.tensor(exps) / sum(exps)
    return out.float()


class SDPAModule(nn.Module):
    """Calls F.scaled_dot_product_attention with the keyword arguments given."""

    def __init__(self, **sdpa_kwargs):
        super().__init__()
        self.sdpa_kwargs = sdpa_kwargs

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, **self.sdpa_kwargs)


def record(model, *args, max_side=None, **kwargs):
    """(output, recorded list) of one no_grad pass under recording_attention."""
    with torch.no_grad(), attention.recording_attention(model, max_side=max_side) as recorded:
        output = model(*args, **kwargs)
    return output, recorded


def assert_restored():
    assert F.scaled_dot_product_attention is ORIGINAL_SDPA
    assert torch.Tensor.softmax is ORIGINAL_SOFTMAX
    assert "softmax" not in vars(torch.Tensor)
    assert attention._active is None


# ---------------------------------------------------------------- SDPA by hand


@hypothesis.settings(max_examples=40)
@hypothesis.given(
    batch=st.integers(1, 2), key_heads=st.integers(1, 2), group=st.integers(1, 2),
    queries=st.integers(1, 6), keys=st.integers(1, 6), dim=st.integers(1, 5),
    mask_kind=st.sampled_from(["none", "causal", "padding", "float", "bool_full"]),
    scale=st.one_of(st.none(), st.floats(0.1, 2.0)), gqa=st.booleans(), seed=st.integers(0, 99))
def test_sdpa_probabilities_match_a_loop_reference_and_leave_the_output(
        batch, key_heads, group, queries, keys, dim, mask_kind, scale, gqa, seed):
    generator = torch.Generator().manual_seed(seed)
    heads = key_heads * group if gqa else key_heads
    q = torch.randn(batch, heads, queries, dim, generator=generator)
    k = torch.randn(batch, key_heads, keys, dim, generator=generator)
    v = torch.randn(batch, key_heads, keys, 3, generator=generator)
    kwargs, mask, causal = {"scale": scale}, None, False
    if gqa:
        kwargs["enable_gqa"] = True
    if mask_kind == "causal":
        kwargs["is_causal"], causal = True, True
    elif mask_kind == "padding":  # (B, 1, 1, Tk) broadcast over heads and queries
        lengths = torch.randint(1, keys + 1, (batch,), generator=generator)
        mask = (torch.arange(keys)[None, :] < lengths[:, None])[:, None, None, :]
    elif mask_kind == "float":  # (Tq, Tk) broadcast over batch and heads
        mask = torch.randn(queries, keys, generator=generator)
    elif mask_kind == "bool_full":
        mask = torch.rand(batch, heads, queries, keys, generator=generator) > 0.3
    if mask is not None:
        kwargs["attn_mask"] = mask
    module = SDPAModule(**kwargs)
    expected_output = module(q, k, v)
    output, recorded = record(module, q, k, v)
    assert torch.equal(output, expected_output)
    (entry,) = recorded
    assert (entry.module_path, entry.module_class) == ("", "SDPAModule")
    assert entry.probabilities.dtype == torch.float32
    assert (entry.queries, entry.keys, entry.downscale) == (queries, keys, (1, 1))
    expected = loop_reference(q, k, mask if mask is None or mask.ndim == 4 else mask[None, None],
                              causal, scale, gqa)
    torch.testing.assert_close(entry.probabilities, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(entry.first_query, expected[:, :, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(entry.mean_query, expected.mean(dim=2), atol=1e-4, rtol=0)
    assert_restored()


def test_a_query_with_every_key_masked_gets_zero_probability_as_torch_gives_it_a_zero_row():
    q, k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    output, recorded = record(SDPAModule(attn_mask=mask), q, k, v)
    probabilities = recorded[0].probabilities
    assert torch.equal(probabilities[:, :, 1], torch.zeros(1, 2, 5))
    assert torch.equal(output[:, :, 1], torch.zeros(1, 2, 4))  # torch: 0 too, not NaN
    torch.testing.assert_close(probabilities[:, :, [0, 2]].sum(-1), torch.ones(1, 2, 2))


def test_extra_leading_axes_fold_into_the_batch_and_3d_inputs_get_one_head():
    q, k = torch.randn(2, 3, 4, 5, 8), torch.randn(2, 3, 4, 6, 8)
    _, recorded = record(SDPAModule(), q, k, k)
    assert recorded[0].probabilities.shape == (6, 4, 5, 6)
    _, recorded = record(SDPAModule(), q[0, 0], k[0, 0], k[0, 0])
    assert recorded[0].probabilities.shape == (4, 1, 5, 6)


def test_max_side_area_averages_and_keeps_full_resolution_rows():
    q, k = torch.randn(2, 3, 10, 4), torch.randn(2, 3, 7, 4)
    _, (full,) = record(SDPAModule(), q, k, k)
    _, (small,) = record(SDPAModule(), q, k, k, max_side=4)
    factors = (layout.downscale_factor(10, 4), layout.downscale_factor(7, 4))
    assert small.downscale == factors == (3, 2)
    assert small.probabilities.shape == (2, 3, 4, 4)
    assert (small.queries, small.keys) == (10, 7)
    torch.testing.assert_close(small.probabilities,
                               reduction.area_downscale(full.probabilities, *factors))
    torch.testing.assert_close(small.first_query, full.probabilities[:, :, 0])
    torch.testing.assert_close(small.mean_query, full.probabilities.mean(dim=2))


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = SDPAModule()

    def forward(self, q, k):
        first = self.inner(q, k, k)
        return F.scaled_dot_product_attention(first, k, k) + self.inner(q, k[:, :, :2], k[:, :, :2])


def test_innermost_running_module_owns_the_call_and_keeps_its_first():
    q, k = torch.randn(1, 2, 4, 8), torch.randn(1, 2, 3, 8)
    _, recorded = record(Twice(), q, k)
    assert [(e.module_path, e.module_class, e.keys) for e in recorded] == [
        ("inner", "SDPAModule", 3), ("", "Twice", 3)]


# ---------------------------------------------------------------- restoring, threads


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = SDPAModule()

    def forward(self, q):
        self.inner(q, q, q)
        raise RuntimeError("boom")


def test_everything_is_restored_after_a_pass_that_raises_and_a_second_recording_is_refused():
    model, q = Raises(), torch.randn(1, 1, 2, 4)
    with pytest.raises(RuntimeError, match="boom"):
        record(model, q)
    assert_restored()
    assert not model.inner._forward_hooks and not model.inner._forward_pre_hooks
    with attention.recording_attention(model):
        with pytest.raises(RuntimeError, match="already recording"):
            with attention.recording_attention(SDPAModule()):
                pass
        assert F.scaled_dot_product_attention is not ORIGINAL_SDPA
    assert_restored()
    _, recorded = record(SDPAModule(), q, q, q)  # usable again
    assert len(recorded) == 1


class CallsFromAnotherThread(nn.Module):
    """Runs attention on another thread while its own forward is running."""

    def forward(self, q, other):
        results = {}
        thread = threading.Thread(target=lambda: results.update(
            out=F.scaled_dot_product_attention(other, other, other)))
        thread.start()
        thread.join()
        self.other_result = results["out"]
        return F.scaled_dot_product_attention(q, q, q)


def test_another_threads_call_goes_to_torch_unrecorded():
    q, other = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 3, 4)
    model = CallsFromAnotherThread()
    _, recorded = record(model, q, other)
    assert [e.queries for e in recorded] == [5]
    assert torch.equal(model.other_result, ORIGINAL_SDPA(other, other, other))


# ---------------------------------------------------------------- timm


def test_timm_vit_one_map_per_block_output_unchanged():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = model(x)
    output, recorded = record(model, x)
    assert torch.equal(output, expected)
    assert [e.module_path for e in recorded] == ["blocks/%d/attn" % i for i in range(12)]
    for entry in recorded:
        assert entry.module_class == "Attention"
        assert entry.probabilities.shape == (2, 3, 197, 197)
        torch.testing.assert_close(entry.probabilities.sum(-1), torch.ones(2, 3, 197),
                                   atol=1e-5, rtol=0)
    assert_restored()
    with pytest.raises(AssertionError, match="doesn't match model"):
        record(model, torch.randn(2, 3, 200, 200))
    assert_restored()


def test_only_wanted_modules_attention_is_computed(monkeypatch):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    computed = []
    real = attention.attention_reference
    monkeypatch.setattr(attention, "attention_reference",
                        lambda *args, **kwargs: computed.append(1) or real(*args, **kwargs))
    with torch.no_grad(), attention.recording_attention(
            model, wanted=lambda path: path == "blocks/4/attn") as recorded:
        model(torch.randn(1, 3, 224, 224))
    assert [entry.module_path for entry in recorded] == ["blocks/4/attn"]
    assert len(computed) == 1  # the other 11 blocks' attention is never recomputed


def test_timm_non_fused_attention_is_recorded_from_its_softmax_like_the_fused_one():
    timm = pytest.importorskip("timm")
    from timm.layers import Attention
    torch.manual_seed(0)
    block = Attention(16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    _, (fused,) = record(block, x)
    block.fused_attn = False
    with torch.no_grad():
        expected = block(x)
    output, (softmaxed,) = record(block, x)
    assert torch.equal(output, expected)
    torch.testing.assert_close(softmaxed.probabilities, fused.probabilities, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- Hugging Face


def hf_twins(model_class, config_class, **config):
    """(sdpa model, eager model) with the same random weights."""
    torch.manual_seed(0)
    models = []
    for implementation in ("sdpa", "eager"):
        models.append(model_class(config_class(attn_implementation=implementation, **config))
                      .eval())
    models[1].load_state_dict(models[0].state_dict())
    assert [m.config._attn_implementation for m in models] == ["sdpa", "eager"]
    return models


def assert_matches_output_attentions(sdpa_model, eager_model, inputs, paths):
    with torch.no_grad():
        expected = eager_model(**inputs, output_attentions=True).attentions
        plain = sdpa_model(**inputs).last_hidden_state
    output, recorded = record(sdpa_model, **inputs)
    assert torch.equal(output.last_hidden_state, plain)
    assert [e.module_path for e in recorded] == paths
    assert len(expected) == len(recorded)
    for entry, reference in zip(recorded, expected):
        # A query that may see no key (a left-padded one under the causal mask): SDPA's
        # boolean mask leaves it none, recorded as 0; eager adds the dtype's minimum to every
        # score, and softmax makes the row uniform.
        live = entry.probabilities.sum(-1) > 0.5
        torch.testing.assert_close(entry.probabilities[live], reference[live], atol=1e-4,
                                   rtol=0)
        assert torch.all(entry.probabilities[~live] == 0)
        torch.testing.assert_close(reference[~live],
                                   torch.full_like(reference[~live], 1 / reference.shape[-1]))
    # eager: the same maps from its softmax, attributed to the same modules
    _, recorded_eager = record(eager_model, **inputs)
    assert [e.module_path for e in recorded_eager] == paths
    for entry, reference in zip(recorded_eager, expected):
        torch.testing.assert_close(entry.probabilities, reference, atol=1e-6, rtol=0)
    assert_restored()
    return recorded


def test_bert_sdpa_with_padding_matches_eager_output_attentions():
    transformers = pytest.importorskip("transformers")
    sdpa_model, eager_model = hf_twins(
        transformers.BertModel, transformers.BertConfig, vocab_size=50, hidden_size=32,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 4:] = 0
    recorded = assert_matches_output_attentions(
        sdpa_model, eager_model, {"input_ids": ids, "attention_mask": mask},
        ["encoder/layer/%d/attention/self" % i for i in range(2)])
    for entry in recorded:
        assert entry.probabilities.shape == (2, 2, 7, 7)
        assert torch.all(entry.probabilities[1, :, :, 4:] == 0)


def test_gpt2_sdpa_causal_matches_eager_output_attentions():
    transformers = pytest.importorskip("transformers")
    sdpa_model, eager_model = hf_twins(
        transformers.GPT2Model, transformers.GPT2Config, vocab_size=50, n_embd=32, n_layer=2,
        n_head=2, n_positions=16)
    ids = torch.randint(0, 50, (2, 6))
    recorded = assert_matches_output_attentions(
        sdpa_model, eager_model, {"input_ids": ids}, ["h/%d/attn" % i for i in range(2)])
    assert torch.all(recorded[0].probabilities.triu(1) == 0)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, :2] = 0  # left padding
    recorded = assert_matches_output_attentions(
        sdpa_model, eager_model, {"input_ids": ids, "attention_mask": mask},
        ["h/%d/attn" % i for i in range(2)])
    assert torch.all(recorded[0].probabilities[0, :, 2:, :2] == 0)


@pytest.mark.parametrize("padded", [False, True])
def test_llama_grouped_query_sdpa_matches_eager_output_attentions(padded):
    transformers = pytest.importorskip("transformers")
    sdpa_model, eager_model = hf_twins(
        transformers.LlamaModel, transformers.LlamaConfig, vocab_size=50, hidden_size=32,
        intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32)
    inputs = {"input_ids": torch.randint(0, 50, (2, 6))}
    if padded:  # a mask: HF repeats the key heads itself; none: SDPA's enable_gqa
        inputs["attention_mask"] = torch.tensor([[1] * 6, [0, 0] + [1] * 4])
    recorded = assert_matches_output_attentions(
        sdpa_model, eager_model, inputs, ["layers/%d/self_attn" % i for i in range(2)])
    assert recorded[0].probabilities.shape == (2, 4, 6, 6)


def test_t5_encoder_position_bias_as_float_mask_matches_eager_output_attentions():
    transformers = pytest.importorskip("transformers")
    sdpa_model, eager_model = hf_twins(
        transformers.T5EncoderModel, transformers.T5Config, vocab_size=50, d_model=32,
        d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    assert_matches_output_attentions(
        sdpa_model, eager_model, {"input_ids": torch.randint(0, 50, (2, 7)),
                                  "attention_mask": mask},
        ["encoder/block/%d/layer/0/SelfAttention" % i for i in range(2)])


# ---------------------------------------------------------------- MultiheadAttention


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("average", [False, True])
@pytest.mark.parametrize("heads", [2, 3])  # 2 at inference: the native fast path
def test_multihead_attention_returns_what_was_asked_and_records_per_head_weights(
        batch_first, need_weights, average, heads):
    torch.manual_seed(0)
    module = nn.MultiheadAttention(12, heads, batch_first=batch_first).eval()
    x = torch.randn(2, 5, 12) if batch_first else torch.randn(5, 2, 12)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    kwargs = {"key_padding_mask": padding, "need_weights": need_weights,
              "average_attn_weights": average}
    with torch.no_grad():
        expected = module(x, x, x, **kwargs)
        _, per_head = module(x, x, x, key_padding_mask=padding, need_weights=True,
                             average_attn_weights=False)
    output, recorded = record(module, x, x, x, **kwargs)
    assert torch.equal(output[0], expected[0])
    if need_weights:
        assert torch.equal(output[1], expected[1])
    else:
        assert output[1] is None
    (entry,) = recorded
    assert (entry.module_path, entry.module_class) == ("", "MultiheadAttention")
    torch.testing.assert_close(entry.probabilities, per_head, atol=1e-5, rtol=0)
    assert torch.all(entry.probabilities[1, :, :, 3:] == 0)


def test_multihead_attention_unbatched_and_positional_flags():
    torch.manual_seed(0)
    module = nn.MultiheadAttention(8, 2).eval()
    q, kv = torch.randn(4, 8), torch.randn(6, 8)
    with torch.no_grad():
        expected = module(q, kv, kv, None, True)  # need_weights positional, averaged
        _, per_head = module(q, kv, kv, need_weights=True, average_attn_weights=False)
    output, (entry,) = record(module, q, kv, kv, None, True)
    assert torch.equal(output[0], expected[0]) and torch.equal(output[1], expected[1])
    assert output[1].shape == (4, 6)
    torch.testing.assert_close(entry.probabilities, per_head[None], atol=1e-6, rtol=0)


def test_torchvision_vit_records_its_need_weights_false_attention_unchanged():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
        mlp_dim=32).eval()
    x = torch.randn(2, 3, 32, 32)
    blocks = {}
    handles = [layer.register_forward_hook(
        lambda m, a, out, name=name: blocks.setdefault(name, []).append(out))
        for name, layer in model.encoder.layers.named_children()]
    with torch.no_grad():
        expected = model(x)
    output, recorded = record(model, x)
    for handle in handles:
        handle.remove()
    assert torch.equal(output, expected)
    for first, second in blocks.values():
        assert torch.equal(first, second)
    assert [e.module_path for e in recorded] == [
        "encoder/layers/encoder_layer_%d/self_attention" % i for i in range(2)]
    for entry in recorded:
        assert entry.probabilities.shape == (2, 2, 17, 17)
        torch.testing.assert_close(entry.probabilities.sum(-1), torch.ones(2, 2, 17))


def test_whisper_encoder_decoder_and_cross_attention_match_eager_output_attentions():
    transformers = pytest.importorskip("transformers")
    sdpa_model, eager_model = hf_twins(
        transformers.WhisperModel, transformers.WhisperConfig, vocab_size=60, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, d_model=16,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=20, decoder_ffn_dim=20, num_mel_bins=8,
        max_source_positions=6, max_target_positions=10)
    inputs = {"input_features": torch.randn(2, 8, 12),
              "decoder_input_ids": torch.randint(0, 60, (2, 4))}
    with torch.no_grad():
        expected = eager_model(**inputs, output_attentions=True)
        plain = sdpa_model(**inputs).last_hidden_state
    output, recorded = record(sdpa_model, **inputs)
    assert torch.equal(output.last_hidden_state, plain)
    assert [e.module_path for e in recorded] == [
        "encoder/layers/0/self_attn", "decoder/layers/0/self_attn",
        "decoder/layers/0/encoder_attn"]
    references = (expected.encoder_attentions[0], expected.decoder_attentions[0],
                  expected.cross_attentions[0])
    for entry, reference in zip(recorded, references):
        torch.testing.assert_close(entry.probabilities, reference, atol=1e-4, rtol=0)
    assert recorded[2].probabilities.shape == (2, 2, 4, 6)
