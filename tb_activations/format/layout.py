"""How one layer's output is laid out as a grid: pure functions of its shape and the caps.

Planned once per layer from static shapes, then shared by the in-graph reduction (what to
compute) and the numpy tiler (where each tile goes), and stored as the tag's plugin content
(what the viewer needs to map pixels back to channels and values).
"""

import dataclasses
import math

CHANNEL_SELECTIONS = ("first", "top")
# What a grid's values are, when not the layer's output as it is (docs/format.md, `source`):
# a token output (B, prefix + rows * columns, D) over its patch grid, its prefix tokens (class,
# distillation, register) beside it, an attention module's probabilities per head (B, heads,
# queries, keys), one query's attention per head folded onto the keys' patch grid, and the
# windows (or patches) a model folded into the batch axis, each sample's stacked one after
# the other where no known partition puts them back onto its map, and the attention rollout
# (the class token's attention through every layer) over the patch grid.
SOURCES = ("output", "token_grid", "prefix_tokens", "attention", "attention_map", "windows",
           "attention_rollout")
# How a model folded each sample's map into batch entries (the `windows` field): Swin's and
# MaxViT's windows (shifted ones drawn rolled back), MaxViT's strided grid, MobileViT's
# unfolded patches, one token per entry (LeViT), or a partition not known.
WINDOW_PARTITIONS = ("window", "shifted_window", "grid", "unfold", "tokens", "unknown")
# Which query an attention map shows: the class token's, or the mean over every query.
ATTENTION_QUERIES = ("class_token", "mean")
# What a module's path gets for the records drawn beside its output (docs/format.md).
PREFIX_TOKENS_SUFFIX = ":prefix_tokens"
ATTENTION_SUFFIX = ":attention"
ATTENTION_MAP_SUFFIX = ":attention_map"


def unit_name(layout, source="output"):
    """What a layer's channel index counts, as the tab names it (frontend/layouts.js, a test
    holds the two alike): a head of attention, a feature of tokens or of a sequence, a unit
    of a vector, the one map of a rollout, else a channel."""
    if source in ("attention", "attention_map"):
        return "head"
    if source == "attention_rollout":
        return "map"
    if source == "token_grid" or layout == "sequence":
        return "feature"
    return "unit" if layout == "vector" else "channel"


# What a record that is no module's output is called where it is shown (the tab, export
# titles and pages); its path stays its identifier (tags, URLs, file names, index.csv).
SHOWN_NAMES = {"attention_rollout": "attention rollout"}


