"""Exported pictures drawn as the tab draws them: its colour maps, its scaling, its labels.

The colour maps are read from the tab's own frontend/colormaps.js (shipped as
tb_activations.static), so an exported colour is the tab's colour by construction; scaling
and labels follow frontend/scaling.js, paint.js and dom.js (`fmt`). Figures are drawn with
Pillow (an optional dependency: `pip install "tb-activations[export]"`).
"""

import dataclasses
import functools
import importlib.resources
import math
import re

import numpy as np

from tb_activations import extras
from tb_activations.format import metadata
from tb_activations.reading import reader

COLORMAPS = ("viridis", "magma", "gray", "diverging")
SCALES = ("channel", "layer", "global")
SCALE_NOTES = {
    "channel": "per channel: each tile from its own min to max",
    "layer": "per layer: one range for every tile of this step and sample",
    "global": "all steps: one range over every logged step and sample of the layer",
}

# A GIF frame holds 256 colours: the map's table at GIF_LEVELS evenly spread levels, then
# black, white, two greys for the anti-aliased text and the NaN/Inf colour.
GIF_LEVELS = 251
_TEXT_GREYS = ((0, 0, 0), (255, 255, 255), (85, 85, 85), (170, 170, 170))

_MARGIN = 12
_GAP = 6
_TITLE_SIZE = 15
_TEXT_SIZE = 12
_LABEL_SIZE = 11
_LABEL_HEIGHT = 14
_BAR_WIDTH = 256
_BAR_HEIGHT = 14
_MIN_WIDTH = 480
# Tiles are enlarged to at least this many pixels a side (labels must fit above them);
# a layer drawn as one image (sequence, vector) to at least _MIN_IMAGE.
_MIN_TILE = 72
_MIN_IMAGE = 240
_INK = (32, 33, 36)
_MUTED = (95, 99, 104)


def pillow():
    """PIL's Image, ImageDraw and ImageFont, or an ImportError saying how to get them."""
    return tuple(extras.import_module("PIL." + name, extras.EXPORT)
                 for name in ("Image", "ImageDraw", "ImageFont"))


def _object_literal(source, name):
    """The text between the braces of `const NAME = { ... };` in a JS module."""
    match = re.search(r"const %s = \{(.*?)\n?\};" % name, source, re.S)
    if match is None:
        raise ValueError("colormaps.js has no `const %s = {...};`" % name)
    return re.sub(r"//[^\n]*", "", match.group(1))


def _hex_colours(text):
    colours = [token for literal in re.findall(r'"([^"]*)"', text) for token in literal.split()]
    if not colours or not all(re.fullmatch(r"[0-9a-fA-F]{6}", token) for token in colours):
        raise ValueError("colormaps.js holds colours that are not rrggbb: %r" % text[:80])
    return np.array([[int(token[i:i + 2], 16) for i in (0, 2, 4)] for token in colours],
                    np.uint8)


def parse_colormaps(source):
    """{name: (stops (n, 3) uint8, NaN/Inf colour (3,) uint8)} of COLORMAPS, from
    colormaps.js' text (its STOPS start each map on a line of its own)."""
    parts = re.split(r"^\s*(\w+):", _object_literal(source, "STOPS"), flags=re.M)
    stops = dict(zip(parts[1::2], parts[2::2]))
    nonfinite = dict(re.findall(r'(\w+):\s*("[^"]*")', _object_literal(source, "NONFINITE")))
    missing = sorted(set(COLORMAPS) - (set(stops) & set(nonfinite)))
    if missing:
        raise ValueError("colormaps.js does not define %s" % ", ".join(missing))
    return {name: (_hex_colours(stops[name]), _hex_colours(nonfinite[name])[0])
            for name in COLORMAPS}


