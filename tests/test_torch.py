"""Plain PyTorch modules: capture by forward hooks (tb_activations.torch), on models built here
(CPU, no downloads), against hand-written hooks."""

import collections
import contextlib
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.capture.records import UndrawableLayerError
from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.reading import reader
from tb_activations.rendering import grid_images
from tb_activations.torch import capture as capture_lib
from tb_activations.writing import events as tba_events
from tests import browser_helpers
from tests import test_plugin
from tests.browser_helpers import free_port
from tests.full_disk import fill

DDP_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_ddp_worker.py")
REPO = os.path.dirname(os.path.dirname(DDP_WORKER))

# ---------------------------------------------------------------- models


class BasicBlock(nn.Module):
    """torchvision's ResNet block: in-place ReLU called twice, `out += identity`."""

    def __init__(self, channels_in, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or channels_in != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(self.flatten(self.avgpool(x)))


RESNET_PATHS = (
    ["conv1", "bn1", "relu", "maxpool"]
    + ["layer1/%d/%s" % (block, name) for block in (0, 1)
       for name in ("conv1", "bn1", "relu", "conv2", "bn2")]
    + ["layer2/0/downsample/0", "layer2/0/downsample/1", "layer2/0/conv1", "layer2/0/bn1",
       "layer2/0/relu", "layer2/0/conv2", "layer2/0/bn2", "avgpool", "fc"])


class Branches(nn.Module):
    """nn.Sequential inside nn.ModuleDict, and a Conv1d head on the flattened map."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleDict({
            "edges": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
            "blobs": nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.Tanh()),
        })
        self.mix = nn.Conv1d(8, 3, 3, padding=1)
        self.act = nn.GELU()

    def forward(self, x):
        maps = torch.cat([branch(x) for branch in self.branches.values()], dim=1)
        return self.act(self.mix(maps.flatten(2)))


class TokenEncoder(nn.Module):
    """Embedding -> TransformerEncoder (batch first, (B, T, F) outputs) -> Linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 4)
        self.act = nn.ReLU()

    def forward(self, tokens):
        return self.act(self.head(self.encoder(self.embed(tokens))))


class Halves(nn.Module):
    """A module returning a tuple."""

    def forward(self, x):
        return x[:, :2] * 2, x[:, 2:] - 1


