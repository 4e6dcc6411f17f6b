"""`tb-activations` command line: the demo, TensorBoard with the tab for a logdir, and export."""

import argparse
import os
import sys
import time

from rich import markup
from rich.console import Console

from tb_activations import extras


def start_tensorboard(logdir, host, port):
    """An in-process TensorBoard (with every installed plugin, ours included); its URL."""
    from tensorboard import default
    from tensorboard import program

    board = program.TensorBoard(plugins=default.get_plugins())
    board.configure(argv=[None, "--logdir", logdir, "--host", host, "--port", str(port)])
    return board.launch()


def serve_until_interrupted(console, logdir, host, port):
    url = start_tensorboard(logdir, host, port)
    console.print("TensorBoard with the Activations tab: [bold]%s#activations[/bold]" % url)
    console.print("Press Ctrl+C to stop.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")


def run_demo(args, console):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        demo = extras.import_module("tb_activations.demo", extras.DEMO)
    except ImportError as error:
        console.print("[red]error:[/red] " + markup.escape(str(error)), highlight=False)
        return 2
    console.rule("tb-activations demo")
    console.print("Training the seed articles' MNIST CNN on scikit-learn's handwritten digits "
                  "(offline), logging every layer's activations for %d probe digits every %d "
                  "batches into [bold]%s[/bold]" % (args.probes, args.update_every, args.logdir))
    started = time.perf_counter()
    run_dir, accuracy = demo.train_demo(args.logdir, epochs=args.epochs,
                                        update_every=args.update_every,
                                        probe_count=args.probes)
    console.print("Trained in %.0f s, validation accuracy %.1f%%; activations and model.keras "
                  "are in [bold]%s[/bold]" % (time.perf_counter() - started, 100 * accuracy,
                                              run_dir))
    if not args.no_serve:
        serve_until_interrupted(console, args.logdir, args.host, args.port)
    return 0


def run_export(args, console):
    from tb_activations.exporting import run_export as run_export_lib

    try:
        result = run_export_lib.export(args.logdir, args.out, run=args.run, layers=args.layers,
                               steps=args.steps, sample=args.sample, cmap=args.cmap,
                               scale=args.scale, formats=args.format, values=args.values,
                               progress=sys.stdout.isatty())
    except (run_export_lib.ExportError, ImportError) as error:
        console.print("[red]error:[/red] " + markup.escape(str(error)), highlight=False)
        return 2
    console.print("Wrote %d files into [bold]%s[/bold] (index: %s%s)"
                  % (result.files, result.folder, result.index,
                     ", page: %s" % result.html if result.html else ""), highlight=False)
    return 0


def add_export_command(commands):
    export = commands.add_parser(
        "export", help="write logged activations as PNG figures, GIF animations, npz arrays "
                       "and one HTML page")
    export.add_argument("--logdir", required=True, help="the logdir given to tensorboard: a folder, or "
                                                          "a URL such as s3://bucket/runs")
    export.add_argument("--out", required=True, help="folder to write into")
    export.add_argument("--run", help="a run name or glob (default: every run)")
    export.add_argument("--layers", metavar="GLOB", help="a glob over layer paths "
                                                         "(default: every layer)")
    export.add_argument("--steps", default="all", help='"all", "last" or a list such as '
                                                       '"0,100,last" (default: all)')
    export.add_argument("--sample", default="all", help="a probe sample index, or all")
    export.add_argument("--cmap", default="viridis",
                        help="viridis, magma, gray or diverging (default: viridis)")
    export.add_argument("--scale", default="channel",
                        help="channel, layer or global (default: channel)")
    export.add_argument("--format", default="png,gif,npz,html",
                        help="some of png,gif,npz,html (default: all four)")
    export.add_argument("--values", action="store_true",
                        help="also store the decoded grid values in the npz files")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="tb-activations", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train a small CNN with the callback, then open "
                                            "TensorBoard on its activations")
    demo.add_argument("--logdir", default="runs", help="where to write (default: runs)")
    demo.add_argument("--epochs", type=int, default=6)
    demo.add_argument("--update-every", type=int, default=10,
                      help="log activations every N training batches (default: 10)")
    demo.add_argument("--probes", type=int, default=6, choices=range(1, 11), metavar="1..10",
                      help="probe digits to follow (default: 6)")
    demo.add_argument("--no-serve", action="store_true", help="train and log, then exit")
    serve = commands.add_parser("serve", help="TensorBoard with the Activations tab for a logdir")
    serve.add_argument("logdir")
    for command in (demo, serve):
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=6006)
    add_export_command(commands)
    args = parser.parse_args(argv)
    console = Console()
    if args.command == "export":
        return run_export(args, console)
    if args.command == "demo":
        return run_demo(args, console)
    serve_until_interrupted(console, args.logdir, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
