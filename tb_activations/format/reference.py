"""What a unit responds to over a reference set, as stored: the arrays of a reference step's
blob, the reference inputs' thumbnail atlas, and the numbers derived from them on read (one
definition each, shared by the reader, the plugin and export).

The tags and their plugin content schema are in metadata (KIND_REFERENCE,
KIND_REFERENCE_INPUTS); the full format is in docs/format.md. Everything decoded here is
untrusted: sizes are checked before decompressing, shapes, dtypes and ranges after.
"""

import math

import numpy as np

from tb_activations.format import layout
from tb_activations.format import metadata
from tb_activations.rendering import grid_images

# A reference step's blob of one layer may decompress to at most this (checked on write, with
# what to lower); at the defaults (64 units, k = 9, up to 100 classes) it stays under 64 KiB.
MAX_REFERENCE_BYTES = 1 << 20
# The raw thumbnail pixels of a reference set stay within this many bytes.
MAX_THUMBNAIL_BYTES = 1 << 24
# Thumbnails per atlas page (fewer when the set is smaller).
THUMBNAILS_PER_PAGE = 256


def reference_arrays(content):
    """{array: (dtype, shape)} the blob of a reference tag holds, from its parsed content."""
    units, k = content["units_kept"], content["k"]
    arrays = {"units": ("int32", (units,)),
              "top_index": ("int32", (units, k)),
              "top_value": ("float32", (units, k)),
              "top_position": ("int32", (units, k, len(content["map_shape"]))),
              "zero_fraction": ("float32", (units,))}
    if content["classes"]:
        arrays["class_mean"] = ("float32", (units, content["classes"]))
        arrays["class_count"] = ("int32", (content["classes"],))
    return arrays


def reference_bytes(content):
    """The bytes a reference blob's arrays take (without the npz headers)."""
    return sum(math.prod(shape) * np.dtype(dtype).itemsize
               for dtype, shape in reference_arrays(content).values())


def encode_reference(arrays, content):
    """The blob of one layer's reference step: an npz of exactly reference_arrays(content).
    Raises ValueError (saying what to lower) past MAX_REFERENCE_BYTES, and on arrays of
    other shapes."""
    size = reference_bytes(content)
    if size > MAX_REFERENCE_BYTES:
        raise ValueError(
            "the reference step of layer %r would take %d bytes (%d units x k=%d, %d classes), "
            "more than the %d one may: lower max_channels, reference_k or the number of classes"
            % (content["layer"], size, content["units_kept"], content["k"], content["classes"],
               MAX_REFERENCE_BYTES))
    typed = {}
    for name, (dtype, shape) in reference_arrays(content).items():
        array = np.asarray(arrays[name])
        if array.shape != shape:
            raise ValueError("reference %s of layer %r has shape %s, expected %s"
                             % (name, content["layer"], array.shape, shape))
        typed[name] = array.astype(dtype)
    return grid_images.encode_arrays(typed)


def decode_reference(blob, content):
    """The arrays of a reference tag's blob, checked against its parsed `content`: exact
    dtypes and shapes, distinct units in 0..units_total-1, top inputs in 0..inputs-1 and
    distinct per unit, positions inside map_shape, fractions in [0, 1], class counts that sum
    to the inputs. ValueError on anything else."""
    if content["units_kept"] > content["units_total"] or content["k"] > content["inputs"]:
        raise ValueError("reference content keeps more units or top inputs than there are")
    arrays = grid_images.decode_arrays(blob, reference_arrays(content), "reference blob")
    units, index = arrays["units"], arrays["top_index"]
    if units.min() < 0 or units.max() >= content["units_total"]:
        raise ValueError("reference units outside 0..%d" % (content["units_total"] - 1))
    if np.unique(units).size != units.size:
        raise ValueError("reference units repeat a unit")
    if index.min() < 0 or index.max() >= content["inputs"]:
        raise ValueError("reference top inputs outside 0..%d" % (content["inputs"] - 1))
    ordered = np.sort(index, axis=1)
    if np.any(ordered[:, 1:] == ordered[:, :-1]):
        raise ValueError("reference top inputs repeat an input for one unit")
    position, sizes = arrays["top_position"], np.asarray(content["map_shape"], np.int64)
    if position.size and (position.min() < 0 or np.any(position >= sizes)):
        raise ValueError("reference positions outside the map %s" % (content["map_shape"],))
    zero = arrays["zero_fraction"]
    if not np.all((zero >= 0) & (zero <= 1)):
        raise ValueError("reference zero fractions outside [0, 1]")
    if content["classes"]:
        count = arrays["class_count"]
        if count.min() < 0 or int(count.sum(dtype=np.int64)) != content["inputs"]:
            raise ValueError("reference class counts do not sum to the %d inputs"
                             % content["inputs"])
    return arrays