class SharedConv(nn.Module):
    """One conv called twice, a tuple-returning module, keyword inputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.halves = Halves()

    def forward(self, x, scale=1.0):
        first, second = self.halves(self.conv(self.conv(x)) * scale)
        return first.sum() + second.sum()


def seeded(build, seed=0):
    torch.manual_seed(seed)
    model = build()
    for module in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


def images(seed, shape):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype("float32"))


CASES = {
    "resnet": (ResNetLike, lambda: images(1, (2, 3, 16, 16))),
    "branches": (Branches, lambda: images(2, (3, 1, 8, 8))),
    "transformer": (TokenEncoder, lambda: torch.randint(
        0, 20, (2, 7), generator=torch.Generator().manual_seed(3))),
    "shared": (SharedConv, lambda: images(4, (2, 4, 6, 6))),
}


def flattened(output):
    """The tensors of a module output, nested tuples (an LSTM's (out, (h, c))) in order."""
    if isinstance(output, tuple):
        return [leaf for item in output for leaf in flattened(item)]
    return [output] if isinstance(output, torch.Tensor) else []


def hook_oracle(model, x, names):
    """{path: first output(s)} by hooks written out by hand: eval, no_grad, clone at once;
    `path:attention` of a MultiheadAttention: its per-head weights, by calling it again on
    its first call's arguments with need_weights=True, average_attn_weights=False."""
    found = {}
    handles = []
    for name in names:
        path, _, part = name.partition(":")
        module = model.get_submodule(path.replace("/", "."))
        if part == "attention":
            def weights(module, args, kwargs, name=name):
                if name not in found:
                    asked = dict(kwargs, need_weights=True, average_attn_weights=False)
                    found[name] = [module.forward(*args, **asked)[1].detach().clone()]
            handles.append(module.register_forward_pre_hook(weights, with_kwargs=True))
            continue

        def record(module, args, output, path=path):
            if path not in found:
                found[path] = [o.detach().clone() for o in flattened(output)]
        handles.append(module.register_forward_hook(record))
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return {name: (found[name][0] if name.endswith(":attention")
                   else found[name.split(":")[0]][int(name.split(":")[1]) if ":" in name else 0])
            .numpy() for name in names}


# ---------------------------------------------------------------- capture


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_equal_hand_written_hooks(case):
    build, probe = CASES[case]
    model, x = seeded(build), probe()
    activations = tbat.get_activations(model, x)
    expected = hook_oracle(seeded(build), x, list(activations))
    assert list(activations) == list(expected)
    for name, value in activations.items():
        if name.endswith(":attention"):  # recomputed by our wrapper: the same math, rounded
            np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(value, expected[name], err_msg=name)
    attention_modules = {name.partition(":")[0] for name in activations
                         if name.endswith(":attention")}
    assert attention_modules == {path.replace(".", "/") for path, module in model.named_modules()
                                 if isinstance(module, torch.nn.MultiheadAttention)}


def test_resnet_paths_and_values_before_in_place_ops():
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    activations = tbat.get_activations(model, x)
    assert sorted(activations) == sorted(RESNET_PATHS)
    assert activations["layer1/0/conv1"].shape == (2, 8, 8, 8)  # (N, C, H, W), as torch has it
    assert activations["fc"].shape == (2, 10)
    model.eval()
    with torch.no_grad():
        stem = model.bn1(model.conv1(x)).numpy()
        block = model.layer1[0]
        before_add = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(
            model.maxpool(model.relu(model.bn1(model.conv1(x))))))))).numpy()
    # bn1's output is read before the in-place ReLU, bn2's before `out += identity`.
    assert (stem < 0).any()
    np.testing.assert_allclose(activations["bn1"], stem, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(activations["layer1/0/bn2"], before_add, rtol=1e-5, atol=1e-6)
    # The block's ReLU reports its first call (after bn1), not the one after the add.
    np.testing.assert_allclose(activations["layer1/0/relu"],
                               np.maximum(activations["layer1/0/bn1"], 0))


def test_later_passes_clone_only_the_outputs_the_model_overwrites_in_place():
    """The first pass learns which outputs an in-place operation overwrites (ReLU(inplace)
    after a BatchNorm, `out += identity`); later passes clone only those and read the same."""
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    first = tbat.get_activations(model, x)
    overwritten = capture_lib._overwritten_paths[model]
    assert {"bn1", "layer1/0/bn1", "layer1/0/bn2", "layer2/0/bn2"} <= overwritten
    assert not overwritten & {"conv1", "layer1/0/conv1", "maxpool", "fc", "avgpool"}
    for _ in range(2):
        later = tbat.get_activations(model, x)
        assert later.keys() == first.keys()
        for path, value in first.items():
            np.testing.assert_array_equal(later[path], value, err_msg=path)


class SometimesInPlace(nn.Module):
    """Overwrites its convolution's output in place only once `shift` is set: a pass taking
    a branch the earlier passes did not."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.Tanh()
        self.shift = False

    def forward(self, x):
        out = self.conv(x)
        if self.shift:
            out += 100.0
        return self.act(out)


def test_a_pass_that_overwrites_an_uncloned_output_runs_again_and_reads_it_right():
    model, x = seeded(SometimesInPlace), images(4, (2, 3, 8, 8))
    tbat.get_activations(model, x)
    assert "conv" not in capture_lib._overwritten_paths[model]
    model.shift = True
    activations = tbat.get_activations(model, x)
    with torch.no_grad():
        np.testing.assert_array_equal(activations["conv"], model.conv(x).numpy())
        np.testing.assert_allclose(activations["act"], torch.tanh(model.conv(x) + 100).numpy())
    assert "conv" in capture_lib._overwritten_paths[model]


class PositionTable(nn.Module):
    """Returns a view of its own parameter, as a learned position table does."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(-1, 1, 4 * 3 * 8 * 8).reshape(4, 3, 8, 8))

    def forward(self, x):
        return self.weight[: x.shape[0]]


class Crop(nn.Module):
    def forward(self, x):
        return x[..., 1:-1, 1:-1]


class ReturnsItsMemory(nn.Module):
    """Modules whose output is a view of the probe's or of a parameter's memory: the user may
    change both in place right after the call."""

    def __init__(self):
        super().__init__()
        self.table = PositionTable()
        self.crop = Crop()

    def forward(self, x):
        return self.crop(x) * self.crop(self.table(x))


def test_outputs_in_the_probes_or_parameters_memory_are_copied_at_the_call(tmp_path):
    """Changed in place right after a background call (a later pass, which clones only what
    the model overwrites), the probe and a parameter the outputs are views of do not reach
    the step: it equals one written in the foreground."""
    model, x = ReturnsItsMemory(), images(5, (2, 3, 8, 8))
    tbat.get_activations(model, x)  # the first pass, which clones every output
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "foreground",
                                background=False)
    assert tbat.log_activations(model, x, step=0, log_dir=tmp_path / "background")
    with torch.no_grad():
        x.mul_(-7.0)
        model.table.weight.mul_(3.0)
    tbat.flush()

    def logged(run):
        return {(record.layer, record.sample): record.values()
                for record in tba.read_activations(str(tmp_path / run))}
    expected, background = logged("foreground"), logged("background")
    assert {layer for layer, _ in background} == {"crop", "table"}
    assert background.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(background[key], value, err_msg=str(key))


