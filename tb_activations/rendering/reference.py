"""A reference pass, framework-neutral: per batch the small per-unit arrays a backend reduced
on its device ((batch, units) maxima, their positions, means of max(a, 0), all-zero flags and,
for channel_selection="top", mean |a|) are merged here into running top-k lists, per-class
sums and zero counts (a backend may give positions for the batch's own top k inputs per unit
only, the only ones that can enter the running top k); at the end they become one reference
step [(tag, SummaryMetadata, [bytes])] (format/reference.py), with the reference inputs'
thumbnails and labels the first time. Memory is bounded by the batch: no layer output and no
input is kept whole.

Ranking: a unit's value on an input is the maximum of its map over the positions that are not
NaN (a map of NaN only scores -inf, +inf ranks first); ties go to the lower input index, and
within a map to the first position in row-major order.
"""

import numpy as np

from tb_activations.format import metadata
from tb_activations.format import reference as reference_format
from tb_activations.rendering import grid_images


def map_shape(plan):
    """The unit's map of a planned layer: [h, w] (channels), [d, h, w] (volume), [T]
    (sequence) or [] (vector)."""
    return [] if plan.layout == "vector" else list(plan.canonical_shape[:-1])


def tracked_units(plan, options):
    """How many units the device reduces per input: every one for "top" (chosen at the end by
    their mean |a| over the whole set), else the first max_channels."""
    if options.channel_selection == "top":
        return plan.channels_total
    return min(plan.channels_total, options.max_channels)


def all_finite(reduced):
    """Whether one batch's plain reduction ({path: arrays}) holds: no maximum is NaN and, where
    it was taken, no map's sum of |a| (`total`) is NaN or infinite; if not, the batch is
    reduced again with finite_only."""
    return all(not np.isnan(arrays["maximum"]).any() and
               ("total" not in arrays or np.isfinite(arrays["total"]).all())
               for arrays in reduced.values())


# How many (input, unit) entries of a layer's batches wait to be merged into its running
# reductions at once: a merge costs ~20 numpy calls whatever its size, so small batches are
# merged a few at a time (~0.3 MiB of waiting arrays per layer at most).
MERGE_ENTRIES = 1 << 14


