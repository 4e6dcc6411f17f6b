"""A capture made in numpy, for tests of the render and write stages that need no framework
(it imports neither TensorFlow nor torch)."""

import collections
import types

import numpy as np

from tb_activations.format import layout

# A layer record as a capture holds it: hashable (the render stage caches by it).
Record = collections.namedtuple("Record", "path layer_class order layout")


def numpy_capture(samples=2, shape=(6, 6, 3), seed=0):
    """A capture of one ReLU-like layer made in numpy: what any framework's reduce stage
    hands the render stage (every channel shown, no downscale)."""
    rng = np.random.default_rng(seed)
    plan = layout.plan_layout(shape, layout.RenderOptions())
    maps = np.maximum(rng.normal(size=(samples, shape[2], shape[0], shape[1])), 0)
    maps = maps.astype(np.float32)
    per_channel = [maps.min(axis=(2, 3)), maps.max(axis=(2, 3)), maps.mean(axis=(2, 3)),
                   maps.std(axis=(2, 3)), (maps == 0).mean(axis=(2, 3))]
    stats = np.stack(per_channel + [np.zeros(maps.shape[:2])] * 2, axis=-1).astype(np.float32)
    layer = np.stack([stats[:, :, index].mean(axis=1) for index in range(7)], axis=-1)
    reduced = {"stats": stats, "tiles": maps, "ranges": stats[..., :2].copy(),
               "channels": np.arange(shape[2], dtype=np.int32), "layer": layer,
               "silent": np.packbits(np.all(maps == 0, axis=(2, 3)), axis=-1)}
    record = Record("block/conv", "Conv2D", 0, plan)
    return types.SimpleNamespace(records=[record], options=layout.RenderOptions(),
                                 reduce=lambda: {"block/conv": reduced})
