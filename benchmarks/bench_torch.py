"""PyTorch benchmark: what tb_activations.torch costs next to one forward pass, and next to
what PyTorch users write today (forward hooks + torchvision's make_grid + add_image).

torchvision's ResNet-18 and MobileNetV2 (`weights=None`: random weights, nothing downloaded)
at 224x224x3 on CPU, a 4-image probe:

  forward            the baseline: model(x) in eval mode under torch.no_grad()
  get_activations    tb_activations.torch.get_activations: every default module as numpy
  log_activations    the public call with log_dir= (our own event file), background=False:
    log_dir=         everything in the calling thread, blocking == total; and the default,
                     background=True: the loop is blocked for the call (the capture), the
                     total adds tbat.flush() (the reduction, rendering and write done)
  log_activations    the call with writer=SummaryWriter, the same two ways; the total adds
    writer=          tbat.flush() and writer.flush() (the SummaryWriter's thread has the step
                     on disk)
  writer= / log_dir= writer='s total against log_dir='s, background=False, the two
                     interleaved
  hooks + make_grid  the peer: forward hooks on the same modules as ours keep the first
    + add_image      call's output of the first sample, cloned (torchvision's in-place ReLUs
                     would overwrite it), up to RenderOptions.max_channels channels; per
                     module torchvision.utils.make_grid(normalize=True, scale_each=True) and
                     SummaryWriter.add_image; blocking is that, total adds writer.flush()

"Loop blocked per logged step" is the call of log_activations with an idle writer thread,
which is what a loop logging every few dozen steps sees. Bytes per step are the event file's
growth for one step (for ours after the first step, which also stores the probe pictures);
that step is read back with TensorBoard's loader, and the run stops if a method did not draw
every module.

Every timed method is interleaved with forward passes, and its ratio is taken against the
forward passes timed next to it, so slow drifts of a shared machine cancel out.

Training slowdown: a real loop (SGD, cross-entropy) training torchvision's ResNet-18
(10 classes) on CIFAR-sized random data (batch 32, 32x32x3), logging a 4-image probe with
log_activations(log_dir=) every 50 steps, against the same loop not logging: wall time of
the whole loop (a final tbat.flush() included), the arms interleaved, the median ratio; and
the process CPU time the logging adds (the writer thread's work counted wherever it ran).

Usage:  python benchmarks/bench_torch.py            (full, ~15 min on 2 cores)
        python benchmarks/bench_torch.py --quick    (64x64 inputs, probe 2, 3 repeats, a
                                                     100-step loop, background=True against
                                                     no logging, once each; ~1.5 min)
        python benchmarks/bench_torch.py --training-only --training-runs 5   (the training
                                                     slowdown alone)
Results: a table on stdout and JSON in benchmarks/results/torch.json (torch-quick.json with
--quick).
"""

import argparse
import datetime
import itertools
import math
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # SummaryWriter imports TensorFlow if present

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from tensorboard.backend.event_processing import event_file_loader  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tb_activations.torch as tbat  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    event_bytes, git_commit, interleaved, loadavg, median, now, save_results, stat, timed)
from tb_activations.format import layout  # noqa: E402
from tb_activations.format import metadata  # noqa: E402

MIB = 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {"resnet18": torchvision.models.resnet18,
          "mobilenet_v2": torchvision.models.mobilenet_v2}
MAX_CHANNELS = layout.RenderOptions().max_channels
console = Console(width=150)


# ----------------------------------------------------------------------------- the peer

class HookGrids:
    """What PyTorch users write today: forward hooks on the modules to show, then per module
    a torchvision.utils.make_grid of the first sample's channels and SummaryWriter.add_image.
    The hooks are on only while a step is logged, so other forward passes do not pay for them.
    """

    def __init__(self, model, paths, writer):
        modules = dict(model.named_modules())
        self.model, self.writer = model, writer
        self.modules = [(path, modules[path.replace("/", ".")]) for path in paths]
        self.kept = {}

    def _keep(self, path):
        def hook(module, args, output):
            if path not in self.kept:  # a module called twice (ResNet's ReLU) is drawn once
                first = output.detach()[0]
                self.kept[path] = (first[:MAX_CHANNELS] if first.ndim == 3 else first).clone()
        return hook

    def log(self, x, step):
        self.kept.clear()
        handles = [module.register_forward_hook(self._keep(path))
                   for path, module in self.modules]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        for path, kept in self.kept.items():
            # (C, H, W) maps become C gray tiles; a vector (Linear) one strip.
            tiles = kept.unsqueeze(1) if kept.ndim == 3 else kept.reshape(1, 1, 1, -1)
            grid = torchvision.utils.make_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))),
                                               normalize=True, scale_each=True)
            self.writer.add_image(path, grid, step)


