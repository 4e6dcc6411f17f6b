"""Sequence-first (batch_first=False) outputs of torch.nn's recurrent layers, attention and
transformers: captured as the module gave them, drawn as the same model built batch first."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.capture.records import UndrawableLayerError
from tb_activations.reading import reader
from tb_activations.torch import capture as capture_lib
from tests.test_torch import hook_oracle


@pytest.fixture(autouse=True, scope="module")
def no_fast_path():
    """Batch-first encoder layers take a fused fast path at inference, which runs none of
    their submodules (and so records none): off, so both twins run the same modules."""
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(True)


def encoder(batch_first, features=8):
    """nn.TransformerEncoder as the model itself, with its final LayerNorm."""
    layer = nn.TransformerEncoderLayer(features, 2, 2 * features, dropout=0.0,
                                       batch_first=batch_first)
    return nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(features),
                                 enable_nested_tensor=False)


class Recurrent(nn.Module):
    """Batch-first input into a 2-layer LSTM either way (transposed for a sequence-first
    one, as older code does), a Linear head and Tanh on the LSTM's output."""

    def __init__(self, batch_first):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=batch_first)
        self.head = nn.Linear(6, 3)
        self.act = nn.Tanh()

    def forward(self, x):
        out, _ = self.lstm(x if self.lstm.batch_first else x.transpose(0, 1))
        return self.act(self.head(out))


