"""Receptive fields of 2-D maps in input pixels, by the usual arithmetic over a chain of
windows (Araujo et al. 2019, "Computing receptive fields of convolutional neural networks"):
each axis keeps the jump between neighbouring cells, the field's size, and where the centre of
cell 0 falls. Pure numbers: the Keras and torch walks give the layers' kernels, strides,
dilations and paddings (format: docs/format.md, `receptive_field`)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Field:
    """Per axis (y, x): `stride` (input pixels between neighbouring cells), `size` (the side
    of the box one cell sees) and `offset` (the centre of cell 0's box)."""

    stride: tuple = (1, 1)
    size: tuple = (1, 1)
    offset: tuple = (0.0, 0.0)

    def to_content(self):
        return {"stride": list(self.stride), "size": list(self.size),
                "offset": [float(v) for v in self.offset], "exact": True}


INPUT = Field()


def same_padding(size, kernel, stride, dilation=1):
    """Padding before the first cell of a "same" window (TensorFlow's rule: the extra pixel,
    if odd, goes after)."""
    extent = dilation * (kernel - 1) + 1
    total = max((-(-size // stride) - 1) * stride + extent - size, 0)
    return total // 2


def through_window(field, kernel, stride, dilation, padding):
    """The field after a window (convolution or pooling) of per-axis `kernel`, `stride`,
    `dilation` and `padding` (pixels added before the first cell)."""
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    return Field(
        stride=tuple(j * s for j, s in zip(field.stride, stride)),
        size=tuple(r + (e - 1) * j for r, e, j in zip(field.size, extents, field.stride)),
        offset=tuple(o + ((e - 1) / 2 - p) * j
                     for o, e, p, j in zip(field.offset, extents, padding, field.stride)))


def shifted(field, before):
    """The field after `before` cells are added before the map per axis (negative: cropped)."""
    return dataclasses.replace(field, offset=tuple(
        o - b * j for o, b, j in zip(field.offset, before, field.stride)))


def merged(fields):
    """The field of a pointwise join (Add, Concatenate, ...) of maps with these fields: their
    largest size when they share strides and offsets, else None (not one box)."""
    if not fields or any(f is None for f in fields):
        return None
    first = fields[0]
    if any(f.stride != first.stride or f.offset != first.offset for f in fields):
        return None
    return dataclasses.replace(first, size=tuple(max(sizes) for sizes in zip(
        *(f.size for f in fields))))