# ----------------------------------------------------------------------------- helpers

def forward_pass(model, x):
    """The baseline, a callable returning the seconds one pass took."""
    def run():
        with torch.no_grad():
            model(x)
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
    return lambda: timed(run)


class Blocking:
    """A logged step as a call and a flush: the call's seconds are kept in `samples` (what the
    training loop waits for), and timing the whole gives the total."""

    def __init__(self, call, flush):
        self.call, self.flush, self.samples = call, flush, []

    def __call__(self):
        start = now()
        self.call()
        self.samples.append(now() - start)
        self.flush()


def drawn_per_step(directory, step):
    """Modules drawn at `step`, read back with TensorBoard's own event file loader: our layer
    tags, and add_image's images (which the loader files under the "images" plugin)."""
    drawn = 0
    for path in sorted(os.listdir(directory)):
        for event in event_file_loader.EventFileLoader(os.path.join(directory, path)).Load():
            if event.step == step:
                drawn += sum(value.tag.startswith(metadata.LAYER_TAG_PREFIX)
                             or value.metadata.plugin_data.plugin_name == "images"
                             for value in event.summary.value)
    return drawn


def step_bytes(directory, log_step, flush, modules):
    """Event file growth of the second of two logged steps; raises unless that step drew
    every one of the `modules`, so a method that draws less is not timed as if it did."""
    sizes = []
    for step in (0, 1):
        log_step(step)
        flush()
        sizes.append(event_bytes(directory))
    drawn = drawn_per_step(directory, 1)
    if drawn != modules:
        raise RuntimeError("%s holds %d modules' pictures at step 1, expected all %d"
                           % (directory, drawn, modules))
    return sizes[1] - sizes[0]


# ----------------------------------------------------------------------------- one model

def bench_model(name, x, repeats, workdir, device):
    torch.manual_seed(0)
    model = MODELS[name](weights=None).to(device).eval()
    forward = forward_pass(model, x)
    for _ in range(3):
        forward()
    base = [forward() for _ in range(repeats)]
    result = {"model": name, "input_shape": list(x.shape), "repeats": repeats,
              "params": sum(p.numel() for p in model.parameters()), "loadavg_start": loadavg(),
              "forward": {"median_s": median(base), "min_s": min(base), "runs": len(base),
                          "method": "model.eval(), torch.no_grad(), model(x)"}}

    result["get_activations_first_s"] = timed(lambda: tbat.get_activations(model, x))
    paths = list(tbat.get_activations(model, x))
    result["modules"] = len(paths)
    console.log("[bold]%s[/]: %d default modules, input %s, %d repeats"
                % (name, len(paths), tuple(x.shape), repeats))
    method, base = interleaved(forward, lambda: tbat.get_activations(model, x), repeats)
    result["get_activations"] = stat(method, base)

    steps = itertools.count(2)
    log_dir = os.path.join(workdir, name, "log_dir")
    result["log_dir_bytes_per_step"] = step_bytes(
        log_dir, lambda step: tbat.log_activations(model, x, step, log_dir=log_dir,
                                                   background=False),
        lambda: None, len(paths))
    method, base = interleaved(
        forward, lambda: tbat.log_activations(model, x, next(steps), log_dir=log_dir,
                                              background=False), repeats)
    result["log_dir"] = stat(method, base, "log_dir=, background=False: blocking == total")

    def rows(key, log_step, flush, note):
        """Blocking (the call) and total (with `flush()`) of one method."""
        blocking = Blocking(lambda: log_step(next(steps)), flush)
        method, base = interleaved(forward, blocking, repeats)
        result[key + "_blocking"] = stat(blocking.samples[1:], base, note + ", the call")
        result[key + "_total"] = stat(method, base, note + " + flush")

    background_dir = os.path.join(workdir, name, "background")
    result["background_bytes_per_step"] = step_bytes(
        background_dir, lambda step: tbat.log_activations(model, x, step, log_dir=background_dir),
        tbat.flush, len(paths))
    rows("background", lambda step: tbat.log_activations(model, x, step, log_dir=background_dir),
         tbat.flush, "log_activations(log_dir=), background=True")

    def writer_rows(key, log_step, writer, note):
        """Blocking and total of one method writing to a SummaryWriter."""
        def flush():
            tbat.flush()
            writer.flush()
        result[key + "_bytes_per_step"] = step_bytes(writer.get_logdir(), log_step, flush,
                                                     len(paths))
        rows(key, log_step, flush, note)
        writer.close()

    writer = SummaryWriter(os.path.join(workdir, name, "writer"))
    writer_rows("writer", lambda step: tbat.log_activations(model, x, step, writer=writer,
                                                            background=False),
                writer, "log_activations(writer=SummaryWriter), background=False")
    background_writer = SummaryWriter(os.path.join(workdir, name, "background_writer"))
    writer_rows("background_writer", lambda step: tbat.log_activations(
        model, x, step, writer=background_writer), background_writer,
        "log_activations(writer=SummaryWriter), background=True")
    paired = SummaryWriter(os.path.join(workdir, name, "paired"))

    def writer_total():
        tbat.log_activations(model, x, next(steps), writer=paired, background=False)
        paired.flush()
    method, base = interleaved(
        lambda: timed(lambda: tbat.log_activations(model, x, next(steps), log_dir=log_dir,
                                                   background=False)),
        writer_total, repeats)
    paired.close()
    result["writer_over_log_dir"] = stat(method, base, "writer= total, interleaved with "
                                         "log_dir= steps: ratio to those")
    peer_writer = SummaryWriter(os.path.join(workdir, name, "peer"))
    peer = HookGrids(model, paths, peer_writer)
    writer_rows("peer", lambda step: peer.log(x, step), peer_writer,
                "hooks + make_grid + add_image per module")
    result["loadavg_end"] = loadavg()
    return result


