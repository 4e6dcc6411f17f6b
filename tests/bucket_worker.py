"""Run by tests/test_buckets.py as a core install runs it: TensorFlow, Keras and JAX cannot be
imported, so TensorBoard reads and writes URLs through its own gfile (boto3 for s3://, fsspec
for the rest). The modules named in $BLOCKED_MODULES (comma separated) cannot be imported
either; with $WITH_TENSORFLOW=1, TensorFlow and Keras can (the tensorflow extra's install).
argv: a command and its arguments; prints one JSON line (or runs TensorBoard or the CLI).
"""

import hashlib
import json
import os
import sys

WITH_TENSORFLOW = os.environ.get("WITH_TENSORFLOW") == "1"
BLOCKED = (["jax"] if WITH_TENSORFLOW else ["tensorflow", "keras", "jax"]) + os.environ.get(
    "BLOCKED_MODULES", "").split(",")
for blocked in filter(None, BLOCKED):
    sys.modules[blocked] = None  # `import <blocked>` fails from here on


def write(log_dir, *steps):
    """A small convolutional model's activations at `steps`, with log_dir=."""
    import torch
    from torch import nn

    import tb_activations.torch as tbat

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    probe = torch.rand(2, 3, 16, 16)
    for step in steps:
        assert tbat.log_activations(model, probe, step=int(step), log_dir=log_dir,
                                    on_error="raise")
    tbat.flush()  # memory:// is read back in this process
    return sorted(tbat.get_activations(model, probe))


def read(logdir):
    """What read_activations yields, one row per record (the image as its digest)."""
    import tb_activations as tba

    return [[record.run, record.layer, record.step, record.sample, record.wall_time,
             hashlib.sha256(record.image.tobytes()).hexdigest()]
            for record in tba.read_activations(logdir)]


def export(logdir, out):
    import tb_activations as tba

    return tba.export(logdir, out, progress=False).files


def roundtrip(url, folder, url_out, folder_out):
    """The same run written to the URL and to a local folder: for each, what reads back
    (read's rows, without wall times) and the files its export writes."""
    answers = []
    for logdir, out in ((url, url_out), (folder, folder_out)):
        write(logdir + "/a", "0", "1")
        export(logdir, out)
        answers.append({"records": [row[:4] + row[5:] for row in read(logdir)],
                        "files": sorted(os.path.relpath(os.path.join(root, name), out)
                                        for root, _, names in os.walk(out) for name in names)})
    return answers


def check(logdir):
    """The reason nothing reads `logdir`, or None."""
    from tb_activations.reading import logdirs

    try:
        logdirs.check_readable(logdir)
    except logdirs.UnreadableLogdir as error:
        return str(error)
    return None


def refusals(log_dir, logdir):
    """(what writing a Keras model's activations into `log_dir` raises, what reading `logdir`
    raises), each as its message."""
    import keras
    import numpy as np

    import tb_activations as tba

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    try:
        tba.log_activations(model, np.zeros((1, 8, 8, 1), np.float32), step=0,
                            log_dir=log_dir, on_error="raise")
    except ValueError as error:
        written = str(error)
    else:
        written = None
    return [written, check(logdir)]


def main(command, *args):
    if command == "tensorboard":
        from tensorboard import main as tensorboard_main

        sys.argv = ["tensorboard", *args]
        return tensorboard_main.run_main()
    if command == "cli":
        from tb_activations import cli

        return cli.main(list(args))
    answer = {"write": write, "read": read, "export": export, "roundtrip": roundtrip,
              "check": check, "refusals": refusals}[command](*args)
    assert WITH_TENSORFLOW or "tensorflow" not in [
        name.split(".")[0] for name, module in sys.modules.items() if module]
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
