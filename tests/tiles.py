"""Reading one tile of a read-back record, for tests that check drawn values against the
arrays they came from."""

import numpy as np


def tile(record, channel):
    """The real values of the tile of `channel` (drawn channels in their order)."""
    tiling = record.tiling
    index = list(record.channels).index(channel)
    row, column = divmod(index, tiling["columns"])
    top = row * (tiling["tile_height"] + tiling["gutter"])
    left = column * (tiling["tile_width"] + tiling["gutter"])
    return record.values()[top:top + tiling["tile_height"], left:left + tiling["tile_width"]]


def quantum(values):
    """What one 8-bit step of a tile scaled to the range of `values` is worth."""
    return (np.nanmax(values) - np.nanmin(values)) / 253 + 1e-6