def test_a_pass_under_inference_mode_reads_the_outputs_before_in_place_ops():
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    expected = tbat.get_activations(model, x)
    with torch.inference_mode():
        for _ in range(2):
            activations = tbat.get_activations(model, x)
            for path, value in expected.items():
                np.testing.assert_array_equal(activations[path], value, err_msg=path)


def test_layouts_follow_the_module_types():
    captured = capture_lib.TorchCapture(seeded(Branches), images(2, (3, 1, 8, 8)))
    plans = {record.path: record.layout for record in captured.records}
    edges = plans["branches/edges/0"]
    assert edges.layout == "channels" and edges.channels_first
    assert plans["branches/blobs/1"].channels_first  # Tanh after a Conv2d
    assert plans["mix"].layout == "sequence" and plans["mix"].channels_first  # Conv1d: (N, C, L)
    assert plans["mix"].canonical_shape == (64, 3)
    assert plans["act"].channels_first  # GELU after the Conv1d
    captured = capture_lib.TorchCapture(seeded(TokenEncoder), CASES["transformer"][1]())
    plans = {record.path: record.layout for record in captured.records}
    assert not plans["encoder/layers/0/linear1"].channels_first
    assert plans["encoder/layers/0/linear1"].canonical_shape == (7, 32)
    assert not plans["act"].channels_first  # ReLU after a Linear on (B, T, F)
    assert {record.layer_class for record in captured.records} >= {
        "Embedding", "MultiheadAttention", "Linear", "LayerNorm", "ReLU"}


