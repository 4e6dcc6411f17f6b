"""Reference sets whose answers are known, and a numpy brute force of the top inputs, shared
by the Keras and torch reference tests (no framework here)."""

import numpy as np

CLASSES = 4
SIDE = 12


def cross_digits(count, seed=0):
    """Images of SIDE x SIDE pixels of low noise, each class drawing its own mark at a random
    place: class 0 a plus sign, class 1 a horizontal bar, class 2 a vertical bar, class 3 a
    diagonal. Returns (x, y, the centre (row, column) of each mark)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.1, size=(count, SIDE, SIDE, 1)).astype(np.float32)
    y = np.arange(count) % CLASSES
    rng.shuffle(y)
    centres = rng.integers(2, SIDE - 2, size=(count, 2))
    marks = {0: [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], 1: [(0, -1), (0, 0), (0, 1)],
             2: [(-1, 0), (0, 0), (1, 0)], 3: [(-1, -1), (0, 0), (1, 1)]}
    for image, label, (row, column) in zip(x, y, centres):
        for dy, dx in marks[label]:
            image[row + dy, column + dx, 0] = 1.0
    return x, y, centres


def brute_force(outputs, k):
    """Per unit (last axis) of (N, ..., units) outputs: top-k (indices, values, flat
    positions) by the rule of rendering.reference, in plain numpy loops."""
    count, units = outputs.shape[0], outputs.shape[-1]
    flat = outputs.reshape(count, -1, units)
    result = []
    for unit in range(units):
        scored = []
        for index in range(count):
            values = flat[index, :, unit].astype(np.float64)
            usable = ~np.isnan(values)
            best = values[usable].max() if usable.any() else -np.inf
            position = int(np.flatnonzero(usable & (values == best))[0]) if usable.any() else 0
            scored.append((-best, index, best, position))
        scored.sort(key=lambda item: (item[0], item[1]))
        top = scored[:min(k, count)]
        result.append(([t[1] for t in top], [t[2] for t in top], [t[3] for t in top]))
    return result


# A 3x3 detector unit that fires only where a plus sign is (class 0): +1 on the plus, -1
# around it, bias -4 (a plus over noise below 0.1 gives at least 1 - 0.4; a bar, a column, a
# diagonal or a shifted plus at most 3 + 0.6 - 4). Beside it a unit that never fires (weights
# 0, bias -1) and one that always does (weights 0, bias 1).
DETECTOR_BIASES = (-4.0, -1.0, 1.0)


def plus_kernel():
    kernel = -np.ones((3, 3), np.float32)
    for dy, dx in [(1, 1), (0, 1), (2, 1), (1, 0), (1, 2)]:
        kernel[dy, dx] = 1.0
    return kernel


def field_box(field, row, column, side):
    """bool (side, side): the input pixels a receptive_field content says map cell (row,
    column) sees, clipped to the input."""
    centre = [o + i * s for o, i, s in zip(field["offset"], (row, column), field["stride"])]
    low = [max(int(np.ceil(c - (r - 1) / 2)), 0) for c, r in zip(centre, field["size"])]
    high = [max(int(np.floor(c + (r - 1) / 2)) + 1, 0) for c, r in zip(centre, field["size"])]
    box = np.zeros((side, side), bool)
    box[low[0]:high[0], low[1]:high[1]] = True
    return box