class UnitResponses:
    """One layer's running reductions over a reference set."""

    def __init__(self, record, options, k):
        self.record = record
        self.map_shape = map_shape(record.layout)
        self.selection = options.channel_selection
        self.kept = min(record.layout.channels_total, options.max_channels)
        self.k = k
        self.tracked = tracked_units(record.layout, options)
        self.values = np.empty((self.tracked, 0), np.float32)
        self.indices = np.empty((self.tracked, 0), np.int64)
        self.positions = np.empty((self.tracked, 0), np.int64)
        self.zero = np.zeros(self.tracked, np.int64)
        self.magnitude = np.zeros(self.tracked, np.float64)
        self.sums = np.zeros((0, self.tracked), np.float64)  # (classes, units)
        self.inputs = 0
        self.waiting = []
        self.merged = 0

    def add(self, reduced, labels):
        """Takes one batch's reduced arrays ({maximum, position, positive_mean, zero[,
        magnitude]}, each (batch, units)); `labels`: int (batch,) or None (for every batch
        alike)."""
        self.waiting.append((reduced, labels))
        self.inputs += len(reduced["maximum"])
        if (self.inputs - self.merged) * self.tracked >= MERGE_ENTRIES:
            self.merge()

    def merge(self):
        """Merges the waiting batches into the running top-k (by value, then lower index: the
        running list is kept in that order and later inputs have higher indices, so a stable
        sort by value alone gives it), zero counts, |a| totals and per-class sums."""
        if not self.waiting:
            return

        def waiting(name, dtype=None):
            return np.concatenate([np.asarray(reduced[name], dtype)
                                   for reduced, _ in self.waiting])
        maximum = waiting("maximum", np.float32).T
        values = np.concatenate([self.values, np.where(np.isnan(maximum), -np.inf, maximum)],
                                axis=1)
        indices = np.concatenate([self.indices, np.broadcast_to(
            np.arange(self.merged, self.inputs), maximum.shape)], axis=1)
        positions = np.concatenate([self.positions, waiting("position").T], axis=1)
        order = np.argsort(-values, axis=1, kind="stable")[:, :self.k]
        rows = np.arange(len(values))[:, None]
        self.values, self.indices = values[rows, order], indices[rows, order]
        self.positions = positions[rows, order]
        self.zero += waiting("zero").sum(axis=0)
        if self.selection == "top":
            self.magnitude += waiting("magnitude", np.float64).sum(axis=0)
        if self.waiting[0][1] is not None:
            labels = np.concatenate([labels for _, labels in self.waiting])
            classes = int(labels.max()) + 1 if labels.size else 0
            if classes > len(self.sums):
                self.sums = np.concatenate([self.sums, np.zeros(
                    (classes - len(self.sums), self.sums.shape[1]))])
            np.add.at(self.sums, labels, waiting("positive_mean", np.float64))
        self.waiting = []
        self.merged = self.inputs

    def arrays(self, class_count):
        """The blob's arrays (format.reference.reference_arrays) for `class_count` (int
        (classes,); empty without labels)."""
        self.merge()
        if self.selection == "top":
            units = np.argsort(-self.magnitude, kind="stable")[:self.kept]
        else:
            units = np.arange(self.kept)
        flat = self.positions[units]
        position = (np.stack(np.unravel_index(flat, self.map_shape), axis=-1) if self.map_shape
                    else np.zeros(flat.shape + (0,), np.int64))
        arrays = {"units": units, "top_index": self.indices[units],
                  "top_value": self.values[units], "top_position": position,
                  "zero_fraction": self.zero[units] / self.inputs}
        if len(class_count):
            sums = np.zeros((len(class_count), self.sums.shape[1]))
            sums[:len(self.sums)] = self.sums
            with np.errstate(invalid="ignore", divide="ignore"):
                arrays["class_mean"] = (sums / np.where(class_count > 0, class_count, 0)[:, None]
                                        ).T[units]
            arrays["class_count"] = class_count
        return arrays

    def content(self, classes, receptive_field):
        return {"kind": metadata.KIND_REFERENCE, "layer": self.record.path,
                "layer_class": self.record.layer_class, "order": self.record.order,
                "units_total": self.record.layout.channels_total, "units_kept": self.kept,
                "k": min(self.k, self.inputs), "inputs": self.inputs, "classes": classes,
                "map_shape": self.map_shape, "receptive_field": receptive_field,
                "channel_selection": self.selection}


def image_input(sample_shape):
    """(height, width, thumbnail channels) of an image-like input sample shape, else None."""
    shape = tuple(sample_shape)
    if not grid_images.is_image_like(shape):
        return None
    return shape[0], shape[1], 1 if len(shape) == 2 or shape[2] == 1 else 3