class Permute(nn.Module):
    """torchvision.ops.misc.Permute: a module of its own that moves the channel axis."""

    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: a LayerNorm subclass over (N, C, H, W)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    """A ConvNeXt block and a Swin-like stem: the channel axis moved by Permute modules, the
    stem a Sequential returning its Permute's output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), LayerNorm2d(6),
                                  Permute(0, 2, 3, 1))
        self.norm = nn.LayerNorm(6)
        self.expand = nn.Linear(6, 12)
        self.act = nn.GELU()
        self.project = nn.Linear(12, 6)
        self.to_first = Permute(0, 3, 1, 2)
        self.scale = nn.Hardtanh()

    def forward(self, x):
        x = self.project(self.act(self.expand(self.norm(self.stem(x)))))
        return self.scale(self.to_first(x))


@pytest.mark.parametrize("size", [5, 9])
def test_layouts_follow_a_moved_channel_axis(size):
    captured = capture_lib.TorchCapture(seeded(ConvNeXtLike), images(2, (3, 3, size, size)))
    plans = {record.path: record.layout for record in captured.records}
    first = {path: plan.channels_first for path, plan in plans.items()}
    assert first == {"stem/0": True, "stem/1": True, "stem/2": False, "norm": False,
                     "expand": False, "act": False, "project": False, "to_first": True,
                     "scale": True}
    channels = {path: plan.channels_total for path, plan in plans.items()}
    assert channels == dict.fromkeys(plans, 6) | {"expand": 12, "act": 12}


def test_transformer_attention_is_drawn_as_a_module_computing_its_own_output():
    activations = tbat.get_activations(seeded(TokenEncoder), CASES["transformer"][1]())
    # MultiheadAttention uses out_proj's weights directly: out_proj never runs.
    assert "encoder/layers/0/self_attn" in activations
    assert not any(name.endswith("out_proj") for name in activations)
    assert activations["encoder/layers/1/norm2"].shape == (2, 7, 16)
    assert not any(name.startswith("encoder/layers/0/dropout") for name in activations)


def test_tuple_outputs_and_a_module_called_twice():
    model, x = seeded(SharedConv), images(4, (2, 4, 6, 6))
    activations = tbat.get_activations(model, {"x": x, "scale": 3.0})
    assert list(activations) == ["conv", "halves", "halves:1"]
    model.eval()
    with torch.no_grad():
        once = model.conv(x)
        twice = model.conv(once) * 3.0
    np.testing.assert_allclose(activations["conv"], once.numpy(), rtol=1e-6)
    np.testing.assert_allclose(activations["halves"], twice[:, :2].numpy() * 2, rtol=1e-5)
    np.testing.assert_allclose(activations["halves:1"], twice[:, 2:].numpy() - 1, rtol=1e-5)


def test_training_flags_and_buffers_are_restored():
    model = seeded(ResNetLike)
    model.train()
    model.layer1[1].eval()  # a mixed state, restored module by module
    flags = {name: module.training for name, module in model.named_modules()}
    running = model.bn1.running_mean.clone()
    tbat.get_activations(model, images(1, (2, 3, 16, 16)))
    assert {name: module.training for name, module in model.named_modules()} == flags
    torch.testing.assert_close(model.bn1.running_mean, running)  # the pass ran in eval


class Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.conv(x))  # (N, 2, H, W) into Linear(5): raises


def test_hooks_are_removed_and_modes_restored_when_the_forward_raises():
    model = Failing().train()
    with pytest.raises(ValueError, match=r"could not pass through model Failing: RuntimeError"):
        tbat.get_activations(model, images(5, (2, 3, 8, 8)))
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert module.training


@pytest.mark.parametrize("layers, expected", [
    ("layer1", ["layer1"]),
    ("layer2/0/bn2", ["layer2/0/bn2"]),
    ("downsample", ["layer2/0/downsample"]),
    ("layer1/*/conv?", ["layer1/0/conv1", "layer1/0/conv2", "layer1/1/conv1",
                        "layer1/1/conv2"]),
    (nn.BatchNorm2d, ["bn1"] + ["layer1/%d/bn%d" % (b, i) for b in (0, 1) for i in (1, 2)]
     + ["layer2/0/downsample/1", "layer2/0/bn1", "layer2/0/bn2"]),
    (lambda module: isinstance(module, BasicBlock), ["layer1/0", "layer1/1", "layer2/0"]),
    (["fc", "flatten", nn.MaxPool2d], ["maxpool", "flatten", "fc"]),
], ids=["container", "path", "name", "glob", "type", "predicate", "list"])
def test_layers_select_by_name_glob_type_and_predicate(layers, expected):
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    activations = tbat.get_activations(model, x, layers=layers)
    assert list(activations) == expected
    if layers == "layer1":  # a container's output: its last block's
        np.testing.assert_array_equal(
            activations["layer1"], hook_oracle(seeded(ResNetLike), x, ["layer1"])["layer1"])


class Odd(nn.Module):
    """Outputs no grid can draw beside one it can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.spectrum = Spectrum()
        self.total = Total()

    def forward(self, x):
        y = self.conv(x)
        self.spectrum(y)
        return self.total(y)


class Spectrum(nn.Module):
    def forward(self, x):
        return torch.fft.fft2(x)


class Total(nn.Module):
    def forward(self, x):
        return x.sum()


def test_undrawable_outputs_warn_by_default_and_raise_when_selected():
    model, x = Odd(), images(6, (2, 1, 5, 5))
    with pytest.warns(UserWarning, match=r"spectrum \(Spectrum\): its dtype torch.complex64.*"
                                         r"total \(Total\): its shape \(\) has no batch axis"):
        captured = capture_lib.TorchCapture(model, x)
    assert [record.path for record in captured.records] == ["conv"]
    with pytest.raises(UndrawableLayerError, match=r"total \(Total\).*leave them out"):
        capture_lib.TorchCapture(model, x, layers=["conv", "total"])
    assert set(tbat.get_activations(model, x)) == {"conv", "spectrum", "total"}


