"""`read_heads`: the per-head numbers of every attention layer, per run and logged step, as
arrays (the overview blob's `heads`, docs/format.md; defined in rendering/overview.py)."""

import dataclasses
import math
import os

import numpy as np

from tb_activations.reading import reader


@dataclasses.dataclass
class HeadNumbers:
    """One attention layer (`layer`, a `path:attention` record) at one logged step, over its
    `keys` key tokens. Per probe sample and head, float32 (samples, heads), NaN where the
    writer had no finite number: `entropy` (nats, the mean over queries of -sum p log p),
    `peak` (the mean over queries of the largest probability), `distance` (mean attention
    distance in patches; None where the keys are not on the layer's patch grid); per head,
    `dead` bool (heads,): uniform or single-token attention in every probe sample."""

    run: str
    layer: str
    step: int
    keys: int
    entropy: np.ndarray
    peak: np.ndarray
    distance: np.ndarray | None
    dead: np.ndarray

    def normalised_entropy(self):
        """entropy / log(keys): 1 for uniform attention, 0 for attention on one token."""
        return self.entropy / np.float32(math.log(self.keys)) if self.keys > 1 else (
            np.zeros_like(self.entropy))


def _rows(value):
    return np.array([[np.nan if number is None else number for number in row] for row in value],
                    dtype=np.float32)


def head_numbers(run, step, layer, heads):
    """The HeadNumbers of one checked `heads` field (reader.HeadsStep)."""
    return HeadNumbers(run=run, layer=layer, step=step, keys=heads["keys"],
                       entropy=_rows(heads["entropy"]), peak=_rows(heads["peak"]),
                       distance=None if heads["distance"] is None else _rows(heads["distance"]),
                       dead=np.array(heads["dead"], dtype=bool))


def read_heads(logdir: str | os.PathLike, run: str | None = None, layer: str | None = None):
    """Yields a HeadNumbers per run, logged step and attention layer found under `logdir`.

    Attention layers are the `path:attention` records of PyTorch attention modules and Keras
    MultiHeadAttention layers; their numbers come from the full-resolution probabilities of
    the probe pass. `run` and `layer` (a `path:attention` record, or the module's path) narrow
    what is read. Runs sorted, then steps as written, then layers in the order logged.
    `logdir` may be a URL (s3://, gs://...). Each run's event files are read once through
    TensorBoard's loader and checked as untrusted (what does not fit is skipped with a
    warning naming it).
    """
    wanted = None if layer is None else {layer, layer + ":attention"}
    for name, directory in reader.run_directories(logdir):
        if run is not None and name != run:
            continue
        last = None
        for item in reader.read_run(directory, name):
            if not isinstance(item, reader.HeadsStep) or (last is not None and item.step <= last):
                continue
            last = item.step
            for path, heads in item.heads.items():
                if wanted is None or path in wanted:
                    yield head_numbers(name, item.step, path, heads)