class ReferenceThumbnails:
    """The reference inputs' thumbnails, area-averaged as the batches go by (by a whole
    factor; doubled, and the kept ones averaged again, whenever a set of unknown size would
    pass MAX_THUMBNAIL_BYTES), scaled to uint8 by one range over the whole set at the end
    (uint8 inputs are kept as they are)."""

    def __init__(self, sample_shape, inputs=None):
        self.height, self.width, self.channels = image_input(sample_shape)
        longest = max(self.height, self.width)
        side = (min(longest, metadata.MAX_THUMBNAIL_SIDE) if inputs is None else
                reference_format.thumbnail_side(self.height, self.width, inputs, self.channels))
        self.factor = -(-longest // side)
        self.kept = []
        self.count = 0
        self.low, self.high = np.inf, -np.inf
        self.raw_uint8 = True

    def add(self, batch):
        pictures = np.asarray(batch)
        if pictures.ndim == 3:
            pictures = pictures[..., None]
        pictures = pictures[..., :3] if self.channels == 3 else pictures[..., :1]
        self.raw_uint8 = self.raw_uint8 and pictures.dtype == np.uint8
        values = pictures.astype(np.float32)
        finite = values[np.isfinite(values)]
        if finite.size:
            self.low, self.high = min(self.low, finite.min()), max(self.high, finite.max())
        self.kept.append(grid_images.block_mean(values, self.factor).astype(np.float32)
                         if self.factor > 1 else values)
        self.count += len(values)
        while self.count * self._pixels() > reference_format.MAX_THUMBNAIL_BYTES:
            self.factor *= 2
            self.kept = [grid_images.block_mean(kept, 2).astype(np.float32)
                         for kept in self.kept]

    def _pixels(self):
        return (-(-self.height // self.factor)) * (-(-self.width // self.factor)) * self.channels

    def thumbnails(self):
        """uint8 (N, h, w) or (N, h, w, 3)."""
        values = np.concatenate(self.kept)
        if self.channels == 1:
            values = values[..., 0]
        if self.raw_uint8:
            return np.rint(values).astype(np.uint8)
        span = self.high - self.low if self.high > self.low else 1.0
        with np.errstate(invalid="ignore"):
            scaled = np.where(np.isfinite(values), (values - self.low) / span, 0.0)
        return np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def ratio_receptive_field(layer_map, height, width):
    """The receptive field a 2-D map of `layer_map` [h, w] is taken to have on an input of
    height x width when the model's own strides are not known: each cell sees the block of
    the input its share of the size ratio covers."""
    if len(layer_map) != 2:
        return None
    stride = [height / layer_map[0], width / layer_map[1]]
    return {"stride": stride, "size": list(stride), "offset": [(s - 1) / 2 for s in stride],
            "exact": False}


def labels_of(y, class_names, what="the reference labels"):
    """int64 (batch,) class ids of a batch of labels: ids, one-hot or scores (argmax), or
    (batch, 1); raises naming what is wrong."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = np.argmax(labels, axis=1)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.dtype.kind not in "biuf":
        raise ValueError("%s must be class ids (batch,), or one-hot/scores (batch, classes), "
                         "got shape %s and dtype %s" % (what, labels.shape, labels.dtype))
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise ValueError("%s hold values that are not class ids (whole numbers)" % what)
    labels = labels.astype(np.int64)
    limit = metadata.MAX_CLASSES if class_names is None else len(class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= limit):
        raise ValueError("%s must be class ids in 0..%d%s, got %d..%d"
                         % (what, limit - 1, " (one per class name)" if class_names else "",
                            labels.min(), labels.max()))
    return labels


def check_class_names(class_names):
    """The class names as a list, checked against the format's bounds (or None)."""
    if class_names is None:
        return None
    names = list(class_names)
    if (len(names) > metadata.MAX_CLASSES or not all(
            isinstance(name, str) and len(name) <= metadata.MAX_CLASS_NAME for name in names)):
        raise ValueError("class_names must be at most %d strings of at most %d characters, "
                         "got %r" % (metadata.MAX_CLASSES, metadata.MAX_CLASS_NAME,
                                     names[:5] + (["..."] if len(names) > 5 else [])))
    return names


def check_k(k):
    """Raises unless `k` (top inputs kept per unit) is an int in 1..MAX_REFERENCE_K."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= metadata.MAX_REFERENCE_K:
        raise ValueError("reference_k must be an int in 1..%d, got %r"
                         % (metadata.MAX_REFERENCE_K, k))


class ReferencePass:
    """One pass over a reference set: `add` each batch (its layer reductions, labels and, when
    the inputs are to be stored, its input array), then `rendered` gives the step."""

    def __init__(self, records, options, k, class_names=None, receptive_fields=None,
                 input_shape=None, with_inputs=False, inputs=None):
        check_k(k)
        self.layers = [UnitResponses(record, options, k) for record in records]
        self.class_names = check_class_names(class_names)
        self.image = image_input(input_shape) if input_shape is not None else None
        self.receptive_fields = receptive_fields or {}
        self.thumbnails = (ReferenceThumbnails(input_shape, inputs)
                           if with_inputs and self.image else None)
        self.with_inputs = with_inputs
        self.labels = []
        self.has_labels = None
        self.inputs = 0

    def add(self, reduced, y=None, x=None):
        """`reduced`: {path: (batch, units) arrays}; `y`: the batch's labels or None (for every
        batch alike); `x`: the batch's image input (kept as thumbnails if asked for)."""
        batch = len(next(iter(reduced.values()))["maximum"])
        if self.inputs + batch > metadata.MAX_REFERENCE_INPUTS:
            raise ValueError("the reference set holds more than %d inputs: pass fewer"
                             % metadata.MAX_REFERENCE_INPUTS)
        if self.has_labels is None:
            self.has_labels = y is not None
        elif self.has_labels != (y is not None):
            raise ValueError("some reference batches have labels and some do not")
        labels = None if y is None else labels_of(y, self.class_names)
        if labels is not None and len(labels) != batch:
            raise ValueError("a reference batch has %d inputs but %d labels"
                             % (batch, len(labels)))
        for layer in self.layers:
            layer.add(reduced[layer.record.path], labels)
        if labels is not None:
            self.labels.append(labels)
        if self.thumbnails is not None:
            self.thumbnails.add(x)
        self.inputs += batch

    def rendered(self):
        """[(tag, SummaryMetadata, [bytes])]: the reference inputs (when asked for) and one
        reference tag per layer."""
        if not self.inputs:
            raise ValueError("the reference set is empty")
        labels = np.concatenate(self.labels) if self.labels else None
        classes = 0
        if labels is not None:
            classes = (len(self.class_names) if self.class_names is not None
                       else int(labels.max()) + 1)
        class_count = (np.bincount(labels, minlength=classes) if labels is not None
                       else np.zeros(0, np.int64))
        rendered = []
        if self.with_inputs:
            rendered.append(self._inputs_rendered(labels, classes))
        for layer in self.layers:
            field = self.receptive_fields.get(layer.record.path)
            if field is None and self.image is not None:
                field = ratio_receptive_field(layer.map_shape, *self.image[:2])
            content = layer.content(classes, field)
            blob = reference_format.encode_reference(layer.arrays(class_count), content)
            rendered.append((metadata.reference_tag(layer.record.path),
                             metadata.create_summary_metadata(content), [blob]))
        return rendered

    def _inputs_rendered(self, labels, classes):
        content = {"kind": metadata.KIND_REFERENCE_INPUTS, "inputs": self.inputs,
                   "pictures": self.thumbnails is not None, "classes": classes,
                   "class_names": self.class_names if classes else None,
                   "input_height": 0, "input_width": 0, "thumb_height": 0, "thumb_width": 0,
                   "thumb_channels": 0, "per_page": 0, "page_columns": 0, "pages": 0}
        values = []
        if self.thumbnails is not None:
            thumbnails = self.thumbnails.thumbnails()
            per_page, columns, pages = reference_format.atlas_plan(self.inputs)
            content.update(input_height=self.image[0], input_width=self.image[1],
                           thumb_height=thumbnails.shape[1], thumb_width=thumbnails.shape[2],
                           thumb_channels=self.image[2], per_page=per_page,
                           page_columns=columns, pages=pages)
            values = reference_format.encode_atlas(thumbnails)
        if labels is not None:
            values.append(grid_images.encode_arrays({"labels": labels.astype(np.int32)}))
        return (metadata.REFERENCE_INPUTS_TAG, metadata.create_summary_metadata(content),
                values)