@pytest.mark.parametrize("model, probe, error, message", [
    (lambda: "resnet", lambda: images(1, (1, 3, 8, 8)), TypeError, "expected a torch.nn.Module"),
    (ResNetLike, lambda: None, ValueError, "the probe is None"),
    (ResNetLike, lambda: (), TypeError, "holds no tensor or numpy array"),
    (ResNetLike, lambda: np.array([["a"]]), TypeError, "must be a numeric array, got dtype <U1"),
    (ResNetLike, lambda: {"x": np.zeros((0, 3, 8, 8))}, ValueError, "at least one sample"),
    (ResNetLike, lambda: images(1, (2, 4, 8, 8)), ValueError,
     r"probe \(\(2, 4, 8, 8\)\) could not pass through model ResNetLike"),
    (nn.ReLU, lambda: images(1, (2, 3)), ValueError, "ReLU has no submodules"),
    (lambda: nn.Sequential(nn.Dropout(), nn.Flatten()), lambda: images(1, (2, 3)), ValueError,
     r"no module of model Sequential computed a value of its own.*modules are: 0, 1"),
], ids=["not-a-module", "none", "empty", "strings", "empty-batch", "wrong-shape", "leaf",
        "pass-through"])
def test_bad_inputs_raise_clear_errors(model, probe, error, message):
    with pytest.raises(error, match=message):
        tbat.get_activations(model(), probe())


