"""Attention maps over the probe picture, as the tab's channel panel lays them (the picture,
then the map stretched over it pixel for pixel at the panel's default opacity): one panel
per head of an attention map (the class token's, else the mean query's attention over the
patch grid), or the one map of an attention rollout, in one figure per step and sample.
"""

import io

import numpy as np

from tb_activations.exporting import figures
from tb_activations.format import layout as layout_lib

# The records whose tiles span the probe picture's field of view (docs/format.md `source`).
OVER_PICTURE = ("attention_map", "attention_rollout")
# The channel panel's opacity slider starts here (frontend/views/channel_panel.js).
OPACITY = 0.6
# A panel's longer side: small pictures are enlarged by a whole factor (crisp), large ones
# shrunk, as the tab fits them.
_PANEL = 160


def is_over_picture(content):
    """Whether a layer's tiles are laid over the probe picture in export."""
    return content.get("source") in OVER_PICTURE


def picture_rgb(png):
    """(h, w, 3) uint8 of a stored probe picture (gray, RGB or RGBA PNG)."""
    Image = figures.pillow()[0]
    with Image.open(io.BytesIO(png)) as picture:
        return np.asarray(picture.convert("RGB"))


def panel_size(height, width):
    """(height, width) of a panel for a picture of that size."""
    fit = _PANEL / max(height, width)
    scale = float(int(fit)) if fit >= 1 else fit
    return max(1, round(height * scale)), max(1, round(width * scale))


def blend(picture, tile, size):
    """RGB uint8 `size` (height, width): `picture` (h, w, 3) resized to it, and `tile`
    (th, tw, 4) RGBA stretched over it pixel for pixel at OPACITY (transparent pixels: the
    picture alone)."""
    Image = figures.pillow()[0]
    height, width = size
    enlarged = height >= picture.shape[0]
    base = Image.fromarray(picture, "RGB").resize(
        (width, height), Image.NEAREST if enlarged else Image.BILINEAR)
    over = np.asarray(Image.fromarray(tile, "RGBA").resize((width, height), Image.NEAREST))
    alpha = OPACITY * over[..., 3:].astype(np.float64) / 255
    mixed = np.asarray(base, np.float64) * (1 - alpha) + over[..., :3] * alpha
    return np.floor(mixed + 0.5).astype(np.uint8)


def draw_overlays(picture, rgba, layout, channels, title, subtitle, bar, note, cmap):
    """The figure of one step and sample: each drawn tile of `rgba` (the coloured grid,
    figures.colour_grid) over `picture` (h, w, 3), labelled with its unit ("head 3"), under
    the title, subtitle and colour bar of the grid's figure. An RGB PIL image."""
    Image = figures.pillow()[0]
    size = panel_size(*picture.shape[:2])
    plan = figures.plan_cells(layout.columns, layout.rows, size[1], size[0], True)
    unit = layout_lib.unit_name(layout.layout, layout.source)
    panels = []
    for tile in range(layout.tiles):
        row, column = divmod(tile, layout.columns)
        top = row * (layout.tile_height + layout.gutter)
        left = column * (layout.tile_width + layout.gutter)
        piece = rgba[top:top + layout.tile_height, left:left + layout.tile_width]
        panels.append(("%s %d" % (unit, channels[tile]),
                       Image.fromarray(blend(picture, piece, size), "RGB")))
    return figures.draw_cells(plan, panels, layout.columns, title, subtitle, bar, note, cmap)