def build_table(stops):
    """The 256-entry RGB table colormaps.js builds from `stops` (linear between stops,
    rounded half up as Math.round does)."""
    count = len(stops)
    position = np.arange(256) / 255 * (count - 1)
    low = np.minimum(np.floor(position), count - 2).astype(int)
    fraction = (position - low)[:, None]
    start = stops[low].astype(np.float64)
    end = stops[low + 1].astype(np.float64)
    return np.floor(start + fraction * (end - start) + 0.5).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class Colormap:
    name: str
    table: np.ndarray  # (256, 3) uint8
    nonfinite: tuple  # (r, g, b)

    @property
    def diverging(self):
        return self.name == "diverging"


@functools.cache
def colormap(name):
    """The tab's colour map `name` (one of COLORMAPS)."""
    source = (importlib.resources.files("tb_activations.static") / "colormaps.js").read_text()
    try:
        stops, nonfinite = parse_colormaps(source)[name]
    except ValueError as error:
        raise RuntimeError("cannot read the tab's colour maps from tb_activations/static/"
                           "colormaps.js: %s" % error) from None
    return Colormap(name, build_table(stops), tuple(int(c) for c in nonfinite))


def span_of(ranges):
    """[min low, max high] over tile ranges (NaN where a tile had no finite value), or
    (0, 0) if none has one: scaling.js' spanOf."""
    ranges = np.asarray(ranges, np.float64).reshape(-1, 2)
    usable = ranges[np.isfinite(ranges).all(axis=1)]
    if not len(usable):
        return (0.0, 0.0)
    return (float(usable[:, 0].min()), float(usable[:, 1].max()))


def centred(value_range):
    """A diverging map is centred on zero: [low, high] becomes [-m, m]."""
    extent = max(abs(value_range[0]), abs(value_range[1]))
    return (-extent, extent)


def display_ranges(scale, ranges, shared, diverging):
    """(tiles, 2) float64: the [low, high] each tile is coloured by (scaling.js' tileRanges).

    `shared` is the range of "layer" and "global" scaling; "channel" uses each tile's own
    range ([0, 0] for a tile without finite values).
    """
    ranges = np.asarray(ranges, np.float64)
    if scale == "channel":
        result = np.where(np.isfinite(ranges).all(axis=1, keepdims=True), ranges, 0.0)
    else:
        result = np.broadcast_to(np.asarray(shared, np.float64), ranges.shape).copy()
    if diverging:
        extent = np.abs(result).max(axis=1)
        result = np.stack([-extent, extent], axis=1)
    return result


def tile_index(layout):
    """(grid_height, grid_width) int: the tile each pixel belongs to, -1 on gutters and past
    the last tile (geometry.js' rowOf/columnOf)."""
    def axis(size, tile, count):
        pitch = tile + layout.gutter
        index = np.arange(size)
        cell = index // pitch
        return np.where((cell < count) & (index % pitch < tile), cell, -1)

    rows = axis(layout.grid_height, layout.tile_height, layout.rows)
    columns = axis(layout.grid_width, layout.tile_width, layout.columns)
    tiles = rows[:, None] * layout.columns + columns[None, :]
    valid = (rows[:, None] >= 0) & (columns[None, :] >= 0) & (tiles < layout.tiles)
    return np.where(valid, tiles, -1)


