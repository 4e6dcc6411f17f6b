"""The grid layouts of what a transformer's probe pass draws besides a module's own output,
alike for every framework: tokens over their patch grid and the prefix tokens before it, an
attention module's probabilities per head (area-averaged to the tile cap) and each head's
attention over the keys' patch grid. Pure: each capture (keras/capture.py,
torch/capture.py) computes the tensors in its own ops and plans them here, so the stored
content of a ViT is the same whichever framework logged it (docs/format.md, `source`).
"""

import dataclasses

from tb_activations.format import layout as layout_lib


def token_grid_plan(grid, features, options, windows=()):
    """The layout of a token output's `features` maps over the (rows, columns, prefix)
    `grid` (channels last); `windows` (count, partition) where they were put back from the
    windows a model folded into the batch axis."""
    rows, columns, _ = grid
    return dataclasses.replace(layout_lib.plan_layout((rows, columns, features), options),
                               source="token_grid", token_grid=tuple(grid), windows=windows)


def prefix_tokens_plan(grid, features, options):
    """The layout of the prefix tokens (class, distillation, register) before the grid: a
    sequence of `grid[2]` rows by `features`."""
    return dataclasses.replace(layout_lib.plan_layout((grid[2], features), options),
                               source="prefix_tokens", token_grid=tuple(grid))


def averaged_shape(heads, queries, keys, factors):
    """(heads, queries, keys) after area-averaging queries and keys by `factors`."""
    return (heads, -(-queries // factors[0]), -(-keys // factors[1]))


def attention_plans(averaged, queries, keys, factors, options, windows=()):
    """(stored plan, reduction plan) of attention probabilities per head: the reduction
    follows the `averaged` (heads, queries', keys') shape the probabilities have once
    area-averaged by `factors`, while the stored plan says the whole (heads, queries, keys)."""
    reduction = layout_lib.plan_layout(tuple(averaged), options, channels_first=True)
    stored = dataclasses.replace(reduction, source="attention", downscale=tuple(factors),
                                 source_shape=(averaged[0], queries, keys), windows=windows)
    return stored, reduction


def attention_query(prefix):
    """Which query an attention map shows: the class token's (the first prefix token) where
    the tokens have a prefix, else the mean over every query."""
    return "class_token" if prefix else "mean"


def attention_map_plan(grid, heads, options, query, windows=()):
    """The layout of each head's attention from `query` over the keys' (rows, columns,
    prefix) `grid`: one tile per head."""
    rows, columns, _ = grid
    return dataclasses.replace(layout_lib.plan_layout((rows, columns, heads), options),
                               source="attention_map", token_grid=tuple(grid),
                               attention_query=query, windows=windows)


def drawn_map_grid(names_and_plans):
    """The (rows, columns, prefix) grid of the attention map among [(name, plan)] (the
    drawings of one attention module), or None when none was drawn."""
    for name, plan in names_and_plans:
        if name.endswith(layout_lib.ATTENTION_MAP_SUFFIX):
            return tuple(plan.token_grid)
    return None
