"""tb_activations.torch.lightning: a small CNN LightningModule trained for real by Lightning's
Trainer on CPU (scikit-learn's bundled digits, no download), its steps read back through
TensorBoard's loaders."""

import collections
import json
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import pytorch_lightning as ptl
import torch
from lightning import pytorch as pl
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import TensorBoardLogger
from sklearn.datasets import load_digits
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

import tb_activations as tba
import tb_activations.torch as tbat
from tb_activations.reading import reader
from tb_activations.rendering import steps as steps_lib
from tb_activations.torch.lightning import ActivationsCallback
from tb_activations.torch.pytorch_lightning import ActivationsCallback as OlderNameCallback
from tests.test_events import fill

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DDP_WORKER = os.path.join(REPO, "tests", "lightning_ddp_worker.py")


class DigitsNet:
    """A small CNN on sklearn's digits, for a LightningModule of either package name."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


class DigitsCNN(DigitsNet, pl.LightningModule):
    pass


class OlderNameDigitsCNN(DigitsNet, ptl.LightningModule):
    pass


def digits():
    """(images (N, 1, 8, 8) in [0, 1], labels) of scikit-learn's bundled digits."""
    data = load_digits()
    return torch.tensor(data.images[:, None] / 16, dtype=torch.float32), torch.tensor(data.target)


def digits_loader():
    generator = torch.Generator().manual_seed(0)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*digits()), batch_size=32,
                                       shuffle=True, generator=generator)


PROBE = digits()[0][:4]
LAYERS = {"net/0", "net/1", "net/2", "net/3", "net/4", "net/5", "net/7"}  # not Flatten


def fit(callbacks, max_steps=6, package=pl, module_class=DigitsCNN, **trainer_options):
    """(trainer, module) after fitting a `module_class` for `max_steps` on CPU with
    `package`'s Trainer."""
    torch.manual_seed(0)
    options = dict(accelerator="cpu", max_steps=max_steps, enable_progress_bar=False,
                   enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=1,
                   logger=False, callbacks=callbacks)
    trainer = package.Trainer(**dict(options, **trainer_options))
    module = module_class()
    trainer.fit(module, digits_loader())
    return trainer, module


def logged_steps(log_dir):
    """{layer: sorted steps} read back from `log_dir`, each (layer, step, sample) once."""
    counts = collections.Counter((record.layer, record.step, record.sample)
                                 for record in tba.read_activations(log_dir))
    assert set(counts.values()) <= {1}, "a step was written twice"
    steps = collections.defaultdict(set)
    for layer, step, _ in counts:
        steps[layer].add(step)
    return {layer: sorted(found) for layer, found in steps.items()}


def test_steps_land_in_the_tensorboard_loggers_run_beside_its_scalars(tmp_path):
    logger = TensorBoardLogger(str(tmp_path))
    trainer, module = fit([ActivationsCallback(PROBE, every_n_steps=5, max_channels=6)],
                          max_steps=12, logger=logger)
    run = logger.log_dir
    assert trainer.global_step == 12
    assert len([name for name in os.listdir(run) if "tfevents" in name]) == 1  # the logger's
    assert logged_steps(run) == {layer: [0, 5, 10, 12] for layer in LAYERS}
    records = {(record.layer, record.step, record.sample): record
               for record in tba.read_activations(run)}
    final = tbat.get_activations(module, PROBE)  # the module as trained, at step 12
    for sample in range(len(PROBE)):
        record = records["net/4", 12, sample]
        expected = final["net/4"][sample].reshape(16, -1).mean(axis=1)[record.units]
        np.testing.assert_allclose(record.statistics["mean"], expected, rtol=1e-5, atol=1e-6)
        first = records["net/4", 0, sample]
        assert np.abs(first.statistics["mean"] - record.statistics["mean"]).max() > 1e-3
    scalars = event_accumulator.EventAccumulator(run)
    scalars.Reload()
    assert "train_loss" in scalars.Tags()["scalars"]
    probes = [value.step for value in reader.read_run(run) if isinstance(value, reader.ProbeStep)]
    assert probes == [0]  # the probe pictures, stored once


def test_the_training_loop_waits_for_the_probe_pass_only(tmp_path, monkeypatch):
    threads = []

    def render_capture(captured, real=steps_lib.render_capture):
        threads.append(threading.current_thread())
        return real(captured)

    monkeypatch.setattr(steps_lib, "render_capture", render_capture)
    fit([ActivationsCallback(PROBE, every_n_steps=2, log_dir=tmp_path)], max_steps=4)
    assert len(threads) == 3 and threading.main_thread() not in threads
    assert logged_steps(tmp_path) == {layer: [0, 2, 4] for layer in LAYERS}


def test_the_older_package_name_gets_the_same_callback(tmp_path):
    logger = ptl.loggers.TensorBoardLogger(str(tmp_path))
    trainer, _ = fit([OlderNameCallback(PROBE, every_n_steps=5)], max_steps=12, package=ptl,
                     module_class=OlderNameDigitsCNN, logger=logger)
    assert trainer.global_step == 12
    run = logger.log_dir
    assert len([name for name in os.listdir(run) if "tfevents" in name]) == 1  # the logger's
    assert logged_steps(run) == {layer: [0, 5, 10, 12] for layer in LAYERS}
    assert not issubclass(OlderNameCallback, pl.Callback)


class DirectoryLessLogger(Logger):
    """A logger that saves nothing locally (save_dir None), as remote trackers do."""

    name, version = "remote", 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        pass