# ----------------------------------------------------------------------------- training

LOG_EVERY = 50
SLOWDOWN_TARGET = 0.03


def training_loop(model, steps, log_dir, background, device):
    """A training loop's (wall seconds, process CPU seconds): SGD on ResNet-18 over CIFAR-sized
    random batches, logging the probe every LOG_EVERY steps to `log_dir` (None: no logging),
    a final tbat.flush() included. CPU time counts the writer thread's work wherever it ran,
    so it is the steadier figure on a shared machine."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batches = [(torch.rand(32, 3, 32, 32, generator=generator).to(device),
                torch.randint(0, 10, (32,), generator=generator).to(device))
               for _ in range(4)]
    probe = batches[0][0][:4].clone()
    start, cpu_start = now(), time.process_time()
    for step in range(steps):
        images, labels = batches[step % len(batches)]
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log_dir is not None and step % LOG_EVERY == 0:
            tbat.log_activations(model, probe, step, log_dir=log_dir, background=background)
    tbat.flush()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return now() - start, time.process_time() - cpu_start


def bench_training(steps, runs, workdir, device, foreground=True):
    """Wall and CPU time of the loop logging every LOG_EVERY steps (background on, and off if
    `foreground`) against the loop not logging, the arms interleaved run by run."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).to(device).train()
    arms = {"no_logging": None, "background": True}
    if foreground:
        arms["foreground"] = False
    training_loop(model, 2, os.path.join(workdir, "training", "warmup"), True, device)
    walls = {arm: [] for arm in arms}
    cpus = {arm: [] for arm in arms}
    for run in range(runs):
        for arm, background in arms.items():
            log_dir = (None if background is None
                       else os.path.join(workdir, "training", "%s-%d" % (arm, run)))
            wall, cpu = training_loop(model, steps, log_dir, background, device)
            walls[arm].append(wall)
            cpus[arm].append(cpu)
    base, cpu_base = median(walls["no_logging"]), median(cpus["no_logging"])
    result = {"model": "resnet18", "steps": steps, "runs": runs, "log_every": LOG_EVERY,
              "batch": [32, 3, 32, 32], "probe": [4, 3, 32, 32], "loadavg_end": loadavg(),
              "no_logging": {"median_s": base, "walls_s": walls["no_logging"],
                             "cpu_median_s": cpu_base, "cpus_s": cpus["no_logging"]}}
    for arm in arms.keys() - {"no_logging"}:
        result[arm] = {"median_s": median(walls[arm]), "walls_s": walls[arm],
                       "slowdown": median(walls[arm]) / base - 1,
                       "cpu_median_s": median(cpus[arm]), "cpus_s": cpus[arm],
                       "cpu_slowdown": median(cpus[arm]) / cpu_base - 1}
    return result


# ----------------------------------------------------------------------------- report

ROWS = (
    ("forward (eval, no_grad)", "forward", None),
    ("get_activations", "get_activations", None),
    ("log_dir=, background=False: loop blocked per logged step = total", "log_dir", "log_dir"),
    ("log_dir=, background=True: loop blocked per logged step", "background_blocking", None),
    ("log_dir=, background=True: total", "background_total", "background"),
    ("writer=SummaryWriter, background=False: loop blocked", "writer_blocking", None),
    ("writer=SummaryWriter, background=False: total", "writer_total", "writer"),
    ("writer=SummaryWriter, background=True: loop blocked", "background_writer_blocking", None),
    ("writer=SummaryWriter, background=True: total", "background_writer_total",
     "background_writer"),
    ("hooks + make_grid + add_image: blocking", "peer_blocking", None),
    ("hooks + make_grid + add_image: total", "peer_total", "peer"),
)


