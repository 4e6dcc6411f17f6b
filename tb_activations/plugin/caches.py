"""The plugin's memory: least-recently-used caches bounded in bytes, safe across threads.

TensorBoard serves requests on threads and a logdir can be large, so what the plugin keeps
(decoded statistics, step maps, whole-run series) is bounded by what it weighs, not by how
many entries it has: one Dense(100000) layer's statistics weigh as much as thousands of
small ones.
"""

import collections
import sys
import threading

import numpy as np


def weight(value):
    """Approximate bytes held by `value` (arrays, containers of them, plain values)."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(weight(k) + weight(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sys.getsizeof(value) + sum(weight(item) for item in value)
    return sys.getsizeof(value)


class BoundedCache:
    """A least-recently-used map whose entries' weights sum to at most `max_bytes`; an entry
    heavier than that on its own is not kept."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key, default=None):
        with self._lock:
            if key not in self._entries:
                return default
            self._entries.move_to_end(key)
            return self._entries[key][0]

    def put(self, key, value, size=None):
        size = weight(value) if size is None else size
        with self._lock:
            if key in self._entries:
                self._bytes -= self._entries.pop(key)[1]
            if size > self.max_bytes:
                return value
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][1]
        return value

    @property
    def total_bytes(self):
        with self._lock:
            return self._bytes

    def __len__(self):
        with self._lock:
            return len(self._entries)