@pytest.mark.parametrize("case", ["log_dir", "no logger", "csv logger", "log_dir over logger"])
def test_without_a_tensorboard_logger_steps_go_to_log_dir_or_the_trainers(tmp_path, case):
    root, chosen = str(tmp_path / "root"), str(tmp_path / "chosen")
    logger = {"csv logger": CSVLogger(root),
              "log_dir over logger": TensorBoardLogger(root)}.get(case, False)
    log_dir = chosen if case in ("log_dir", "log_dir over logger") else None
    fit([ActivationsCallback(PROBE, every_n_steps=4, log_dir=log_dir)], logger=logger,
        default_root_dir=root)
    expected = {"csv logger": os.path.join(root, "lightning_logs", "version_0"),
                "no logger": root}.get(case, chosen)
    assert logged_steps(expected) == {layer: [0, 4, 6] for layer in LAYERS}
    if case == "log_dir over logger":
        assert logged_steps(logger.log_dir) == {}


def test_a_step_of_accumulated_batches_is_logged_once(tmp_path):
    trainer, _ = fit([ActivationsCallback(PROBE, every_n_steps=2, log_dir=tmp_path)],
                     max_steps=4, accumulate_grad_batches=3)
    assert trainer.global_step == 4
    assert logged_steps(tmp_path) == {layer: [0, 2, 4] for layer in LAYERS}


class FillDiskAt(pl.Callback):
    """Fills the file system of `folder` once the global step reaches `step`, after step 0
    is on disk in `run` (its writer thread may still be at it on a slow machine)."""

    def __init__(self, folder, step, run):
        self.folder, self.step, self.run = folder, step, run

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            deadline = time.monotonic() + 120
            while not logged_steps(self.run) and time.monotonic() < deadline:
                time.sleep(0.05)
            fill(self.folder, leaving=0)


@pytest.mark.parametrize("on_error", ["warn", "raise"])
def test_a_full_disk_warns_once_and_training_goes_on_unless_asked_to_raise(tiny_disk, on_error):
    run = tiny_disk / "run"
    callbacks = [FillDiskAt(tiny_disk, step=3, run=run),
                 ActivationsCallback(PROBE, every_n_steps=2, log_dir=run, on_error=on_error)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if on_error == "raise":
            with pytest.raises(RuntimeError, match="No space left on device"):
                fit(callbacks, max_steps=8)
        else:
            trainer, _ = fit(callbacks, max_steps=8)
            assert trainer.global_step == 8
    ours = [str(warning.message) for warning in caught
            if "tb-activations" in str(warning.message)]
    if on_error == "warn":
        assert len(ours) == 1 and str(run) in ours[0] and "No space left on device" in ours[0]
    else:
        assert ours == []
    os.unlink(tiny_disk / "filler")
    # Step 2 is written on the writer's thread, before or after the disk fills at step 3.
    kept = logged_steps(run)
    assert sorted(kept) == sorted(LAYERS) and len({tuple(steps) for steps in kept.values()}) == 1
    assert kept["net/0"] in ([0], [0, 2])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"probe": None}, ValueError, "the probe is None"),
    ({"every_n_steps": 0}, ValueError, "every_n_steps must be a positive int.*got 0"),
    ({"every_n_steps": True}, ValueError, "every_n_steps must be a positive int"),
    ({"every_n_steps": "epoch"}, ValueError, "every_n_steps must be a positive int"),
    ({"on_error": "ignore"}, ValueError, 'on_error must be "warn" or "raise"'),
    ({"max_tiles": 3}, TypeError, "unknown option.*max_tiles"),
])
def test_bad_arguments_raise_when_the_callback_is_made(kwargs, error, message):
    with pytest.raises(error, match=message):
        ActivationsCallback(**dict({"probe": PROBE}, **kwargs))


@pytest.mark.parametrize("kwargs, logger, message", [
    ({"probe": torch.ones(2, 3, 8, 8)}, False, "could not pass through model DigitsCNN"),
    ({"layers": ["head"]}, False, "head"),
    ({}, DirectoryLessLogger(), "no directory to write into.*DirectoryLessLogger.*log_dir="),
])
def test_what_the_trainer_shows_wrong_raises_at_fit_start_even_when_warning(
        tmp_path, kwargs, logger, message):
    callback = ActivationsCallback(**dict({"probe": PROBE, "on_error": "warn"}, **kwargs))
    with pytest.raises(ValueError, match=message):
        fit([callback], logger=logger, default_root_dir=str(tmp_path))
    assert logged_steps(tmp_path) == {}


NO_LIGHTNING = """
import sys
import tb_activations.torch
print(sorted(name for name in sys.modules if name.split(".")[0] in ("lightning",
                                                                    "pytorch_lightning")))
"""


def test_tb_activations_torch_does_not_import_lightning():
    result = subprocess.run([sys.executable, "-c", NO_LIGHTNING], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env=dict(os.environ, PYTHONPATH=REPO),
                            check=True)
    assert result.stdout.split() == ["[]"]


@pytest.mark.slow
def test_under_ddp_one_process_writes_each_step_once(tmp_path):
    result = subprocess.run([sys.executable, DDP_WORKER, str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO, timeout=600,
                            env=dict(os.environ, PYTHONPATH=REPO))
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert summary == {"world_size": 2, "global_step": 6}
    run = os.path.join(str(tmp_path), "lightning_logs", "version_0")
    assert len(list(tmp_path.rglob("*tfevents*"))) == 1
    assert logged_steps(run) == {layer: [0, 4, 6] for layer in LAYERS}
