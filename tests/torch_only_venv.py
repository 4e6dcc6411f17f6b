"""Run by tests/test_install.py inside a fresh virtual environment that has only
`pip install "tb-activations[torch]"`: the PyTorch path end to end, and the tab's plugin, with
neither TensorFlow, Keras nor JAX installed. argv[1]: an empty logdir. Prints a JSON summary."""

import glob
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import urllib.request

for framework in ("tensorflow", "keras", "jax"):
    assert importlib.util.find_spec(framework) is None, framework + " is installed"

import torch  # noqa: E402
from tensorboard import default  # noqa: E402
from tensorboard import program  # noqa: E402
from tensorboard.backend.event_processing import event_file_loader  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

import tb_activations as tba  # noqa: E402
import tb_activations.torch as tbat  # noqa: E402
from tb_activations import plugin  # noqa: E402
from tb_activations.format import metadata  # noqa: E402
from tb_activations.plugin import static_files  # noqa: E402

logdir = sys.argv[1]
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
probe = torch.rand(2, 3, 16, 16)
layers = sorted(tbat.get_activations(model, probe))

for step in (0, 1):
    assert tbat.log_activations(model, probe, step=step, log_dir=os.path.join(logdir, "plain"))
writer = SummaryWriter(os.path.join(logdir, "writer"))
writer.add_scalar("loss", 0.5, 2)
assert tbat.log_activations(model, probe, step=2, writer=writer)
tbat.flush()
writer.close()


def tensorboard_loader_steps(run):
    """{tag: steps} of the activations summaries, read by TensorBoard's own event file loader."""
    steps = {}
    for path in glob.glob(os.path.join(logdir, run, "events.out.tfevents.*")):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    steps.setdefault(value.tag, []).append(event.step)
    return steps


def tab_runs(url):
    """The Activations tab's /runs from an in-process TensorBoard, once its listing is whole."""
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(url + "data/plugin/activations/runs", timeout=30) as answer:
            runs = json.load(answer)
        if not runs["partial"] and len(runs["runs"]) == 2 or time.monotonic() > deadline:
            return runs["runs"]
        time.sleep(0.5)


try:
    tba.ActivationsCallback
    keras_error = None
except ImportError as error:
    keras_error = str(error)

(entry_point,) = [entry for entry in importlib.metadata.entry_points(group="tensorboard_plugins")
                  if entry.name == metadata.PLUGIN_NAME]
board = program.TensorBoard(plugins=default.get_plugins())
board.configure(argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", "0"])
url = board.launch()

print(json.dumps({
    "torch": torch.__version__,
    "layers": layers,
    "loader_steps": {run: tensorboard_loader_steps(run) for run in ("plain", "writer")},
    "reader_steps": {run: sorted({(record.layer, record.step)
                                  for record in tba.read_activations(os.path.join(logdir, run))})
                     for run in ("plain", "writer")},
    "entry_point_is_ours": entry_point.load() is plugin.ActivationsLoader,
    "dynamic_plugins": [loader.__name__ for loader in default.get_dynamic_plugins()],
    "tab_runs": {run["run"]: run["layers"] for run in tab_runs(url)},
    "static_files": sorted(static_files.static_files()),
    "index_js_bytes": len(urllib.request.urlopen(
        url + "data/plugin/activations/index.js", timeout=30).read()),
    "keras_error": keras_error,
    "loaded_frameworks": sorted({name.split(".")[0] for name, module in sys.modules.items()
                                 if module} & {"tensorflow", "keras", "jax"}),
}))