def test_bad_selections_name_what_exists():
    model, x = seeded(ResNetLike), images(1, (1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"layers='conv9' matches no layer.*layer1/0/bn2"):
        tbat.get_activations(model, x, layers="conv9")
    unused = nn.Sequential(model, nn.Linear(3, 3))
    unused.forward = model.forward
    with pytest.raises(ValueError, match=r"layers 1 were selected but never called"):
        tbat.get_activations(unused, x, layers="1")


def test_numpy_inputs_follow_the_model_dtype_and_wrappers_are_looked_through():
    model = seeded(ResNetLike).double()
    x = np.random.default_rng(8).normal(size=(2, 3, 8, 8)).astype("float32")
    # torch.compile's wrapper is looked through too: tested where TensorFlow is not loaded.
    activations = tbat.get_activations(nn.DataParallel(model), x)
    assert sorted(activations) == sorted(RESNET_PATHS)  # no "module/"
    assert activations["conv1"].dtype == np.float64
    tokens = np.array([[1, 2, 3], [4, 5, 6]])  # integer arrays stay integer (token ids)
    assert tbat.get_activations(seeded(TokenEncoder), tokens)["embed"].shape == (2, 3, 16)


def test_reduced_statistics_match_the_captured_values():
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    options = layout.RenderOptions(max_channels=4, channel_selection="top")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        captured = capture_lib.TorchCapture(model, x, options=options)
    activations = tbat.get_activations(model, x)
    reduced = captured.reduce()
    assert list(reduced) == [record.path for record in captured.records] == list(activations)
    for path, value in activations.items():
        channels = reduced[path]["channels"]
        per_channel = value.reshape(value.shape[:2] + (-1,))  # all channels first or vectors
        np.testing.assert_allclose(reduced[path]["stats"][..., 2],
                                   per_channel[:, channels].mean(-1), rtol=1e-4, atol=1e-5)


def test_non_finite_outputs_get_the_nan_safe_statistics():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    x = images(3, (2, 1, 8, 8))
    x[0, 0, 4, 4] = float("nan")  # sample 0: a patch of NaN in every channel
    reduced = capture_lib.TorchCapture(model, x).reduce()["0"]
    fields = list(metadata.STAT_FIELDS)
    layer = reduced["layer"]
    assert layer[0, fields.index("nan_count")] == 2 * 9  # 3x3 positions in each channel
    assert layer[1, fields.index("nan_count")] == 0
    assert np.isfinite(layer[:, fields.index("mean")]).all()
    activations = tbat.get_activations(model, x)["0"]
    np.testing.assert_allclose(layer[:, fields.index("mean")],
                               np.nanmean(activations.reshape(2, -1), axis=1), rtol=1e-5)


# ---------------------------------------------------------------- log_activations


def log_resnet(log_dir, steps=(0, 5)):
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    for step in steps:
        assert tbat.log_activations(model, x, step=step, log_dir=log_dir, max_channels=6)
    tbat.flush()
    return model, x


def test_logged_steps_read_back_as_the_captured_values(tmp_path):
    model, x = log_resnet(tmp_path)
    activations = tbat.get_activations(model, x)
    records = list(tba.read_activations(tmp_path))
    assert {record.layer for record in records} == set(activations)
    assert sorted({record.step for record in records}) == [0, 5]
    assert len(records) == 2 * len(activations) * len(x)
    conv = [record for record in records if record.layer == "layer1/0/conv1"][0]
    assert conv.tiling["channels_first"] and conv.tiling["output_shape"] == [None, 8, 8, 8]
    assert conv.tiling["channels_shown"] == 6 and conv.tiling["downscale"] == [1, 1]
    values = conv.values()
    sample = activations["layer1/0/conv1"][conv.sample]
    for tile in range(6):
        row, column = divmod(tile, conv.tiling["columns"])
        low, high = conv.ranges[tile]
        drawn = values[row * 9:row * 9 + 8, column * 9:column * 9 + 8]
        assert np.abs(drawn - sample[conv.channels[tile]]).max() <= (
            (high - low) / metadata.FINITE_MAX_CODE + 1e-6)
    probes = [value for value in reader.read_run(str(tmp_path))
              if isinstance(value, reader.ProbeStep)]
    assert [(probe.content["input"], probe.content["shape"], probe.step)
            for probe in probes] == [("input", [None, 16, 16, 3], 0)]  # stored once


def test_a_summary_writer_gets_the_activations_beside_its_scalars(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    model, x = seeded(TokenEncoder), CASES["transformer"][1]()
    writer = SummaryWriter(str(tmp_path))
    for step in range(3):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
        assert tbat.log_activations(model, x, step=step, writer=writer)
    tbat.flush()
    writer.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    records = list(tba.read_activations(tmp_path, layer="encoder/layers/1/norm2"))
    assert sorted({record.step for record in records}) == [0, 1, 2]
    assert records[0].tiling["layout"] == "sequence"
    assert records[0].tiling["output_shape"] == [None, 7, 16]
    scalars = event_accumulator.EventAccumulator(str(tmp_path))
    scalars.Reload()
    assert "loss" in scalars.Tags()["scalars"]


@pytest.mark.parametrize("background", [False, True])
def test_a_loop_on_a_filling_disk_warns_once_and_goes_on(tiny_disk, background):
    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    log_dir = tiny_disk / "run"
    fill(tiny_disk, leaving=450_000)  # room for a few steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = [tbat.log_activations(model, x, step=step, log_dir=log_dir,
                                       background=background)
                  for step in range(50)]
        tbat.flush()  # reports nothing more: logging there stopped
    failed = logged.index(False)
    assert 1 < failed and logged == [True] * failed + [False] * (50 - failed)
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1, [str(w.message) for w in caught]
    assert "No space left on device" in str(stops[0].message)
    assert stops[0].filename == __file__
    # TensorBoard's loader reads the file to its end: whole steps only, the failed one cut off.
    # In the background a failed step is reported by one of the next three calls (one step
    # in the writer's hands, one queued).
    records = list(tba.read_activations(log_dir, layer="conv1"))
    written = sorted({record.step for record in records})
    assert written == list(range(len(written)))
    assert failed - (3 if background else 0) <= len(written) <= failed


