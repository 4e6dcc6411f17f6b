"""Runs the Rust data server cannot key, read from their own event files instead."""

import os
import re
import threading
import time

from tensorboard.backend.event_processing import data_provider as multiplexer_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer

from tb_activations.format import metadata

# Runs whose name the Rust data server cannot put in a blob key (it fails to parse its own
# key), read from their event files instead.
UNKEYABLE = re.compile(r'["\\]')
_RELOAD_S = 2.0


class RunReader:
    """One run's event files read by TensorBoard's Python loader (the multiplexer, keeping
    every activations step), loaded again at most every _RELOAD_S seconds so new
    steps appear as they do in TensorBoard."""

    def __init__(self, run, path, logdir):
        self._multiplexer = plugin_event_multiplexer.EventMultiplexer(
            tensor_size_guidance={metadata.PLUGIN_NAME: 0})
        self._multiplexer.AddRun(path, run)
        self.provider = multiplexer_provider.MultiplexerDataProvider(self._multiplexer, logdir)
        self._loaded = None
        self._lock = threading.Lock()

    def reload(self):
        with self._lock:
            if self._loaded is None or time.monotonic() - self._loaded > _RELOAD_S:
                self._multiplexer.Reload()
                self._loaded = time.monotonic()


def directory_bytes(path):
    """Bytes of the files directly in `path` (a run's event files)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return 0
    return sum(entry.stat().st_size for entry in entries if entry.is_file())