def selectivity_index(class_mean, class_count):
    """Per unit, the class selectivity index of Morcos et al. 2018 over the classes that have
    inputs: (mu_max - mu_rest) / (mu_max + mu_rest), mu_max the largest class mean, mu_rest
    the mean of the others; NaN where the denominator is 0 or fewer than 2 classes have
    inputs. 0 for a unit that responds alike to every class, 1 for one that responds to a
    single class only (the means are of non-negative activations)."""
    means = np.asarray(class_mean, np.float64)[:, np.asarray(class_count) > 0]
    if means.shape[1] < 2:
        return np.full(len(means), np.nan)
    ordered = -np.sort(-means, axis=1)
    highest, rest = ordered[:, 0], ordered[:, 1:].mean(axis=1)
    total = highest + rest
    with np.errstate(invalid="ignore", divide="ignore"):
        # highest >= rest, whatever the rounding of the mean says.
        index = np.maximum(highest - rest, 0) / np.where(total != 0, total, 1)
    return np.where(total != 0, index, np.nan)


def preferred_class(class_mean, class_count):
    """Per unit, the class (label id) with the largest mean among those with inputs (first on
    ties); -1 where no class has inputs or the means are not numbers."""
    means = np.asarray(class_mean, np.float64)
    if means.ndim != 2 or means.shape[1] == 0:
        return np.full(len(means), -1)
    means = np.where(np.asarray(class_count) > 0, means, np.nan)
    best = np.argmax(np.where(np.isnan(means), -np.inf, means), axis=1)
    return np.where(np.all(np.isnan(means), axis=1), -1, best)


def dead_on_reference(zero_fraction):
    """Per unit, whether its map is all zeros on every reference input."""
    return np.asarray(zero_fraction) >= 1.0


def thumbnail_side(input_height, input_width, inputs, channels):
    """The longest side of a reference set's thumbnails: at most the input's own, 64, and
    what keeps inputs x side^2 x channels within MAX_THUMBNAIL_BYTES."""
    budget = math.isqrt(MAX_THUMBNAIL_BYTES // (inputs * channels))
    return max(1, min(max(input_height, input_width), metadata.MAX_THUMBNAIL_SIDE, budget))


def atlas_plan(inputs):
    """(per_page, page_columns, pages) of the atlas of `inputs` thumbnails: row-major pages
    of near-square columns."""
    per_page = min(inputs, THUMBNAILS_PER_PAGE)
    _, columns = layout.near_square(per_page)
    return per_page, columns, -(-inputs // per_page)


def encode_atlas(thumbnails):
    """[PNG per page] of uint8 (N, h, w) or (N, h, w, 3) thumbnails, laid out as atlas_plan
    says (cells past the last thumbnail black)."""
    thumbnails = np.asarray(thumbnails, np.uint8)
    per_page, columns, pages = atlas_plan(len(thumbnails))
    rows = -(-per_page // columns)
    height, width = thumbnails.shape[1:3]
    cells = np.zeros((pages * rows * columns,) + thumbnails.shape[1:], np.uint8)
    cells[:len(thumbnails)] = thumbnails
    cells = cells.reshape((pages, rows * columns) + thumbnails.shape[1:])[:, :per_page]
    if per_page < rows * columns:
        cells = np.concatenate([cells, np.zeros((pages, rows * columns - per_page)
                                                + thumbnails.shape[1:], np.uint8)], axis=1)
    grid = cells.reshape((pages, rows, columns, height, width) + thumbnails.shape[3:])
    grid = np.moveaxis(grid, 3, 2).reshape((pages, rows * height, columns * width)
                                           + thumbnails.shape[3:])
    return [grid_images.encode_png(page) for page in grid]


def decode_atlas(pages, content):
    """uint8 (N, thumb_height, thumb_width[, 3]) thumbnails of a reference_inputs tag's atlas
    PNGs, checked against its parsed `content`; ValueError on pages of another count or
    size."""
    if not content["pictures"]:
        return None
    height, width = content["thumb_height"], content["thumb_width"]
    per_page, columns = content["per_page"], content["page_columns"]
    rows = -(-per_page // columns)
    if len(pages) != content["pages"]:
        raise ValueError("reference inputs hold %d atlas pages, expected %d"
                         % (len(pages), content["pages"]))
    shape = (rows * height, columns * width) + (
        (3,) if content["thumb_channels"] == 3 else ())
    thumbnails = []
    for number, page in enumerate(pages):
        image = grid_images.decode_png(page, max_pixels=math.prod(shape))
        if image.shape != shape:
            raise ValueError("reference atlas page %d has shape %s, expected %s"
                             % (number, image.shape, shape))
        cells = image.reshape((rows, height, columns, width) + shape[2:])
        cells = np.moveaxis(cells, 2, 1).reshape((rows * columns, height, width) + shape[2:])
        thumbnails.append(cells[:per_page])
    return np.concatenate(thumbnails)[:content["inputs"]]


def decode_labels(blob, content):
    """int32 (N,) labels of a reference_inputs tag's labels blob, each in 0..classes-1."""
    arrays = grid_images.decode_arrays(blob, {"labels": ("int32", (content["inputs"],))},
                                       "reference labels blob")
    labels = arrays["labels"]
    if labels.size and (labels.min() < 0 or labels.max() >= content["classes"]):
        raise ValueError("reference labels outside 0..%d" % (content["classes"] - 1))
    return labels