def colour_grid(grid, ranges, tiling, tiles, shown, cmap):
    """RGBA uint8 (h, w, 4) of a stored grid as paint.js paints it: `ranges` are the stored
    tile ranges, `tiling` the tag's content, `tiles` its tile_index, `shown` the display
    range of each tile. Gutters are transparent, NaN/Inf the map's own colour."""
    values = reader.grid_values(grid, ranges, tiling).astype(np.float64)
    inside = (tiles >= 0) & (grid != metadata.GUTTER_CODE)
    bounds = shown[np.maximum(tiles, 0)]
    low, high = bounds[..., 0], bounds[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.clip((values - low) / (high - low), 0.0, 1.0)
    flat = np.where(values > high, 1.0, np.where(values < low, 0.0,
                                                 0.5 if cmap.diverging else 0.0))
    position = np.where(high > low, scaled, flat)
    index = np.floor(np.nan_to_num(position) * 255 + 0.5).astype(np.intp)
    rgba = np.zeros(grid.shape + (4,), np.uint8)
    rgba[..., :3] = cmap.table[index]
    rgba[..., :3][np.isnan(values)] = cmap.nonfinite
    rgba[..., 3] = 255
    rgba[~inside] = 0
    return rgba


def fmt(value):
    """A value as the tab prints it (frontend/dom.js fmt): 4 significant digits, exponents
    outside 1e-3..1e5."""
    if value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        mantissa, exponent = ("%.2e" % value).split("e")
        return "%se%s%d" % (mantissa, "-" if int(exponent) < 0 else "+", abs(int(exponent)))
    rounded = float("%.4g" % value)
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def bar_labels(shown, scale, tiled, diverging):
    """The colour bar's [low, middle, high] texts (views/colorbar.js): real values when one
    range covers the picture, words when every tile has its own."""
    if scale == "channel" and tiled:
        return ["−max |v|", "0", "+max |v|"] if diverging else ["min", "", "max"]
    low, high = shown[0]
    return [fmt(low), fmt(0.0 if diverging else (low + high) / 2), fmt(high)]


@functools.cache
def _font(size):
    return pillow()[2].load_default(size=size)


def _fitted(draw, text, font, width):
    """`text`, cut with an ellipsis to fit `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


@dataclasses.dataclass(frozen=True)
class FigureLayout:
    """Where everything of one layer's figures goes: fixed per layer, so every step's
    figure (and every frame of its animation) has the same size."""

    zoom: int
    cell_width: int
    cell_height: int
    label_height: int
    grid_top: int
    bar_top: int
    width: int
    height: int


def plan_cells(columns, rows, cell_width, picture_height, labelled):
    """The FigureLayout of `rows` x `columns` pictures of cell_width x picture_height pixels
    (each under a label strip if `labelled`) above a colour bar."""
    label_height = _LABEL_HEIGHT if labelled else 0
    cell_height = picture_height + label_height
    grid_width = columns * cell_width + (columns - 1) * _GAP
    grid_height = rows * cell_height + (rows - 1) * _GAP
    grid_top = _MARGIN + _TITLE_SIZE + _TEXT_SIZE + 3 * _GAP
    bar_top = grid_top + grid_height + 2 * _GAP + _TEXT_SIZE
    width = max(grid_width, _MIN_WIDTH) + 2 * _MARGIN
    height = bar_top + _BAR_HEIGHT + 2 * _GAP + 2 * _TEXT_SIZE + _MARGIN
    return FigureLayout(1, cell_width, cell_height, label_height, grid_top, bar_top,
                        width, height)


def plan_figure(layout, labelled):
    """The FigureLayout of a layer's figures; `labelled`: tiles get a label strip."""
    single = layout.tiles == 1 and layout.layout in ("sequence", "vector")
    smallest = _MIN_IMAGE if single else _MIN_TILE
    zoom = max(1, -(-smallest // max(layout.tile_width, layout.tile_height)))
    return dataclasses.replace(
        plan_cells(layout.columns, layout.rows, layout.tile_width * zoom,
                   layout.tile_height * zoom, labelled), zoom=zoom)


def draw_cells(plan, cells, columns, title, subtitle, bar, note, cmap):
    """A figure of `cells` [(label, RGB or RGBA PIL image of the plan's cell size)] in
    `columns` columns: title, subtitle, the cells (each under its label when the plan has
    label strips), the colour bar with its labels and the NaN/Inf key. An RGB PIL image."""
    Image, ImageDraw, _ = pillow()
    figure = Image.new("RGB", (plan.width, plan.height), "white")
    draw = ImageDraw.Draw(figure)
    text_width = plan.width - 2 * _MARGIN
    draw.text((_MARGIN, _MARGIN), _fitted(draw, title, _font(_TITLE_SIZE), text_width),
              fill=_INK, font=_font(_TITLE_SIZE))
    draw.text((_MARGIN, _MARGIN + _TITLE_SIZE + _GAP),
              _fitted(draw, subtitle, _font(_TEXT_SIZE), text_width), fill=_MUTED,
              font=_font(_TEXT_SIZE))
    for index, (label, piece) in enumerate(cells):
        row, column = divmod(index, columns)
        x = _MARGIN + column * (plan.cell_width + _GAP)
        y = plan.grid_top + row * (plan.cell_height + _GAP)
        figure.paste(piece, (x, y + plan.label_height),
                     piece if piece.mode == "RGBA" else None)
        if plan.label_height:
            draw.text((x, y), _fitted(draw, label, _font(_LABEL_SIZE), plan.cell_width),
                      fill=_INK, font=_font(_LABEL_SIZE))
    _draw_bar(figure, draw, plan, bar, note, cmap)
    return figure


def draw_figure(plan, rgba, layout, title, subtitle, tile_labels, bar, note, cmap):
    """The figure of one grid: title, subtitle, the coloured tiles (each under its label),
    the colour bar with its labels and the NaN/Inf key. An RGB PIL image of plan's size."""
    Image = pillow()[0]
    grid = Image.fromarray(rgba, "RGBA")
    cells = []
    for tile in range(layout.tiles):
        row, column = divmod(tile, layout.columns)
        top, left = row * (layout.tile_height + layout.gutter), column * (layout.tile_width
                                                                          + layout.gutter)
        piece = grid.crop((left, top, left + layout.tile_width, top + layout.tile_height))
        cells.append((tile_labels[tile] if plan.label_height else "",
                       piece.resize((plan.cell_width, plan.cell_height - plan.label_height),
                                    Image.NEAREST)))
    return draw_cells(plan, cells, layout.columns, title, subtitle, bar, note, cmap)


def _draw_bar(figure, draw, plan, labels, note, cmap):
    """The colour bar under the grid: the map, its [low, middle, high] labels, the NaN/Inf
    key and what the scaling means."""
    Image = pillow()[0]
    gradient = Image.fromarray(np.repeat(cmap.table[None], _BAR_HEIGHT, axis=0), "RGB")
    figure.paste(gradient, (_MARGIN, plan.bar_top))
    font = _font(_TEXT_SIZE)
    label_top = plan.bar_top + _BAR_HEIGHT + 3
    for text, x, anchor in zip(labels, (0, _BAR_WIDTH // 2, _BAR_WIDTH), ("la", "ma", "ra")):
        draw.text((_MARGIN + x, label_top), text, fill=_INK, font=font, anchor=anchor)
    key_left = _MARGIN + _BAR_WIDTH + 3 * _GAP
    draw.rectangle((key_left, plan.bar_top, key_left + _BAR_HEIGHT, plan.bar_top + _BAR_HEIGHT),
                   fill=cmap.nonfinite)
    draw.text((key_left + _BAR_HEIGHT + _GAP, plan.bar_top), "NaN/Inf", fill=_INK, font=font)
    draw.text((_MARGIN, label_top + _TEXT_SIZE + _GAP),
              _fitted(draw, note, font, plan.width - 2 * _MARGIN), fill=_MUTED, font=font)


@functools.cache
def gif_palette(name):
    """(256, 3) uint8: the palette of a GIF frame drawn with colour map `name`."""
    cmap = colormap(name)
    levels = np.floor(np.arange(GIF_LEVELS) * 255 / (GIF_LEVELS - 1) + 0.5).astype(int)
    return np.concatenate([cmap.table[levels], np.array(_TEXT_GREYS, np.uint8),
                           np.array([cmap.nonfinite], np.uint8)])


def to_palette(figure, name):
    """A "P" image of an RGB figure on gif_palette(name): each colour becomes the nearest
    palette entry (every map colour drawn is at most half a level off)."""
    Image = pillow()[0]
    palette = gif_palette(name)
    pixels = np.asarray(figure, np.uint8)
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) \
        | pixels[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([colours >> 16, (colours >> 8) & 255, colours & 255], axis=1)
    distance = ((rgb[:, None, :] - palette[None, :, :].astype(np.int32)) ** 2).sum(axis=2)
    indices = distance.argmin(axis=1).astype(np.uint8)[inverse].reshape(packed.shape)
    frame = Image.fromarray(indices, "P")
    frame.putpalette(palette.tobytes())
    return frame