class Attend(nn.Module):
    """Self-attention with its weights returned, then a LayerNorm; takes its input in the
    attention's own layout and says so with `batch_first`, as torch's layers do."""

    def __init__(self, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.attention = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        out, _ = self.attention(x, x, x, need_weights=True)
        return self.norm(out + x)


def sequences(seed, steps, batch, features):
    """(batch, steps, features) float32 inputs."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, features, generator=generator)


def trained(model, x, steps=15, rate=0.05):
    """`model` after a few plain gradient-descent steps pulling its output towards a fixed
    random target (torch.optim imports torch._dynamo, which crashes beside TensorFlow)."""
    torch.manual_seed(1)
    target = torch.randn_like(model(x))
    for _ in range(steps):
        model.zero_grad()
        nn.functional.mse_loss(model(x), target).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= rate * parameter.grad
    return model


def twins(build, x, seq_input):
    """(sequence-first model, its batch-first twin with the same trained weights, the
    sequence-first model's probe, the twin's probe) for batch-first inputs `x`."""
    torch.manual_seed(0)
    sequence_first = build(False)
    probe = x.transpose(0, 1) if seq_input else x
    trained(sequence_first, probe)
    twin = build(True)
    twin.load_state_dict(sequence_first.state_dict())
    return sequence_first, twin, probe, x


CASES = {
    "encoder": (encoder, True, (7, 3, 8)),
    "encoder-square": (encoder, True, (3, 3, 8)),
    "lstm": (Recurrent, False, (6, 2, 5)),
    "lstm-square": (Recurrent, False, (4, 4, 5)),
    "attention": (Attend, True, (5, 2, 8)),
    "attention-square": (Attend, True, (4, 4, 8)),
}


def case(name):
    build, seq_input, (steps, batch, features) = CASES[name]
    return twins(build, sequences(len(name), steps, batch, features), seq_input)


def assert_captures_match(first, second):
    """Same records and layouts, and reductions equal to float32 rounding."""
    assert [(r.path, r.layer_class, r.layout) for r in first.records] == [
        (r.path, r.layer_class, r.layout) for r in second.records]
    reduced, expected = first.reduce(), second.reduce()
    for path, arrays in reduced.items():
        for key, value in arrays.items():
            np.testing.assert_allclose(value, expected[path][key], rtol=1e-4, atol=1e-5,
                                       err_msg="%s %s" % (path, key))


@pytest.mark.parametrize("name", sorted(CASES))
def test_sequence_first_models_draw_as_their_batch_first_twins(name):
    sequence_first, twin, probe, twin_probe = case(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        captured = capture_lib.TorchCapture(sequence_first, probe)
        expected = capture_lib.TorchCapture(twin, twin_probe)
    assert_captures_match(captured, expected)


def test_what_each_module_says_of_its_outputs():
    sequence_first, _, probe, _ = case("lstm")
    plans = {r.path: r.layout for r in capture_lib.TorchCapture(sequence_first, probe).records}
    assert plans["lstm"].canonical_shape == (6, 6)  # (T, H) per sample
    assert plans["lstm:1"].canonical_shape == (2, 6)  # h_n: (layers, H) per sample
    assert plans["lstm:2"].canonical_shape == (2, 6)  # c_n
    assert plans["head"].canonical_shape == (6, 3)  # follows the LSTM output it was called on
    sequence_first, _, probe, _ = case("attention-square")
    plans = {r.path: r.layout for r in capture_lib.TorchCapture(sequence_first, probe).records}
    assert plans["attention:1"].canonical_shape == (4, 4)  # weights are (B, L, S) regardless


@pytest.mark.parametrize("name", ["encoder", "lstm-square", "attention-square"])
def test_get_activations_keeps_each_modules_own_layout(name):
    sequence_first, _, probe, _ = case(name)
    activations = tbat.get_activations(sequence_first, probe)
    expected = hook_oracle(sequence_first, probe, list(activations))
    for path, value in activations.items():
        np.testing.assert_array_equal(value, expected[path], err_msg=path)
    if name == "encoder":
        assert activations["layers/0/linear1"].shape == (7, 3, 16)  # (T, B, F) as torch gave it


def read_back(log_dir):
    records = {(r.layer, r.step, r.sample): r for r in tba.read_activations(log_dir)}
    probes = [(p.content["shape"], p.content["samples"]) for p in reader.read_run(str(log_dir))
              if isinstance(p, reader.ProbeStep)]
    return records, probes


@pytest.mark.parametrize("name", ["encoder", "lstm", "attention-square"])
def test_logged_grids_read_back_as_the_batch_first_twins(tmp_path, name):
    sequence_first, twin, probe, twin_probe = case(name)
    assert tbat.log_activations(sequence_first, probe, step=3, log_dir=tmp_path / "seq")
    assert tbat.log_activations(twin, twin_probe, step=3, log_dir=tmp_path / "twin")
    tbat.flush()
    records, probes = read_back(tmp_path / "seq")
    expected, expected_probes = read_back(tmp_path / "twin")
    assert probes == expected_probes
    assert sorted(records) == sorted(expected)
    assert {sample for _, _, sample in records} == set(range(twin_probe.shape[0]))
    for key, record in records.items():
        other = expected[key]
        assert record.tiling == other.tiling, key
        np.testing.assert_allclose(record.ranges, other.ranges, rtol=1e-4, atol=1e-5)
        # One code step either way where float32 rounding lands on a code boundary.
        assert np.abs(record.image.astype(int) - other.image.astype(int)).max() <= 1, key


@given(steps=st.integers(1, 5), batch=st.integers(1, 5), heads=st.integers(1, 3))
def test_any_sequence_and_batch_length_draws_as_the_twin(steps, batch, heads):
    x = sequences(steps * 10 + batch, steps, batch, 4 * heads)
    torch.manual_seed(0)
    sequence_first = encoder(False, 4 * heads)
    twin = encoder(True, 4 * heads)
    twin.load_state_dict(sequence_first.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        captured = capture_lib.TorchCapture(sequence_first, x.transpose(0, 1))
        expected = capture_lib.TorchCapture(twin, x)
    assert_captures_match(captured, expected)


class FedBatchFirst(nn.Module):
    """The common mistake: batch-first input straight into a sequence-first LSTM."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.lstm(x)[0])


def test_outputs_whose_batch_axis_cannot_be_placed_are_named():
    model, x = FedBatchFirst(), sequences(9, 5, 2, 5)  # the LSTM takes 5 as its batch
    with pytest.warns(UserWarning, match=r"lstm \(LSTM\): its axis 1 has 5 entries where the "
                                         r"probe batch has 2.*lstm:1 \(LSTM\)"):
        captured = capture_lib.TorchCapture(model, x)
    assert [r.path for r in captured.records] == ["head"]
    with pytest.raises(UndrawableLayerError, match=r"lstm \(LSTM\): its axis 1 has 5"):
        capture_lib.TorchCapture(model, x, layers=["lstm"])
