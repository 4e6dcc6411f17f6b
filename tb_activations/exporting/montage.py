"""A unit's top inputs on the reference set as one picture (the export's montage PNG): each
top input cropped to what the unit's maximum sees, the maximum's cell marked, the whole input
under it with that crop outlined, the unit's value and the input's class under both; titled
with what the unit prefers and how selectively.
As the tab's channel panel draws them (frontend/views/top_inputs.js).
"""

import math

import numpy as np

from tb_activations.exporting import figures

_CELL = 64  # pixels of a crop's longer side
_MARGIN = 12
_GAP = 6
_TITLE_SIZE = 15
_TEXT_SIZE = 12
_LABEL_SIZE = 11
_LABEL_HEIGHT = 14
_COLUMNS = 9
_MIN_WIDTH = 360
_MARK = (255, 45, 85)
_OUTLINE = (255, 176, 0)
_INK = (32, 33, 36)
_MUTED = (95, 99, 104)


def _span(centre, size, limit):
    """[start, end) of `size` centred on `centre`, clipped to 0..limit (at least one pixel)."""
    start = max(0.0, min(limit, centre - size / 2))
    end = max(0.0, min(limit, centre + size / 2))
    if end > start:
        return start, end
    pixel = max(0, min(limit - 1, math.floor(centre)))  # a box off the input: its nearest pixel
    return float(pixel), float(pixel + 1)


def receptive_box(field, position, input_height, input_width):
    """((top, left, bottom, right) the map cell `position` sees, (the same of its own stride
    cell at the centre)) in input pixels, clipped to the input (docs/format.md "receptive
    field"; frontend/reference_values.js receptiveBox); None without a spatial field."""
    if field is None or len(position) != 2:
        return None
    # The field's centres are pixel indices (pixel i spans [i, i + 1), its centre is i + 0.5).
    centre = [field["offset"][axis] + position[axis] * field["stride"][axis] + 0.5
              for axis in (0, 1)]
    limits = (input_height, input_width)
    seen = [_span(centre[axis], field["size"][axis], limits[axis]) for axis in (0, 1)]
    cell = [_span(centre[axis], max(1, field["stride"][axis]), limits[axis]) for axis in (0, 1)]
    return ((seen[0][0], seen[1][0], seen[0][1], seen[1][1]),
            (cell[0][0], cell[1][0], cell[0][1], cell[1][1]))


def class_text(class_names, label):
    return class_names[label] if class_names and 0 <= label < len(class_names) else str(label)


def responds_text(dead, selectivity, preferred, class_names):
    """What the montage's subtitle says of a unit (frontend/reference_values.js
    respondsText says the same)."""
    if dead:
        return "dead on the reference set: zero on every reference input"
    if preferred is None or preferred < 0:
        return "no labels with the reference set: no preferred class"
    strength = ("undefined" if selectivity is None or math.isnan(selectivity)
                else "%.2f" % selectivity)
    return "responds most to: %s (selectivity %s)" % (class_text(class_names, int(preferred)),
                                                      strength)


def _crop(thumbnail, boxes, scale):
    """(the crop of `thumbnail` the unit sees as an RGB PIL image, the marked cell's box in
    the crop's pixels); the whole thumbnail without a receptive field."""
    Image = figures.pillow()[0]
    image = Image.fromarray(thumbnail).convert("RGB")
    if boxes is None:
        return image, None
    (top, left, bottom, right), (mark_top, mark_left, mark_bottom, mark_right) = boxes
    y, x = scale
    box = (math.floor(left * x), math.floor(top * y), max(math.floor(left * x) + 1, math.ceil(right * x)),
           max(math.floor(top * y) + 1, math.ceil(bottom * y)))
    mark = (mark_left * x - box[0], mark_top * y - box[1], mark_right * x - box[0],
            mark_bottom * y - box[1])
    return image.crop(box), mark


def draw_montage(thumbnails, unit, inputs, field, title, subtitle):
    """The montage of one unit: `unit` {top_index, top_value, top_position} (its top lists),
    `inputs` the reference inputs' content with `labels` (or None), `field` the layer's
    receptive field. An RGB PIL image."""
    Image, ImageDraw, _ = figures.pillow()
    count = len(unit["top_index"])
    columns = max(1, min(_COLUMNS, count))
    rows = -(-count // columns)
    scale = (inputs["thumb_height"] / inputs["input_height"],
             inputs["thumb_width"] / inputs["input_width"])
    width = max(_MIN_WIDTH, columns * (_CELL + _GAP) - _GAP) + 2 * _MARGIN
    top = _MARGIN + _TITLE_SIZE + _TEXT_SIZE + 3 * _GAP
    pitch = 2 * _CELL + 2 + _LABEL_HEIGHT + _GAP
    height = top + rows * pitch + _MARGIN
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    text_width = width - 2 * _MARGIN
    draw.text((_MARGIN, _MARGIN), figures._fitted(draw, title, figures._font(_TITLE_SIZE),
                                                  text_width),
              fill=_INK, font=figures._font(_TITLE_SIZE))
    draw.text((_MARGIN, _MARGIN + _TITLE_SIZE + _GAP),
              figures._fitted(draw, subtitle, figures._font(_TEXT_SIZE), text_width),
              fill=_MUTED, font=figures._font(_TEXT_SIZE))
    labels, names = inputs.get("labels"), inputs.get("class_names")
    for number, (index, value, position) in enumerate(zip(unit["top_index"], unit["top_value"],
                                                          unit["top_position"])):
        row, column = divmod(number, columns)
        x = _MARGIN + column * (_CELL + _GAP)
        y = top + row * pitch
        boxes = receptive_box(field, list(position), inputs["input_height"],
                              inputs["input_width"])
        crop, mark = _crop(np.asarray(thumbnails[index]), boxes, scale)
        zoom = _CELL / max(crop.size)
        size = (max(1, round(crop.size[0] * zoom)), max(1, round(crop.size[1] * zoom)))
        figure.paste(crop.resize(size, Image.NEAREST), (x, y))
        if mark is not None:
            draw.rectangle((x + mark[0] * zoom, y + mark[1] * zoom,
                            x + max(mark[2] * zoom - 1, mark[0] * zoom + 1),
                            y + max(mark[3] * zoom - 1, mark[1] * zoom + 1)),
                           outline=_MARK, width=2)
        whole = Image.fromarray(np.asarray(thumbnails[index])).convert("RGB")
        fit = _CELL / max(whole.size)
        figure.paste(whole.resize((max(1, round(whole.size[0] * fit)),
                                   max(1, round(whole.size[1] * fit))), Image.NEAREST),
                     (x, y + _CELL + 2))
        if boxes is not None:
            (box_top, box_left, box_bottom, box_right), _ = boxes
            draw.rectangle((x + box_left * scale[1] * fit, y + _CELL + 2 + box_top * scale[0] * fit,
                            x + box_right * scale[1] * fit - 1,
                            y + _CELL + 2 + box_bottom * scale[0] * fit - 1),
                           outline=_OUTLINE, width=1)
        caption = figures.fmt(float(value))
        if labels is not None:
            caption = "%s · %s" % (class_text(names, int(labels[index])), caption)
        draw.text((x, y + 2 * _CELL + 3), figures._fitted(draw, caption, figures._font(_LABEL_SIZE),
                                                      _CELL),
                  fill=_INK, font=figures._font(_LABEL_SIZE))
    return figure