def print_table(results):
    table = Table(title="PyTorch on CPU: ratios to the forward passes timed next to each method")
    for column in ("model", "method", "median", "x forward", "forward beside", "runs",
                   "bytes / step"):
        table.add_column(column, justify="left" if column in ("model", "method") else "right")
    for name, result in results.items():
        for label, key, bytes_key in ROWS:
            row = result[key]
            table.add_row(
                name if key == "forward" else "", label, "%.1f ms" % (1e3 * row["median_s"]),
                "%.2fx" % row.get("ratio", 1.0),
                "%.1f ms" % (1e3 * row.get("forward_median_s", row["median_s"])),
                str(row["runs"]),
                "" if bytes_key is None else "%.2f MiB"
                % (result[bytes_key + "_bytes_per_step"] / MIB),
                end_section=key == ROWS[-1][1])
    console.print(table)
    for name, result in results.items():
        console.print("%s: log_activations writer= total / log_dir= total, the two interleaved: "
                      "%.2f" % (name, result["writer_over_log_dir"]["ratio"]))
    console.print("ours draws every sample of the probe plus statistics per module; the peer "
                  "draws the first sample only. log_activations(background=True) blocks the "
                  "loop for the capture; its writer thread does the rest.")


def print_training(training):
    table = Table(title="Training slowdown: ResNet-18, CIFAR-sized random data (batch 32), "
                        "%d steps, log_activations(log_dir=) every %d steps, median of %d runs"
                        % (training["steps"], training["log_every"], training["runs"]))
    for column in ("loop", "wall (median)", "slowdown", "target", "CPU (median)", "CPU added"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    base = training["no_logging"]
    table.add_row("not logging", "%.2f s" % base["median_s"], "", "",
                  "%.2f s" % base["cpu_median_s"], "")
    for arm, label in (("background", "logging, background=True"),
                       ("foreground", "logging, background=False")):
        if arm not in training:
            continue
        slowdown = training[arm]["slowdown"]
        table.add_row(label, "%.2f s" % training[arm]["median_s"], "%+.1f%%" % (100 * slowdown),
                      "" if arm == "foreground" else "%s (<= %d%%)" % (
                          "PASS" if slowdown <= SLOWDOWN_TARGET else "FAIL",
                          100 * SLOWDOWN_TARGET),
                      "%.2f s" % training[arm]["cpu_median_s"],
                      "%+.1f%%" % (100 * training[arm]["cpu_slowdown"]))
    console.print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="64x64 inputs, a probe of 2, 3 repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method")
    parser.add_argument("--output", default=None, help="JSON path")
    parser.add_argument("--training-steps", type=int, default=None,
                        help="steps of each training loop (default 300, 100 with --quick)")
    parser.add_argument("--training-runs", type=int, default=None,
                        help="runs of each training arm (default 3, 1 with --quick)")
    parser.add_argument("--training-only", action="store_true",
                        help="the training slowdown alone (no per-model rows)")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the models (cuda: the reduction runs on its own "
                             "CUDA stream)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device %s: torch sees no CUDA device" % args.device)
    side, batch = (64, 2) if args.quick else (224, 4)
    repeats = args.repeats or (3 if args.quick else 10)
    output = args.output or os.path.join(HERE, "results",
                                         "torch-quick.json" if args.quick else "torch.json")
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "machine": platform.machine(), "loadavg_start": loadavg(),
            "argv": sys.argv[1:], "max_channels": MAX_CHANNELS, "device": str(device)}
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    started = now()
    workdir = tempfile.mkdtemp(prefix="tba-bench-torch-")
    try:
        results = ({} if args.training_only else
                   {name: bench_model(name, x, repeats, workdir, device) for name in MODELS})
        training = bench_training(args.training_steps or (100 if args.quick else 300),
                                  args.training_runs or (1 if args.quick else 3),
                                  workdir, device, foreground=not args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = now() - started
    meta["loadavg_end"] = loadavg()
    if results:
        print_table(results)
    print_training(training)
    save_results(console, output, {"meta": meta, "models": results, "training": training},
                 meta["seconds"], meta["loadavg_start"], meta["loadavg_end"])


if __name__ == "__main__":
    main()
