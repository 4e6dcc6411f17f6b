"""What each unit responds to over a reference set, on plain PyTorch and Lightning: a unit built
by hand to fire on one class, top-k against a numpy brute force, DataLoaders read once,
receptive fields against the pixels that really reach a cell, real event files read back."""

import warnings
import weakref
from unittest import mock

import hypothesis
import numpy as np
import pytest
import torch
from hypothesis import strategies as st
from lightning import pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.rendering import reference as reference_lib
from tb_activations.torch import receptive_fields
from tb_activations.torch import reference as torch_reference
from tb_activations.torch.lightning import ActivationsCallback
from tests.reference_data import CLASSES, DETECTOR_BIASES, SIDE, brute_force, cross_digits
from tests.reference_data import field_box, plus_kernel
from tests.test_torch_lightning import DigitsCNN, digits, digits_loader


def plus_detector():
    conv = nn.Conv2d(1, 3, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = torch.from_numpy(plus_kernel())
        conv.bias.copy_(torch.tensor(DETECTOR_BIASES))
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(3 * 10 * 10, CLASSES))


def test_a_unit_built_to_fire_on_one_class_has_selectivity_one(tmp_path):
    x, y, centres = cross_digits(160)
    images = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    assert tbat.log_reference(plus_detector(), images, torch.from_numpy(y), step=2,
                              log_dir=tmp_path, batch_size=50, layers=["1"])
    run = tba.read_reference(tmp_path)["."]
    (step,) = run.layers["1"]
    assert abs(step.selectivity[0] - 1.0) < 1e-6 and step.preferred[0] == 0
    assert np.all(y[step.top_index[0]] == 0)
    assert np.array_equal(step.top_position[0], centres[step.top_index[0]] - 1)
    assert list(step.dead) == [False, True, False]
    assert step.content["receptive_field"] == {"stride": [1, 1], "size": [3, 3],
                                               "offset": [1.0, 1.0], "exact": True}
    assert run.thumbnails.shape == (160, SIDE, SIDE) and np.array_equal(run.labels, y)


@hypothesis.settings(max_examples=25)
@hypothesis.given(data=st.data())
def test_top_inputs_equal_a_brute_force(tmp_path_factory, data):
    # (2, 5, 6): maps long enough for numpy's argmax; the others take torch's max.
    shape = data.draw(st.sampled_from([(3, 5, 4), (2, 3, 3), (2, 5, 6), (7, 2), (6,)]))
    count = data.draw(st.integers(1, 23))
    batch_size = data.draw(st.integers(1, 9))
    k = data.draw(st.integers(1, 12))
    choices = st.sampled_from([0.0, 1.0, 2.0, -1.0, np.nan, np.inf, -np.inf])
    size = count * int(np.prod(shape))
    x = np.array(data.draw(st.lists(choices, min_size=size, max_size=size)),
                 np.float32).reshape((count,) + shape)
    selection = data.draw(st.sampled_from(["first", "top"]))
    kept = data.draw(st.integers(1, 4))
    # Batches merged into the running top k one at a time, a few at a time, or all at the end.
    merge_entries = data.draw(st.sampled_from([1, 24, reference_lib.MERGE_ENTRIES]))
    log_dir = tmp_path_factory.mktemp("brute")
    loader = torch.utils.data.DataLoader(torch.from_numpy(x), batch_size=batch_size)
    with mock.patch.object(reference_lib, "MERGE_ENTRIES", merge_entries):
        assert tbat.log_reference(nn.Sequential(nn.Identity()), loader, step=0,
                                  log_dir=log_dir, k=k, layers=["0"], max_channels=kept,
                                  channel_selection=selection)
    (step,) = tba.read_reference(log_dir)["."].layers["0"]
    units_last = np.moveaxis(x, 1, -1) if x.ndim == 4 else x  # (N, C, H, W) is channels first
    expected = brute_force(units_last, k)
    maps = units_last.reshape(count, -1, units_last.shape[-1]).astype(np.float64)
    if selection == "top":  # the units of largest mean |a| over their finite values
        # Summed whole, an exact integer here: units that tie may come in either order.
        magnitude = np.where(np.isfinite(maps), np.abs(maps), 0).sum(axis=(0, 1))
        chosen = list(step.units)
        assert len(chosen) == min(kept, maps.shape[-1]) == len(set(chosen))
        assert list(magnitude[chosen]) == sorted(magnitude[chosen], reverse=True)
        others = np.delete(magnitude, chosen)
        assert not others.size or magnitude[chosen].min() >= others.max()
    else:
        assert list(step.units) == list(range(min(kept, maps.shape[-1])))
    zero = np.mean(np.all(maps == 0, axis=1), axis=0)[step.units]
    np.testing.assert_allclose(step.zero_fraction, zero, rtol=1e-6)
    for row, unit in enumerate(step.units):
        indices, values, positions = expected[unit]
        assert list(step.top_index[row]) == indices
        np.testing.assert_array_equal(step.top_value[row], np.array(values, np.float32))
        map_shape = step.content["map_shape"]
        flat = (np.ravel_multi_index(tuple(step.top_position[row].T), map_shape) if map_shape
                else np.zeros(len(indices), int))
        assert list(flat) == positions


