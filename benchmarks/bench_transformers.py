"""Transformer benchmark: what drawing a ViT as its users think of it (tokens on the patch
grid, attention heads as tiles, the class token's attention over the grid) costs, next to one
forward pass and next to the same step drawn as before (token outputs as sequences, no
attention: `token_grid=False, attention=False`).

timm's vit_base_patch16_224 (random weights, nothing downloaded) at 224x224x3 on CPU, a
4-image probe, `tb_activations.torch.log_activations(..., log_dir=)` (capture, reduction,
rendering and the write all in the calling thread):

  forward            the baseline: model(x) in eval mode under torch.no_grad()
  as before          log_activations(token_grid=False, attention=False)
  transformer views  log_activations() as it is: every token output on its 14x14 grid plus
                     its class token, every block's attention per head and over the grid

Bytes per step are the event file's growth for one step (after the first, which also stores
the probe pictures). Every timed method is interleaved with forward passes, and its ratio is
taken against the forward passes timed next to it.

Usage:  python benchmarks/bench_transformers.py          (full, ~5 min on 2 cores)
        python benchmarks/bench_transformers.py --quick  (vit_tiny, probe 2, 2 repeats)
Results: a table on stdout and JSON in benchmarks/results/transformers.json
(transformers-quick.json with --quick).
"""

import argparse
import datetime
import itertools
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
import timm
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tb_activations.torch as tbat  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    event_bytes, git_commit, interleaved, loadavg, median, now, save_results, stat, timed)

MIB = 1024 * 1024
HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = (("as_before", "as before (token_grid=False, attention=False)",
            {"token_grid": False, "attention": False}),
           ("views", "transformer views (the default)", {}))
console = Console(width=150)


def bench(name, x, repeats, workdir):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()

    def forward():
        def run():
            with torch.no_grad():
                model(x)
        return timed(run)

    for _ in range(2):
        forward()
    base = [forward() for _ in range(repeats)]
    result = {"model": name, "input_shape": list(x.shape), "repeats": repeats,
              "params": sum(p.numel() for p in model.parameters()),
              "forward": {"median_s": median(base), "min_s": min(base), "runs": len(base)},
              "loadavg_start": loadavg()}
    steps = itertools.count()
    for key, label, options in METHODS:
        log_dir = os.path.join(workdir, key)

        def log(options=options, log_dir=log_dir):
            tbat.log_activations(model, x, next(steps), log_dir=log_dir, background=False,
                                 **options)

        log()
        first = event_bytes(log_dir)
        log()
        result[key + "_bytes_per_step"] = event_bytes(log_dir) - first
        method, base = interleaved(forward, log, repeats)
        result[key] = stat(method, base, label)
    result["loadavg_end"] = loadavg()
    return result


def print_table(result):
    table = Table(title="%s on CPU, probe %d: log_activations(log_dir=) against the forward "
                  "passes timed next to it" % (result["model"], result["input_shape"][0]))
    for column in ("method", "median", "x forward", "forward beside", "runs", "bytes / step"):
        table.add_column(column, justify="left" if column == "method" else "right")
    forward = result["forward"]
    table.add_row("forward (eval, no_grad)", "%.1f ms" % (1e3 * forward["median_s"]), "1.00x",
                  "", str(forward["runs"]), "")
    for key, label, _ in METHODS:
        row = result[key]
        table.add_row(label, "%.1f ms" % (1e3 * row["median_s"]), "%.2fx" % row["ratio"],
                      "%.1f ms" % (1e3 * row["forward_median_s"]), str(row["runs"]),
                      "%.2f MiB" % (result[key + "_bytes_per_step"] / MIB))
    console.print(table)
    console.print("views / as before: time %.2fx, bytes %.2fx"
                  % (result["views"]["median_s"] / result["as_before"]["median_s"],
                     result["views_bytes_per_step"] / result["as_before_bytes_per_step"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="vit_tiny_patch16_224, a probe of 2, 2 repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per method")
    parser.add_argument("--output", default=None, help="JSON path")
    args = parser.parse_args()
    name, batch = ("vit_tiny_patch16_224", 2) if args.quick else ("vit_base_patch16_224", 4)
    repeats = args.repeats or (2 if args.quick else 6)
    output = args.output or os.path.join(
        HERE, "results", "transformers-quick.json" if args.quick else "transformers.json")
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "git_commit": git_commit(), "python": platform.python_version(),
            "torch": torch.__version__, "timm": timm.__version__, "numpy": np.__version__,
            "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "machine": platform.machine(), "argv": sys.argv[1:]}
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    started = now()
    workdir = tempfile.mkdtemp(prefix="tba-bench-transformers-")
    try:
        result = bench(name, x, repeats, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta["seconds"] = now() - started
    print_table(result)
    save_results(console, output, {"meta": meta, "result": result}, meta["seconds"],
                 result["loadavg_start"], result["loadavg_end"])


if __name__ == "__main__":
    main()