@pytest.mark.parametrize("background", [False, True])
def test_a_summary_writer_on_a_full_disk_warns_once_or_raises(tiny_disk, background):
    from torch.utils.tensorboard import SummaryWriter

    model, x = seeded(ResNetLike), images(1, (2, 3, 16, 16))
    writer, other = SummaryWriter(str(tiny_disk / "run")), SummaryWriter(str(tiny_disk / "other"))
    fill(tiny_disk, leaving=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = [tbat.log_activations(model, x, step=step, writer=writer,
                                       background=background)
                  for step in range(50)]
    assert logged.count(False) >= (45 if background else 48) and logged[-1] is False
    stops = [w for w in caught if "stops logging activations" in str(w.message)]
    assert len(stops) == 1, [str(w.message) for w in caught]
    assert "No space left on device" in str(stops[0].message)
    with pytest.raises(tba_events.EventFileError, match="No space left on device") as raised:
        for step in range(6):  # the writer's thread reports a failed step at a later call
            tbat.log_activations(model, x, step=step, writer=other, on_error="raise",
                                 background=background)
    assert raised.value.filename == str(tiny_disk / "other")
    with contextlib.suppress(OSError):  # the steps queued after the failed one failed too
        tbat.close()


def test_a_log_dir_url_is_written_through_tensorflows_file_systems(tmp_path):
    log_resnet("ram://torch_test/run")
    log_resnet(tmp_path)
    local = list(tba.read_activations(tmp_path))
    remote = list(tba.read_activations("ram://torch_test/run"))
    assert [(r.layer, r.step, r.sample) for r in remote] == [
        (r.layer, r.step, r.sample) for r in local]
    for mine, theirs in zip(remote, local):
        np.testing.assert_array_equal(mine.image, theirs.image)


WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # `import tensorflow` fails from here on
import torch
from torch.utils.tensorboard import SummaryWriter
import tb_activations.torch as tbat
model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
x = torch.ones(2, 1, 5, 5)
assert tbat.log_activations(model, x, step=1, log_dir=sys.argv[1] + "/ours")
writer = SummaryWriter(sys.argv[1] + "/theirs")
assert tbat.log_activations(model, x, step=2, writer=writer)
tbat.flush()
writer.close()
# torch.compile imports triton, which crashes a process that loaded TensorFlow first (torch
# 2.14.1 CUDA build beside TensorFlow 2.21), so its wrapper is checked here.
assert sorted(tbat.get_activations(torch.compile(model), x)) == ["0", "1"]  # no "_orig_mod/"
assert "tensorflow" not in [name.split(".")[0] for name, module in sys.modules.items() if module]
"""


def test_logging_and_torch_compile_work_where_tensorflow_cannot_be_imported(tmp_path):
    subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(tmp_path)], check=True,
                   env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, timeout=180)
    for run, step in (("ours", 1), ("theirs", 2)):
        records = list(tba.read_activations(tmp_path / run))
        assert {(record.layer, record.step) for record in records} == {("0", step), ("1", step)}


WITH_TENSORFLOW_AFTER = """
import sys
import tb_activations.torch as tbat
import torch
from torch.utils.tensorboard import SummaryWriter
writer = SummaryWriter(sys.argv[1])  # loads TensorFlow where it is installed
assert "tensorflow" in sys.modules
model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
optimizer = torch.optim.Adam(model.parameters())  # loads triton where it is installed
model(torch.ones(4, 1, 5, 5)).sum().backward()
optimizer.step()
assert tbat.log_activations(torch.compile(model), torch.ones(2, 1, 5, 5), step=1, writer=writer)
tbat.flush()
writer.close()
"""


def test_a_training_loop_with_a_summary_writer_and_an_optimizer_survives_tensorflow(tmp_path):
    """torch 2.14's triton loaded after TensorFlow 2.21 segfaults; tb_activations.torch,
    imported first, loads triton first."""
    subprocess.run([sys.executable, "-c", WITH_TENSORFLOW_AFTER, str(tmp_path)], check=True,
                   env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, timeout=300)
    records = list(tba.read_activations(tmp_path))
    assert {(record.layer, record.step) for record in records} == {("0", 1), ("1", 1)}


@pytest.mark.parametrize("kwargs, error, message", [
    ({}, ValueError, "exactly one of writer="),
    ({"log_dir": "x", "writer": object()}, ValueError, "exactly one of writer="),
    ({"writer": object()}, TypeError, "SummaryWriter, got object"),
    ({"log_dir": "x", "step": True}, TypeError, "step must be an int"),
    ({"log_dir": "x", "step": -1}, ValueError, "0 or more"),
    ({"log_dir": "x", "max_tiles": 3}, TypeError, "unknown option.*max_tiles"),
])
def test_bad_log_arguments_raise_before_anything_runs(tmp_path, kwargs, error, message):
    kwargs = dict({"step": 0}, **kwargs)
    if "log_dir" in kwargs:
        kwargs["log_dir"] = tmp_path / kwargs["log_dir"]
    with pytest.raises(error, match=message):
        tbat.log_activations(seeded(ResNetLike), images(1, (1, 3, 8, 8)), **kwargs)
    assert not (tmp_path / "x").exists()


def test_only_rank_zero_writes_under_distributed_data_parallel(tmp_path):
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
               WORLD_SIZE="2", PYTHONPATH=REPO)
    processes = [subprocess.Popen([sys.executable, DDP_WORKER, str(tmp_path)],
                                  env=dict(env, RANK=str(rank)), cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for rank in range(2)]
    results = {}
    try:
        for process in processes:
            out, err = process.communicate(timeout=180)
            assert process.returncode == 0, err[-3000:]
            result = json.loads(out.split("RESULT ", 1)[1])
            results[result["rank"]] = result["returned"]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert results == {0: [True, True, True], 1: [False, False, False]}
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    steps = collections.Counter((r.layer, r.step, r.sample)
                                for r in tba.read_activations(tmp_path))
    assert set(steps.values()) == {1}  # no duplicate step
    assert {layer for layer, _, _ in steps} == {"0", "1", "2", "4"}
    assert {step for _, step, _ in steps} == {0, 1, 2}


@pytest.fixture(scope="module")
def torch_logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_logs")
    log_resnet(root / "torch", steps=(0, 1, 2))
    return root


@pytest.mark.parametrize("loader", ["python", "rust"])
def test_the_plugin_serves_a_torch_run_on_both_loaders(torch_logdir, loader):
    client = test_plugin.plugin_client(torch_logdir, loader)
    route = "/steps?" + test_plugin.query(run="torch", layer="layer2/0/bn2")
    deadline = time.monotonic() + 60
    while test_plugin.get(client, route).status_code != 200 or len(
            test_plugin.get_json(client, route)["steps"]) < 3:
        assert time.monotonic() < deadline, "the torch run was never served"
        time.sleep(0.3)
    (run,) = test_plugin.get_json(client, "/layers")["runs"]
    layers = [layer["layer"] for layer in run["layers"]]
    assert layers == RESNET_PATHS
    bn2 = run["layers"][layers.index("layer2/0/bn2")]
    assert bn2["layer_class"] == "BatchNorm2d" and bn2["output_shape"] == [None, 16, 4, 4]
    assert run["probes"] == [{"input": "input", "shape": [None, 16, 16, 3], "samples": 2}]
    grid = test_plugin.get(client, "/grid?" + test_plugin.query(
        run="torch", layer="layer2/0/bn2", step=2, sample=1))
    (record,) = [r for r in tba.read_activations(torch_logdir, layer="layer2/0/bn2")
                 if r.step == 2 and r.sample == 1]
    np.testing.assert_array_equal(grid_images.decode_png(grid.get_data()), record.image)
    overview = test_plugin.get_json(client, "/overview?" + test_plugin.query(run="torch"))
    assert overview["steps"] == [0, 1, 2]


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(browser_helpers.CHROMIUM), reason="needs chromium")
def test_the_tab_draws_a_torch_run(torch_logdir):
    pytest.importorskip("playwright.sync_api")
    with browser_helpers.served_page(torch_logdir, height=768) as (page, url, errors):
        frame = browser_helpers.open_layer(page, url, "torch", "layer1/0/conv1")
        frame.wait_for_selector(".grid-canvas", state="visible")
        pixels = frame.query_selector(".grid-canvas").evaluate(browser_helpers.CANVAS_PIXELS)
        paths = frame.eval_on_selector_all(  # a row's title starts with its layer path
            ".layer-row", "rows => rows.map(row => row.title.split('\\n')[0])")
        selected = frame.eval_on_selector(".layer-row.selected", "row => row.title")
    assert errors == []
    assert paths == RESNET_PATHS  # in call order, as the module tree nests them
    assert selected.startswith("layer1/0/conv1\nConv2d, output")
    assert pixels["colours"] > 10  # a drawn grid of 6 tiles, not a blank canvas