class ChannelsLast(nn.Module):
    def forward(self, x):
        return x.permute(0, 2, 3, 1)


@pytest.mark.parametrize("last", ["identity", "channels_last", "relu"])
def test_large_outputs_equal_a_brute_force(tmp_path, last):
    """Outputs past the small-output path and the chunk size (positions searched for each
    batch's top inputs only; max(a, 0) summed a chunk at a time, into one reused buffer where
    the view is row-major): ties, NaN, Inf and all-zero maps, channels first and last, and a
    ReLU's output (never negative: summed as it is, all zeros where its maximum is 0)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 4, 150, 150)).astype(np.float32)
    x[:, 1] = np.rint(x[:, 1])  # ties within and across maps
    x[3, 2] = np.nan
    x[8, 2, 7, 9] = np.inf
    x[10:30, 3] = 0.0
    x[31, 3, 2, 2] = -1.0
    y = rng.integers(0, 3, 60)
    modules = {"identity": nn.Identity(), "channels_last": ChannelsLast(), "relu": nn.ReLU()}
    model = nn.Sequential(nn.Identity(), modules[last])
    assert tbat.log_reference(model, torch.from_numpy(x), torch.from_numpy(y), step=0,
                              log_dir=tmp_path, k=7, batch_size=48, layers=["1"])
    (step,) = tba.read_reference(tmp_path)["."].layers["1"]
    if last == "relu":
        x = np.where(np.isnan(x), x, np.maximum(x, 0))
    units_last = np.moveaxis(x, 1, -1)
    maps = units_last.reshape(60, -1, 4).astype(np.float64)
    for unit, (indices, values, positions) in enumerate(brute_force(units_last, 7)):
        assert list(step.top_index[unit]) == indices
        np.testing.assert_array_equal(step.top_value[unit], np.array(values, np.float32))
        assert list(np.ravel_multi_index(tuple(step.top_position[unit].T), (150, 150))) == \
            positions
    np.testing.assert_allclose(step.zero_fraction, np.mean(np.all(maps == 0, axis=1), 0), rtol=1e-6)
    positive = np.where(maps > 0, maps, 0).mean(axis=1)  # NaN counts as 0
    expected = np.stack([positive[y == c].mean(axis=0) for c in range(3)], axis=-1)
    np.testing.assert_allclose(step.class_mean, expected, rtol=1e-5)


def test_a_pass_runs_the_model_on_the_callers_threads_and_leaves_them_so():
    """The reductions run on one thread; every module, and the caller after the pass (even
    one that failed in a hook), sees the thread count it set."""
    seen = []

    class Threads(nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Threads(), nn.ReLU(), Threads())
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert torch_reference.reference_step(model, torch.rand(20, 1, 9, 9), batch_size=8)
        assert set(seen) == {2} and len(seen) >= 6 and torch.get_num_threads() == 2
        batches = [torch.rand(8, 1, 9, 9), torch.rand(8, 1, 7, 7)]
        with pytest.raises(ValueError, match="no longer holds the planned"):
            torch_reference.reference_step(model, batches)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_dataloader_is_read_once_a_batch_at_a_time(tmp_path):
    alive, most = [], [0]

    class Counted(torch.utils.data.Dataset):
        def __len__(self):
            return 90

        def __getitem__(self, index):
            most[0] = max(most[0], sum(ref() is not None for ref in alive))
            image = torch.rand(1, 8, 8)
            alive.append(weakref.ref(image))
            return image, index % 10

    model = DigitsCNN()
    loader = torch.utils.data.DataLoader(Counted(), batch_size=16)
    assert tbat.log_reference(model, loader, step=0, log_dir=tmp_path)
    assert len(alive) == 90
    # The collated batch copies the samples; a batch's samples are all that live at once.
    assert most[0] <= 16 + 1, most[0]
    run = tba.read_reference(tmp_path)["."]
    assert run.inputs["inputs"] == 90 and list(run.labels[:12]) == list(range(10)) + [0, 1]


@hypothesis.given(st.lists(st.tuples(st.sampled_from(["conv", "max", "avg", "pad"]),
                                     st.integers(1, 4), st.integers(1, 2),
                                     st.sampled_from([0, 1, "same"]), st.integers(1, 2)),
                           min_size=1, max_size=3))
def test_exact_receptive_fields_are_the_pixels_that_reach_a_cell(layers):
    """All-positive weights, one lit pixel per input: a cell responds exactly to the pixels
    inside its receptive field (clipped to the input)."""
    modules = []
    for kind, kernel, stride, padding, dilation in layers:
        if kind == "pad":
            modules.append(nn.ZeroPad2d((kernel - 1, 0, kernel - 1, 0)))
        elif kind == "conv":
            if padding == "same":
                stride = 1
            conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation, bias=False)
            nn.init.constant_(conv.weight, 1.0)
            modules.append(conv)
        else:
            padding = 0 if padding == "same" or padding * 2 > kernel else padding
            modules.append(nn.MaxPool2d(kernel, stride, padding) if kind == "max"
                           else nn.AvgPool2d(kernel, stride, padding))
    model = nn.Sequential(*modules)
    side = 13
    lit = torch.eye(side * side).reshape(side * side, 1, side, side)
    try:
        with torch.no_grad():
            out = model(lit)
    except RuntimeError:
        hypothesis.reject()  # a map smaller than a kernel
    fields = receptive_fields.receptive_fields(model, lit[:1])
    field = fields[str(len(modules) - 1)]
    rows, columns = out.shape[2:]
    for row, column in {(0, 0), (rows - 1, columns - 1), (rows // 2, columns // 2)}:
        reached = (out[:, 0, row, column] > 0).reshape(side, side).numpy()
        box = field_box(field, row, column, side)
        # Dilation leaves holes: every reached pixel lies in the box, and the box's corners
        # that lie inside the input are reached where no padding covers them.
        assert not np.any(reached & ~box), (row, column, field)
        # Cells over padding see less than their box: the equality holds where none is added.
        if all(kind != "pad" and padding == 0 and dilation == 1 and kernel >= stride
               for kind, kernel, stride, padding, dilation in layers):
            assert np.array_equal(reached, box), (row, column, field)


def test_the_lightning_callback_logs_reference_steps(tmp_path):
    x, y = digits()
    callback = ActivationsCallback(probe=x[:4], reference=(x[:100], y[:100]),
                                   reference_every="epoch", reference_k=5)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=3, logger=TensorBoardLogger(
        tmp_path, name="", version="run"), callbacks=[callback], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(DigitsCNN(), digits_loader())
    run = tba.read_reference(tmp_path)["run"]
    steps = [s.step for s in run.layers["net/0"]]
    assert steps == [0, 3, 6]
    assert run.layers["net/0"][0].top_index.shape == (8, 5)
    assert run.thumbnails.shape == (100, 8, 8) and np.array_equal(run.labels, y[:100].numpy())
    relu = run.layers["net/5"][-1]
    assert np.array_equal(np.isnan(relu.selectivity), relu.dead)
    assert np.all((relu.selectivity[~relu.dead] >= 0) & (relu.selectivity[~relu.dead] <= 1))
    with pytest.raises(ValueError, match="can be read once only"):
        ActivationsCallback(probe=x[:4], reference=iter([x]))