def shown_name(content):
    """A layer's name for a reader: its path, or a record's SHOWN_NAMES entry (the tab's
    frontend/layouts.js shownName, a test holds the two alike)."""
    return SHOWN_NAMES.get(content.get("source"), content["layer"])


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """Caps that bound the cost and size of one logged step.

    max_channels: channels (feature maps) drawn per layer, and units (of any layout) with
        their own statistics; layer-level statistics and silent units cover all of them.
    channel_selection: "first" keeps channels 0..max_channels-1 (stable across steps);
        "top" keeps the max_channels with the largest mean |activation| over the probe.
    max_tile: longest side of a tile; larger maps are downscaled by area averaging.
    max_depth_slices: depth slices drawn per channel of a 3-D (volume) map.
    max_image: longest side of the single image of a sequence or vector layer.
    columns: grid columns for channel tiles (None: near-square).
    """

    max_channels: int = 64
    channel_selection: str = "first"
    max_tile: int = 32
    max_depth_slices: int = 8
    max_image: int = 256
    columns: int | None = None

    def __post_init__(self):
        for name in ("max_channels", "max_tile", "max_depth_slices", "max_image"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive int, got %r" % (name, value))
        if self.columns is not None and (
                isinstance(self.columns, bool) or not isinstance(self.columns, int)
                or self.columns < 1):
            raise ValueError("columns must be a positive int or None, got %r" % (self.columns,))
        if self.channel_selection not in CHANNEL_SELECTIONS:
            raise ValueError("channel_selection must be one of %s, got %r"
                             % (", ".join(CHANNEL_SELECTIONS), self.channel_selection))


@dataclasses.dataclass(frozen=True)
class LayerLayout:
    """Where every tile of one layer goes, and how its maps are reduced to get there.

    canonical_shape is the per-sample shape after moving channels last and folding extra
    axes (see plan_layout); channels_kept is how many units (the drawn channels of a tiled
    layout) have their own statistics; source says what the grid's values are (SOURCES),
    token_grid the (rows, columns, prefix tokens) of the patch grid they lie on,
    attention_query the query an attention map shows, and windows the (count, partition) of
    the entries each sample had on a batch axis that held its windows or patches
    (WINDOW_PARTITIONS); every other field describes the grid.
    """

    layout: str
    source_shape: tuple
    canonical_shape: tuple
    channels_first: bool
    channels_total: int
    channels_shown: int
    channels_kept: int
    channel_selection: str
    rows: int
    columns: int
    tile_height: int
    tile_width: int
    downscale: tuple
    depth_slices: tuple = ()
    gutter: int = 1
    source: str = "output"
    token_grid: tuple = ()
    attention_query: str = ""
    windows: tuple = ()

    @property
    def tiles(self):
        if self.layout == "volume":
            return self.channels_shown * len(self.depth_slices)
        return self.channels_shown if self.layout == "channels" else 1

    @property
    def grid_height(self):
        return self.rows * self.tile_height + (self.rows - 1) * self.gutter

    @property
    def grid_width(self):
        return self.columns * self.tile_width + (self.columns - 1) * self.gutter

    def to_content(self):
        """The JSON-able part the viewer needs (stored as plugin content); the source fields
        only where they say something, so a plain layer's content is what it always was."""
        content = {
            "layout": self.layout,
            "output_shape": [None] + list(self.source_shape),
            "channels_first": self.channels_first,
            "channels_total": self.channels_total,
            "channels_shown": self.channels_shown,
            "channels_kept": self.channels_kept,
            "channel_selection": self.channel_selection,
            "rows": self.rows,
            "columns": self.columns,
            "tile_height": self.tile_height,
            "tile_width": self.tile_width,
            "gutter": self.gutter,
            "downscale": list(self.downscale),
            "depth_slices": list(self.depth_slices),
        }
        if self.source != "output":
            content["source"] = self.source
        if self.token_grid:
            rows, columns, prefix = self.token_grid
            content["token_grid"] = {"rows": rows, "columns": columns, "prefix_tokens": prefix}
        if self.attention_query:
            content["attention_query"] = self.attention_query
        if self.windows:
            count, partition = self.windows
            content["windows"] = {"count": count, "partition": partition}
        return content


def near_square(count, columns=None):
    """(rows, columns) of the most square grid holding `count` cells."""
    if count < 1:
        raise ValueError("a grid needs at least one cell, got %d" % count)
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    columns = min(columns, count)
    return math.ceil(count / columns), columns


def downscale_factor(size, limit):
    """Smallest integer factor that brings `size` to at most `limit`."""
    return max(1, math.ceil(size / limit))


def evenly_spaced(count, limit):
    """Up to `limit` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return tuple(range(count))
    if limit == 1:
        return (count // 2,)
    return tuple(sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)}))


def plan_layout(sample_shape, options=RenderOptions(), channels_first=False):
    """Layout of a layer whose per-sample output shape is `sample_shape` (no batch axis).

    Rank 3 (H, W, C): one tile per channel. Rank 4 (D, H, W, C): a volume, one row per
    channel and one column per depth slice. Rank 2 (T, F): one T x F image (sequences, and
    Dense over 2-D inputs). Rank 1 (D,): the D units as one near-square block; rank 0 is one
    unit. Ranks above 4 fold their middle axes into T of a sequence. `channels_first` moves
    the channel axis of ranks 2-4 last first.
    """
    shape = tuple(None if d is None else int(d) for d in sample_shape)
    if any(d is None or d < 1 for d in shape):
        raise ValueError("cannot draw an output with an empty or unknown axis: %r" % (shape,))
    rank = len(shape)
    if channels_first and 2 <= rank <= 4:
        canonical = shape[1:] + shape[:1]
    elif rank > 4:
        canonical = (math.prod(shape[:-1]), shape[-1])
    elif rank == 0:
        canonical = (1,)
    else:
        canonical = shape
    channels_first = bool(channels_first and 2 <= rank <= 4)

    common = dict(source_shape=shape, canonical_shape=canonical, channels_first=channels_first,
                  channels_kept=min(canonical[-1], options.max_channels),
                  channel_selection=options.channel_selection)
    if len(canonical) == 3:
        height, width, channels = canonical
        factor = downscale_factor(max(height, width), options.max_tile)
        shown = min(channels, options.max_channels)
        rows, columns = near_square(shown, options.columns)
        return LayerLayout(
            layout="channels", channels_total=channels, channels_shown=shown,
            rows=rows, columns=columns,
            tile_height=math.ceil(height / factor), tile_width=math.ceil(width / factor),
            downscale=(factor, factor), **common)
    if len(canonical) == 4:
        depth, height, width, channels = canonical
        factor = downscale_factor(max(height, width), options.max_tile)
        shown = min(channels, options.max_channels)
        slices = evenly_spaced(depth, options.max_depth_slices)
        return LayerLayout(
            layout="volume", channels_total=channels, channels_shown=shown,
            rows=shown, columns=len(slices),
            tile_height=math.ceil(height / factor), tile_width=math.ceil(width / factor),
            downscale=(factor, factor), depth_slices=slices, **common)
    if len(canonical) == 2:
        steps, features = canonical
        factor_rows = downscale_factor(steps, options.max_image)
        factor_columns = downscale_factor(features, options.max_image)
        return LayerLayout(
            layout="sequence", channels_total=features, channels_shown=features,
            rows=1, columns=1,
            tile_height=math.ceil(steps / factor_rows),
            tile_width=math.ceil(features / factor_columns),
            downscale=(factor_rows, factor_columns), **common)
    (units,) = canonical
    group = downscale_factor(units, options.max_image * options.max_image)
    cells = math.ceil(units / group)
    block_rows, block_columns = near_square(cells)
    return LayerLayout(
        layout="vector", channels_total=units, channels_shown=units,
        rows=1, columns=1, tile_height=block_rows, tile_width=block_columns,
        downscale=(group,), **common)
